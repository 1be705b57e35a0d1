"""Issue 14 in a real browser (Debian's Chromium, Playwright), at 1280 and 375 px: one test per numbered
problem, each page checked by axe-core (from npm, `make axe`; injected, never fetched from a CDN) for
serious or critical accessibility violations. Screenshots go to test-artifacts/portal/."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from tests.portal.conftest import BAD_CSV, CONTACT, REGISTER, make_portal, misspelt
from tests.portal.test_browser import CHROMIUM, DESKTOP, PHONE, Watched, browser, serve  # noqa: F401

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
# Impacts that fail the check (axe's scale: minor, moderate, serious, critical).
FAILING_IMPACTS = ("serious", "critical")
# Words a volunteer should never have to read.
JARGON = ("warehouse", "json", "bytes", "extract", "utc")
SIZES = {"desktop": DESKTOP, "phone": PHONE}


def check_accessibility(page) -> None:
    """Run axe-core on the page as it stands; fail on any serious or critical violation, naming it."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE}: run `make axe` (npm ci in tests/portal/axe)")
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v => (
               {id: v.id, impact: v.impact, help: v.help, where: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""")
    failing = [violation for violation in violations if violation["impact"] in FAILING_IMPACTS]
    assert failing == [], failing


def visible_text(page) -> str:
    """What a person reads on the page."""
    return page.locator("body").inner_text()


def assert_plain(page) -> None:
    """No jargon on the page."""
    text = visible_text(page)
    assert [word for word in JARGON if re.search(rf"\b{word}\b", text, re.IGNORECASE)] == []


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The portal served on localhost; each test signs in a service of its own, so the per-client limits
    on signing in and uploading are raised for this one client (the tests' browser)."""
    portal = make_portal(tmp_path_factory.mktemp("volunteer") / "home", sign_in_rate_limit="1000/minute",
                         upload_rate_limit="1000/hour")
    yield from serve(portal)


@pytest.fixture(params=list(SIZES))
def volunteer(request, live, browser):  # noqa: F811
    """A fresh service signed in (its own remembered headings) in a browser at 1280 or 375 px."""
    portal, base = live
    service = f"walks-{secrets.token_hex(3)}"
    credential = portal.client.app.state.store.add_service(service, "Trafford Walking for Health")
    watched = Watched(browser, base, SIZES[request.param], bypass_csp=True)
    watched.sign_in(credential)
    watched.size = request.param
    yield watched
    assert watched.errors == []
    watched.context.close()


def shot(watched: Watched, name: str) -> None:
    """A screenshot named for the problem and the screen size."""
    watched.shot(f"issue14-{name}-{watched.size}")


def no_sideways_scroll(page) -> bool:
    """True when the page fits the screen's width."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_1_a_misspelt_heading_is_asked_about_and_the_answer_remembered(volunteer: Watched) -> None:
    page = volunteer.page
    brith = misspelt(REGISTER.read_bytes(), "DOB", "Date of Brith")
    volunteer.upload("april-2025-register.csv", brith)
    assert page.get_by_role("heading", level=1).inner_text() == "Please check your headings"
    question = page.locator("fieldset legend").inner_text()
    assert question == "Cell E3 says “Date of Brith”. Did you mean Date of Birth?"
    assert "Nothing has been loaded yet" in page.locator("#verdict-message").inner_text()
    assert no_sideways_scroll(page)
    check_accessibility(page)
    shot(volunteer, "1-heading-question")
    page.get_by_label("Yes: read “Date of Brith” as Date of Birth").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm and check again").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Accepted"
    columns = page.locator("table.headings tbody tr")
    read_as = {columns.nth(i).locator("td").nth(1).inner_text(): columns.nth(i).locator("td").nth(2).inner_text()
               for i in range(columns.count())}
    assert read_as["Date of Brith"] == "Date of Birth (as you confirmed)"
    assert read_as["Surname"] == "Last Name" and read_as["Attended"] == "Attended"
    check_accessibility(page)
    shot(volunteer, "1-heading-confirmed")
    # remembered: the same heading next month is read without a question
    volunteer.upload("march-2025-register.csv", brith.replace(b"/04/", b"/03/"))
    assert page.get_by_role("heading", level=1).inner_text() == "Accepted"


def test_2_a_row_with_no_names_is_accepted_with_a_word_that_it_cannot_be_followed_up(volunteer: Watched) -> None:
    page = volunteer.page
    sheet = ("Date,Group,Attended,First Name,Surname,DOB\r\n"
             "03/06/2026,Walk,Y,Zoe,Hughes,17/08/1972\r\n"
             "03/06/2026,Walk,Y,,,\r\n").encode()
    volunteer.upload("june.csv", sheet)
    assert page.get_by_role("heading", level=1).inner_text() == "Accepted"
    assert page.get_by_role("heading", name="Rows that cannot be followed up").is_visible()
    item = page.locator("ul.unlinkable li").inner_text()
    assert item.startswith("1 row (row 3)") and "no first name, last name, date of birth" in item
    assert "Fill in the NHS number" in item
    check_accessibility(page)
    shot(volunteer, "2-no-names")


def test_3_a_misspelt_required_heading_shows_the_heading_found_the_match_and_where_to_get_help(
        volunteer: Watched) -> None:
    page = volunteer.page
    volunteer.upload("april-2025-register.csv", misspelt(REGISTER.read_bytes(), "Attended", "Atended"))
    message = page.locator("#verdict-message").inner_text()
    assert "no 'Attended' column" in message and "'Atended' in cell F3" in message
    assert page.locator("fieldset legend").inner_text() == "Cell F3 says “Atended”. Did you mean Attended?"
    help_box = page.locator("#get-help")
    assert CONTACT in help_box.inner_text()
    assert no_sideways_scroll(page)
    check_accessibility(page)
    shot(volunteer, "3-required-heading")
    page.wait_for_load_state("networkidle")  # the icon too, so that leaving the page cancels nothing
    help_box.get_by_role("link", name="Template").click()
    page.wait_for_url("**/template")
    assert page.get_by_role("heading", level=1).inner_text() == "Attendance sheet template"
    page.go_back()
    page.wait_for_load_state("networkidle")
    help_box.get_by_role("link", name="Help").click()
    page.wait_for_url("**/help")
    page.wait_for_load_state("networkidle")


def test_4_problems_are_told_in_the_sheets_words(volunteer: Watched) -> None:
    page = volunteer.page
    volunteer.upload("july-register.csv", BAD_CSV)
    rows = page.locator("table.problems tbody tr")
    cells = [[rows.nth(i).locator("td").nth(j).inner_text() for j in range(4)] for i in range(rows.count())]
    date = next(row for row in cells if row[1] == "A4")
    assert date[2] == "Date" and "31/02/2026" in date[3] and date[3].startswith("'Date' is not a real date")
    nhs = next(row for row in cells if row[2] == "NHS Number")
    assert nhs[1] == "D4" and "9992914174" not in page.content()  # an identifier is never echoed
    assert no_sideways_scroll(page)
    check_accessibility(page)
    shot(volunteer, "4-problems")


def test_5_plain_english_on_every_page(volunteer: Watched) -> None:
    page = volunteer.page
    volunteer.upload("july-register.csv", BAD_CSV)
    assert_plain(page)
    for path in ("/upload", "/uploads", "/template", "/help"):
        page.goto(path)
        assert_plain(page)
        check_accessibility(page)
        assert no_sideways_scroll(page)
        shot(volunteer, f"5-page{path.replace('/', '-')}")


def test_6_uk_times_and_already_received(volunteer: Watched) -> None:
    page = volunteer.page
    volunteer.upload("june-register.csv", BAD_CSV)
    assert re.search(r"received \d{1,2} \w+ \d{4} at \d\d:\d\d \((GMT|BST)\)", visible_text(page))
    volunteer.upload("june-register (copy).csv", BAD_CSV)
    assert page.get_by_role("heading", level=1).inner_text() == "Already received"
    assert "There is nothing new to load" in page.locator("#verdict-message").inner_text()
    check_accessibility(page)
    shot(volunteer, "6-already-received")
    page.goto("/uploads")
    first = page.locator("table.history tbody tr").first.inner_text()
    assert re.search(r"\d\d:\d\d (GMT|BST)", first) and "Already received" in first
    shot(volunteer, "6-history")


def test_7_the_phone_caption_reads_across_and_help_says_who_to_contact(volunteer: Watched) -> None:
    page = volunteer.page
    volunteer.upload("june-register.csv", BAD_CSV)
    page.goto("/uploads")
    caption = page.locator("table.history caption")
    assert caption.bounding_box()["width"] > 0.6 * page.viewport_size["width"]
    check_accessibility(page)
    shot(volunteer, "7-history-caption")
    page.goto("/help")
    assert CONTACT in page.locator("#contact-details").inner_text()
    response = page.goto("/uploads/0000000000000000")
    assert response.status == 404 and CONTACT in visible_text(page)
    volunteer.errors = [error for error in volunteer.errors if "404" not in error]  # the browser logs the 404
    check_accessibility(page)
    shot(volunteer, "7-error-page")
