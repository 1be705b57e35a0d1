"""The portal's JSON API and forms: who may upload, what is refused (and that nothing reaches landing/),
what is accepted and where it lands, and that services never see each other's uploads."""

from __future__ import annotations

import io
import re
import sqlite3
import zipfile
from dataclasses import dataclass

import pytest

from sprx.portal.app import template_csv, template_headings, template_xlsx
from tests.portal.conftest import BAD_CSV, BAD_IDENTIFIERS, BAD_PROBLEMS, GOOD_CSV, Portal, rewrite_member, xlsx

HEADER = ["Date", "Group", "Attended", "Surname", "DOB"]
ROW = ["03/06/2026", "Walk", "Y", "Hughes", "17/08/1972"]


def zip_bomb(unpacked_bytes: int) -> bytes:
    """A real workbook plus one member of zeros that unpacks to `unpacked_bytes` (packed about 1000:1)."""
    buffer = io.BytesIO(xlsx([HEADER, ROW]))
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("xl/media/image1.bin", "w", force_zip64=True) as member:
            block = bytes(1024 * 1024)
            for _ in range(unpacked_bytes // len(block)):
                member.write(block)
    return buffer.getvalue()


def wide_sheet() -> bytes:
    """A workbook whose one stray cell is in the last column Excel has (XFD)."""
    workbook = xlsx([HEADER, ROW])
    return rewrite_member(workbook, "xl/worksheets/sheet1.xml",
                          lambda xml: xml.replace(b"</row></sheetData>",
                                                  b'<c r="XFD2" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'))


def tall_sheet() -> bytes:
    """A workbook with a cell on row 60,000, past the row limit."""
    workbook = xlsx([HEADER, ROW])
    return rewrite_member(workbook, "xl/worksheets/sheet1.xml",
                          lambda xml: xml.replace(b"</sheetData>",
                                                  b'<row r="60000"><c r="A60000" t="inlineStr"><is><t>x</t></is>'
                                                  b"</c></row></sheetData>"))


def entity_bomb() -> bytes:
    """A workbook whose sheet declares XML entities (the 'billion laughs' attack)."""
    doctype = (b'<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
               b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>')

    def declare(xml: bytes) -> bytes:
        declaration, found, rest = xml.partition(b"?>")
        return declaration + found + doctype + rest if found else doctype + xml

    return rewrite_member(xlsx([HEADER, ROW]), "xl/worksheets/sheet1.xml", declare)


def word_document() -> bytes:
    """A zip that is a Word document, not a workbook."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<document/>")
    return buffer.getvalue()


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


@dataclass
class Refusal:
    """An upload that must be refused with a clear message, writing nothing to landing/."""

    name: str
    content: bytes
    status: int
    message: str  # a fragment of the message, case-insensitive


REFUSALS = {
    # a picture with a picture's name: the name alone says it is not a sheet
    "wrong type by name": Refusal("photo.png", PNG, 415, "only attendance sheets saved as csv"),
    # a picture renamed .csv: the content says it is not text
    "wrong type by content": Refusal("june.csv", PNG, 415, "not a text file"),
    # random bytes named as a CSV
    "binary garbage": Refusal("june.csv", bytes(range(256)) * 40, 415, "not a text file"),
    # text named as a workbook
    "csv named .xlsx": Refusal("june.xlsx", GOOD_CSV, 415, "is not an excel workbook"),
    # a workbook named as a CSV
    "workbook named .csv": Refusal("june.csv", xlsx([HEADER, ROW]), 415, "holds a zip archive or workbook"),
    # an old Excel file
    "old .xls": Refusal("june.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), 415, "old-style excel"),
    # the zip signature followed by rubbish
    "damaged workbook": Refusal("june.xlsx", b"PK\x03\x04" + b"garbage" * 50, 422, "could not be opened as a .zip"),
    # a Word document renamed .xlsx
    "zip that is not a workbook": Refusal("june.xlsx", word_document(), 415, "not an excel workbook"),
    # 72 MB of zeros packed into about 70 KB: over the 64 MB unpacked limit
    "zip bomb": Refusal("june.xlsx", zip_bomb(72 * 1024 * 1024), 422, "zip bomb"),
    # 8 MB of zeros: under the unpacked limit, but packed far tighter than any sheet
    "zip bomb by ratio": Refusal("june.xlsx", zip_bomb(8 * 1024 * 1024), 422, "times its packed size"),
    # one cell in column XFD would make every row 16,384 cells wide
    "huge sheet: wide": Refusal("june.xlsx", wide_sheet(), 422, "past column 200"),
    # a row far below any register
    "huge sheet: tall": Refusal("june.xlsx", tall_sheet(), 422, "past row 50,000"),
    # XML entity expansion
    "entity bomb": Refusal("june.xlsx", entity_bomb(), 422, "document type declaration"),
    # over the portal's 256 KB limit (the fixture's), with a Content-Length
    "over-size": Refusal("june.csv", GOOD_CSV * 4000, 413, "larger than the limit"),
    # path traversal in the name: refused, never used as a path
    "traversal with slashes": Refusal("../../landing/vcse/sheds/june.csv", GOOD_CSV, 400, "folder parts"),
    "traversal with backslashes": Refusal("..\\..\\sheds\\june.csv", GOOD_CSV, 400, "folder parts"),
    "absolute path": Refusal("/etc/june.csv", GOOD_CSV, 400, "folder parts"),
    # nothing in the file
    "empty file": Refusal("june.csv", b"", 422, "empty"),
    # a sheet without the required columns: readable, but not a register
    "no attended column": Refusal("june.csv", b"Date,Group\n03/06/2026,Walk\n", 422, "no 'attended'"),
    # a header and nothing else
    "header only": Refusal("june.csv", b"Date,Attended\n", 422, "no attendance rows"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_upload_says_why_and_lands_nothing(portal: Portal, case: str) -> None:
    refusal = REFUSALS[case]
    response = portal.api_upload(refusal.name, refusal.content)
    assert response.status_code == refusal.status, response.text
    body = response.json()
    assert body["verdict"] == "refused" and body["queued_for_loading"] is False
    assert refusal.message in body["message"].lower()
    assert portal.landing_files() == []  # nothing reaches the ingest
    assert not list((portal.home / "portal" / "incoming").glob("*"))  # no partial file left behind


def test_an_over_size_upload_is_stopped_while_it_streams(portal: Portal) -> None:
    # no Content-Length (chunked): the limit must be enforced as the bytes arrive
    boundary = "sprxboundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="june.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode()
    sent = []

    def body():
        yield head
        for _ in range(100):  # 100 x 64 KB = 6.4 MB, far over the 256 KB limit
            sent.append(1)
            yield b"x" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = portal.client.post("/api/uploads", content=body(),
                                  headers={"Authorization": f"Bearer {portal.credential_a}",
                                           "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413 and "larger than the limit" in response.json()["message"]
    assert portal.landing_files() == [] and not list((portal.home / "portal" / "incoming").glob("*"))
    # the service sees the refusal in its history
    [record] = portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {portal.credential_a}"}).json()[
        "uploads"]
    assert record["verdict"] == "refused" and "larger than the limit" in record["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),  # no credential
        ({"Authorization": "Bearer walks.not-the-secret"}, 403),  # the right service, the wrong secret
        ({"Authorization": "Bearer nobody.abc"}, 403),  # a service that does not exist
        ({"Authorization": "Basic d2Fsa3M6eA=="}, 401),  # another scheme
    ],
)
def test_upload_without_a_valid_credential_is_refused_and_writes_nothing(portal: Portal, headers, status) -> None:
    response = portal.client.post("/api/uploads", files={"file": ("june.csv", GOOD_CSV)}, headers=headers)
    assert response.status_code == status
    assert "error" in response.json()
    assert portal.landing_files() == []
    assert not (portal.home / "portal" / "uploads").exists()


def test_a_revoked_service_gets_nothing(portal: Portal) -> None:
    token = portal.sign_in(portal.credential_a)
    assert token
    portal.client.app.state.store.revoke_service("walks")
    # the credential stops working at once, and so does the session it started
    assert portal.api_upload("june.csv", GOOD_CSV).status_code == 403
    assert portal.client.get("/upload", follow_redirects=False).headers["location"] == "/sign-in"
    assert portal.landing_files() == []
    # a new key restores access; the old one stays dead
    new = portal.client.app.state.store.new_credential("walks")
    assert portal.api_upload("june.csv", GOOD_CSV, credential=new).status_code == 201
    assert portal.api_upload("june2.csv", GOOD_CSV + b"\r\n", credential=portal.credential_a).status_code == 403


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("june-register.csv", GOOD_CSV, "csv"),  # a CSV with BOM-less UTF-8
        ("June Register.XLSX", xlsx([HEADER, ROW, ["10/06/2026", "Walk", "N", "Hughes", "17/08/1972"],
                                     ["Total", None, None, None, 2]], title_rows=2), "xlsx"),  # title rows, totals
        ("attendance-template.csv", template_csv(), "csv"),  # the portal's own templates are accepted as they are
        ("attendance-template.xlsx", template_xlsx(), "xlsx"),
    ],
)
def test_a_good_sheet_is_accepted_and_lands_under_a_server_name(portal: Portal, name: str, content: bytes,
                                                                kind: str) -> None:
    response = portal.api_upload(name, content)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["verdict"] == "accepted" and body["problems"] == [] and body["queued_for_loading"]
    assert body["rows_received"] == body["rows_accepted"] >= 1 and body["kind"] == kind
    [landed] = portal.landing_files()
    assert landed.parent == portal.home / "landing" / "vcse" / "walks"
    assert re.fullmatch(rf"portal-\d{{8}}-\d{{6}}-{body['upload_id']}\.{kind}", landed.name)
    assert landed.read_bytes() == content  # byte for byte
    # kept in the portal's own store too, so a later move of landing/ loses nothing
    assert (portal.home / "portal" / "uploads" / "walks" / f"{body['upload_id']}.{kind}").read_bytes() == content


def test_bad_rows_are_listed_by_row_with_a_fix_and_no_identifier(portal: Portal) -> None:
    response = portal.api_upload("june.csv", BAD_CSV)
    assert response.status_code == 201
    body = response.json()
    assert body["verdict"] == "accepted_with_problems" and body["queued_for_loading"]
    assert (body["rows_received"], body["rows_accepted"], body["rows_with_problems"]) == (6, 2, 4)
    assert {(p["row"], p["column"]) for p in body["problems"]} == BAD_PROBLEMS
    assert all(p["reason"] and p["fix"] for p in body["problems"])
    repeat = next(p for p in body["problems"] if p["row"] == 7)
    assert "already on row 2" in repeat["reason"]
    # neither the JSON, the result page nor the history page echoes a name, NHS number, birth date or postcode
    portal.sign_in(portal.credential_a)
    pages = [response.text, portal.client.get(f"/uploads/{body['upload_id']}").text,
             portal.client.get("/uploads").text]
    for text in pages:
        for identifier in BAD_IDENTIFIERS:
            assert identifier not in text


def test_the_same_file_twice_is_recognised_and_not_landed_again(portal: Portal) -> None:
    assert portal.api_upload("june.csv", GOOD_CSV).status_code == 201
    again = portal.api_upload("june (1).csv", GOOD_CSV)
    assert again.status_code == 200 and again.json()["verdict"] == "duplicate"
    assert "you sent exactly this file" in again.json()["message"]
    assert len(portal.landing_files()) == 1


def test_a_service_never_sees_another_services_uploads(portal: Portal) -> None:
    mine = portal.api_upload("june.csv", GOOD_CSV).json()["upload_id"]
    other = {"Authorization": f"Bearer {portal.credential_b}"}
    assert portal.client.get(f"/api/uploads/{mine}", headers=other).status_code == 404
    assert portal.client.get("/api/uploads", headers=other).json() == {"uploads": []}
    portal.sign_in(portal.credential_b)
    assert portal.client.get(f"/uploads/{mine}").status_code == 404
    assert "june.csv" not in portal.client.get("/uploads").text
    # an upload by B lands in B's folder only, whatever its name says
    portal.api_upload("../walks/june.csv", GOOD_CSV, credential=portal.credential_b)
    sheds = portal.api_upload("walks-june.csv", GOOD_CSV + b"\r\n", credential=portal.credential_b).json()
    assert sheds["verdict"] == "accepted"
    assert {p.parent.name for p in portal.landing_files()} == {"walks", "sheds"}


def test_forms_need_the_session_token_and_the_portals_own_origin(portal: Portal) -> None:
    token = portal.sign_in(portal.credential_a)
    # no token, a wrong token, or a form posted from another site: refused before anything is written
    for data, headers in [({}, {}), ({"csrf_token": "forged"}, {}),
                          ({"csrf_token": token}, {"Origin": "https://evil.example"})]:
        response = portal.client.post("/upload", data=data, files={"file": ("june.csv", GOOD_CSV)}, headers=headers)
        assert response.status_code == 403
    assert portal.landing_files() == [] and not (portal.home / "portal" / "uploads").exists()
    # with the token, from the portal's own page: accepted
    response = portal.client.post("/upload", data={"csrf_token": token}, files={"file": ("june.csv", GOOD_CSV)},
                                  headers={"Origin": "http://testserver"})
    assert response.status_code == 200 and "All 3 rows accepted" in response.text  # the result page, by redirect
    # sign-out needs the token too
    assert portal.client.post("/sign-out", data={"csrf_token": "forged"}).status_code == 403
    assert portal.client.get("/upload", follow_redirects=False).status_code == 200


def test_sign_in_refuses_a_wrong_key_and_a_forged_form(portal: Portal) -> None:
    page = portal.client.get("/sign-in").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    wrong = portal.client.post("/sign-in", data={"csrf_token": token, "credential": "walks.wrong"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert 'aria-describedby="credential-hint credential-error"' in wrong.text  # the error is tied to the field
    portal.client.cookies.clear()
    forged = portal.client.post("/sign-in", data={"csrf_token": token, "credential": portal.credential_a})
    assert forged.status_code == 403  # the token is bound to the browser that loaded the form


def test_sessions_expire(portal: Portal, monkeypatch) -> None:
    import datetime as dt

    from sprx.portal import store

    portal.sign_in(portal.credential_a)
    assert portal.client.get("/upload", follow_redirects=False).status_code == 200
    later = store.utc_now() + dt.timedelta(minutes=61)  # the fixture's sessions last 60 minutes
    monkeypatch.setattr(store, "utc_now", lambda: later)
    assert portal.client.get("/upload", follow_redirects=False).headers["location"] == "/sign-in"


def test_only_a_salted_hash_of_a_credential_is_stored(portal: Portal) -> None:
    secret = portal.credential_a.partition(".")[2]
    database = portal.home / "portal" / "portal.sqlite3"
    assert secret.encode() not in database.read_bytes()
    with sqlite3.connect(database) as connection:
        salts = [row[0] for row in connection.execute("select salt from credentials")]
    assert len(set(salts)) == len(salts) == 2  # one salt per credential


def test_templates_have_the_accepted_headers_and_an_example_row(portal: Portal) -> None:
    csv_text = portal.client.get("/template.csv").text.splitlines()
    assert csv_text[0].split(",") == template_headings() and len(csv_text) == 2
    assert template_headings()[:3] == ["Session Date", "Activity", "Attended"]
    workbook = portal.client.get("/template.xlsx")
    assert workbook.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert workbook.content.startswith(b"PK")
    template_page = portal.client.get("/template").text
    assert 'href="/template.xlsx"' in template_page and 'href="/template.csv"' in template_page
    help_page = portal.client.get("/help").text
    for heading in ("Session Date", "Date Attended", "ONS4 Life Satisfaction", "DNA"):
        assert heading in help_page


def test_pages_send_a_strict_content_security_policy(portal: Portal) -> None:
    response = portal.client.get("/sign-in")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy  # no script may run at all
    assert response.headers["x-frame-options"] == "DENY"
    assert not re.search(r'(src|href)="(https?:)?//', response.text)  # no outside assets


def test_a_form_without_a_file_shows_the_error_beside_the_field(portal: Portal) -> None:
    token = portal.sign_in(portal.credential_a)
    # a browser sends an empty, nameless file part when no file was chosen
    response = portal.client.post("/upload", data={"csrf_token": token}, files={"file": ("", b"")})
    assert response.status_code == 400 and "Choose a file to upload" in response.text
    assert 'aria-describedby="file-hint file-error"' in response.text and 'aria-invalid="true"' in response.text
    assert portal.client.get("/api/uploads").json() == {"uploads": []}  # nothing recorded, nothing kept
    assert not (portal.home / "portal" / "uploads").exists()
