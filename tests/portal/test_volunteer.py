"""The portal as a charity volunteer meets it (issue 14), through the pages and the API: misspelt headings
stop the upload with "did you mean ...?" and the answer is remembered; rows that cannot be followed up are
explained before loading; problems are told in the sheet's own words (its heading, the cell, the value typed);
plain English, times in UK time, and who to contact."""

from __future__ import annotations

import io
import json
import re

import openpyxl

import pytest

from sprx.readers.vcse import remembered_headings, remembered_headings_path
from tests.portal.conftest import BAD_CSV, CONTACT, REGISTER, Portal, misspelt

# Words a volunteer should never have to read on the portal's pages.
JARGON = ("warehouse", "json", "bytes", "extract", "utc")


def result_page(portal: Portal, upload_id: str) -> str:
    """The result page of an upload, as the signed-in service A sees it (visible text only)."""
    html = portal.client.get(f"/uploads/{upload_id}").text
    return re.sub(r"<[^>]+>", " ", html)


def assert_plain(text: str) -> None:
    """No jargon on a page."""
    found = [word for word in JARGON if re.search(rf"\b{word}\b", text, re.IGNORECASE)]
    assert not found, found


def test_a_misspelt_optional_heading_stops_the_upload_until_confirmed_and_is_remembered(portal: Portal) -> None:
    brith = misspelt(REGISTER.read_bytes(), "DOB", "Date of Brith")
    response = portal.api_upload("april.csv", brith)
    assert response.status_code == 202
    body = response.json()
    assert body["verdict"] == "needs_confirmation" and not body["queued_for_loading"]
    assert portal.landing_files() == []  # nothing loads until the volunteer answers
    waiting = [h for h in body["headings"] if h["how"] == "suggested"]
    assert [(h["heading"], h["cell"], h["suggestion_title"]) for h in waiting] == [
        ("Date of Brith", "E3", "Date of Birth")]
    # every other column is read as a field, or listed as not used
    assert all(h["column"] or h["how"] in ("suggested", "not used") for h in body["headings"])
    # the page asks, in the sheet's words, and offers the answer
    portal.sign_in(portal.credential_a)
    page = result_page(portal, body["upload_id"])
    assert "Cell E3 says “Date of Brith”. Did you mean  Date of Birth ?" in page
    assert_plain(page)
    # the volunteer accepts on the page; the sheet is checked again with the mapping and sent for loading
    token = re.search(r'name="csrf_token" value="([^"]+)"', portal.client.get("/upload").text).group(1)
    answer = portal.client.post(f"/uploads/{body['upload_id']}/headings",
                                data={"csrf_token": token, "heading-E3": "date_of_birth"}, follow_redirects=False)
    assert answer.status_code == 303
    after = portal.client.get(f"/api/uploads/{body['upload_id']}").json()
    assert after["verdict"] == "accepted" and after["queued_for_loading"] and after["unlinkable"] == []
    assert {h["heading"]: h["column"] for h in after["headings"]}["Date of Brith"] == "Date of Birth"
    # remembered for the service, where the ingest reads it too
    stored = json.loads(remembered_headings_path(portal.home, "walks").read_text())
    assert stored["headings"]["Date of Brith"]["column"] == "date_of_birth"
    assert remembered_headings(portal.home, "walks") == {"dateofbrith": "date_of_birth"}
    assert remembered_headings(portal.home, "sheds") == {}  # one service's answer is not another's
    # next time, the same heading is read without asking
    may = misspelt(REGISTER.read_bytes().replace(b"/04/", b"/03/"), "DOB", "Date of Brith")
    again = portal.api_upload("march.csv", may).json()
    assert again["verdict"] == "accepted"
    assert {h["heading"]: h["how"] for h in again["headings"]}["Date of Brith"] == "remembered"


def test_declining_a_suggestion_loads_the_sheet_and_says_the_rows_cannot_be_followed_up(portal: Portal) -> None:
    brith = misspelt(REGISTER.read_bytes(), "DOB", "Date of Brith")
    body = portal.api_upload("april.csv", brith).json()
    response = portal.client.post(f"/api/uploads/{body['upload_id']}/headings",
                                  json={"headings": {"Date of Brith": None}},
                                  headers={"Authorization": f"Bearer {portal.credential_a}"})
    assert response.status_code == 201, response.text
    after = response.json()
    assert after["verdict"] == "accepted" and after["queued_for_loading"]
    assert {h["heading"]: h["how"] for h in after["headings"]}["Date of Brith"] == "not used"
    [unlinkable] = after["unlinkable"]
    assert unlinkable["count"] == after["rows_accepted"]
    assert "no date of birth (the sheet has no Date of Birth column)" in unlinkable["reason"]
    assert "Add the missing column" in unlinkable["fix"]


def test_a_row_with_no_names_is_accepted_with_a_word_that_it_cannot_be_followed_up(portal: Portal) -> None:
    sheet = ("Date,Group,Attended,First Name,Surname,DOB\r\n"
             "03/06/2026,Walk,Y,Zoe,Hughes,17/08/1972\r\n"
             "03/06/2026,Walk,Y,,,\r\n").encode()
    body = portal.api_upload("june.csv", sheet).json()
    assert body["verdict"] == "accepted" and body["rows_accepted"] == 2
    assert body["unlinkable"] == [{
        "reason": "No NHS number, and no first name, last name, date of birth.",
        "fix": "Fill in the NHS number, or the first name, last name and date of birth, then upload the whole "
               "sheet again.",
        "count": 1, "rows": [3]}]
    portal.sign_in(portal.credential_a)
    page = result_page(portal, body["upload_id"])
    assert "Rows that cannot be followed up" in page and "row 3" in page


def test_a_misspelt_required_heading_names_the_heading_found_the_closest_match_and_where_to_look(
        portal: Portal) -> None:
    atended = misspelt(REGISTER.read_bytes(), "Attended", "Atended")
    response = portal.api_upload("april.csv", atended)
    body = response.json()
    assert response.status_code == 202 and body["verdict"] == "needs_confirmation"
    assert "no 'Attended' column" in body["message"] and "'Atended' in cell F3" in body["message"]
    portal.sign_in(portal.credential_a)
    html = portal.client.get(f"/uploads/{body['upload_id']}").text
    assert 'href="/template"' in html and 'href="/help"' in html and CONTACT in html
    # confirming it sends the sheet on, with every row read
    response = portal.client.post(f"/api/uploads/{body['upload_id']}/headings",
                                  json={"headings": {"Atended": "attended"}},
                                  headers={"Authorization": f"Bearer {portal.credential_a}"})
    assert response.status_code == 201 and response.json()["rows_received"] > 0


def test_problems_name_the_sheets_heading_the_cell_and_the_value_typed_but_never_an_identifier(
        portal: Portal) -> None:
    body = portal.api_upload("july.csv", BAD_CSV).json()
    problems = {(p["row"], p["column"]): p for p in body["problems"]}
    date = problems[(4, "Date")]
    assert date["cell"] == "A4" and date["value"] == "31/02/2026"
    assert date["reason"].startswith("'Date' is not a real date") and "31/02/2026" in date["reason"]
    nhs = problems[(4, "NHS Number")]
    assert nhs["cell"] == "D4" and nhs["value"] is None and "9992914174" not in json.dumps(body)
    portal.sign_in(portal.credential_a)
    page = result_page(portal, body["upload_id"])
    assert "A4" in page and "31/02/2026" in page
    assert_plain(page)


@pytest.mark.parametrize("path", ["/help", "/template", "/upload", "/uploads"])
def test_pages_speak_plain_english(portal: Portal, path: str) -> None:
    portal.sign_in(portal.credential_a)
    portal.api_upload("july.csv", BAD_CSV)
    assert_plain(re.sub(r"<[^>]+>", " ", portal.client.get(path).text))


def test_contact_details_are_on_help_and_on_every_error_page(portal: Portal) -> None:
    assert CONTACT in portal.client.get("/help").text
    portal.sign_in(portal.credential_a)
    missing = portal.client.get("/uploads/0000000000000000")
    assert missing.status_code == 404 and CONTACT in missing.text
    refused = portal.api_upload("notes.pdf", b"%PDF-1.4").json()
    assert CONTACT in portal.client.get(f"/uploads/{refused['upload_id']}").text


def test_times_are_shown_in_uk_time(portal: Portal) -> None:
    body = portal.api_upload("july.csv", BAD_CSV).json()
    portal.sign_in(portal.credential_a)
    page = result_page(portal, body["upload_id"])
    assert re.search(r"received \d{1,2} \w+ \d{4} at \d\d:\d\d \((GMT|BST)\)", page)
    assert re.search(r"\d\d:\d\d (GMT|BST)", portal.client.get("/uploads").text)


def test_the_templates_offer_every_column_with_the_wellbeing_questions(portal: Portal) -> None:
    csv_text = portal.client.get("/template.csv").content.decode("utf-8")
    headings = csv_text.splitlines()[0].split(",")
    assert headings[:3] == ["Session Date", "Activity", "Attended"]
    assert {"Life Satisfaction", "Worthwhile", "Happiness", "Anxiety"} <= set(headings)
    workbook = openpyxl.load_workbook(io.BytesIO(portal.client.get("/template.xlsx").content))
    assert [cell.value for cell in workbook.active[1]] == headings
    help_page = portal.client.get("/help").text
    assert "how anxious yesterday" in help_page and "Worthwhile" in help_page


def test_a_confirmation_must_name_a_known_column_for_a_sheet_that_waits(portal: Portal) -> None:
    headers = {"Authorization": f"Bearer {portal.credential_a}"}
    waiting = portal.api_upload("april.csv", misspelt(REGISTER.read_bytes(), "DOB", "Date of Brith")).json()
    wrong = portal.client.post(f"/api/uploads/{waiting['upload_id']}/headings",
                               json={"headings": {"Date of Brith": "shoe_size"}}, headers=headers)
    assert wrong.status_code == 400 and "column name from the template" in wrong.json()["error"]
    assert portal.client.get(f"/api/uploads/{waiting['upload_id']}", headers=headers).json()["verdict"] == \
        "needs_confirmation"  # nothing remembered, nothing landed
    assert remembered_headings(portal.home, "walks") == {} and portal.landing_files() == []
    done = portal.api_upload("july.csv", BAD_CSV).json()
    again = portal.client.post(f"/api/uploads/{done['upload_id']}/headings",
                               json={"headings": {"Date": "session_date"}}, headers=headers)
    assert again.status_code == 409
    other = portal.client.post(f"/api/uploads/{waiting['upload_id']}/headings",
                               json={"headings": {"Date of Brith": "date_of_birth"}},
                               headers={"Authorization": f"Bearer {portal.credential_b}"})
    assert other.status_code == 404  # another service's upload is never found
