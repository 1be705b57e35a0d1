"""The portal in a real browser (Debian's Chromium, headless, driven by Playwright): sign in, upload a good
sheet and a bad one, read the problems by row, keep to one's own uploads, sign out; by keyboard, on a
phone-sized screen, with no console errors. Screenshots go to test-artifacts/portal/ (not committed)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.portal.conftest import BAD_CSV, GOOD_CSV, Portal, make_portal

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "portal"
# A desktop window and a phone screen (CSS pixels).
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")


def free_port() -> int:
    """A port nobody is listening on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[Portal, str]]:
    """The portal served by uvicorn on a free localhost port, in a background thread; and its address."""
    yield from serve(make_portal(tmp_path_factory.mktemp("browser") / "home"))


def serve(portal: Portal) -> Iterator[tuple[Portal, str]]:
    """Serve a portal with uvicorn on a free localhost port in a background thread until the caller is done."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(portal.client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the portal did not start"
    yield portal, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium from /usr/bin (never a downloaded browser)."""
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors, uncaught exceptions and failed requests are collected."""

    def __init__(self, browser, base: str, viewport: dict | None = None, *, bypass_csp: bool = False) -> None:
        # bypass_csp: only so that a test can inject the accessibility checker into the page
        self.context = browser.new_context(viewport=viewport or DESKTOP, base_url=base, bypass_csp=bypass_csp)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # a request the browser itself cancelled by moving to the next page (the icon, typically) is no fault
        self.page.on("requestfailed", lambda request: request.failure != "net::ERR_ABORTED"
                     and self.errors.append(f"failed: {request.url} ({request.failure})"))

    def sign_in(self, credential: str) -> None:
        """Sign in with the keyboard: the key typed into its labelled field, Enter to send."""
        self.page.goto("/")
        self.page.get_by_label("Access key").fill(credential)
        self.page.keyboard.press("Enter")
        self.page.wait_for_url("**/upload")

    def upload(self, name: str, content: bytes) -> None:
        """Choose a sheet in the labelled file field and send it with the keyboard."""
        self.page.goto("/upload")
        self.page.get_by_label("Attendance sheet").set_input_files(
            {"name": name, "mimeType": "text/csv", "buffer": content})
        self.page.get_by_role("button", name="Upload and check").focus()
        with self.page.expect_navigation():
            self.page.keyboard.press("Enter")

    def shot(self, name: str) -> None:
        """Save a full-page screenshot as a test artifact."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_service_signs_in_uploads_reads_its_problems_and_signs_out(live, browser) -> None:
    portal, base = live
    watched = Watched(browser, base)
    page = watched.page
    page.goto("/")
    assert page.url.endswith("/sign-in")
    page.keyboard.press("Tab")  # the first stop is the skip link, for keyboard users
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    watched.shot("sign-in")
    watched.sign_in(portal.credential_a)
    assert "Trafford Walks" in page.locator(".signed-in").inner_text()
    watched.shot("upload")

    # a good sheet: accepted at once, every row counted
    watched.upload("june-register.csv", GOOD_CSV)
    assert page.get_by_role("heading", level=1).inner_text() == "Accepted"
    assert page.locator("#rows-accepted").inner_text() == "3"
    assert "Waiting to be loaded" in page.locator("#load-status").inner_text()
    watched.shot("result-accepted")

    # a sheet with bad rows: each problem listed by spreadsheet row, with the column and how to fix it
    watched.upload("july-register.csv", BAD_CSV)
    assert page.get_by_role("heading", level=1).inner_text() == "Accepted, some rows need fixing"
    assert page.locator("#rows-with-problems").inner_text() == "4"
    rows = page.locator("table.problems tbody tr")
    listed = {(rows.nth(i).locator("td").nth(0).inner_text(), rows.nth(i).locator("td").nth(2).inner_text())
              for i in range(rows.count())}
    assert listed == {("3", "Attended"), ("4", "Date"), ("4", "NHS Number"), ("5", "Wellbeing"), ("7", "Whole row")}
    assert "Margaret" not in page.content() and "9992914174" not in page.content()  # no identifier echoed
    watched.shot("result-problems")

    # on a phone the result reads without sideways scrolling
    page.set_viewport_size(PHONE)
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    watched.shot("result-problems-phone")
    page.set_viewport_size(DESKTOP)

    # the history lists both uploads with their counts
    page.get_by_role("navigation").get_by_role("link", name="Your uploads").click()
    history = page.locator("table.history tbody tr")
    assert history.count() == 2
    assert "july-register.csv" in history.nth(0).inner_text() and "june-register.csv" in history.nth(1).inner_text()
    watched.shot("history")

    # sign out: back to sign-in, and the pages are closed again
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in?signed_out=true")
    assert "You have signed out" in page.content()
    page.goto("/upload")
    assert page.url.endswith("/sign-in")
    assert watched.errors == []
    watched.context.close()


def test_service_b_can_neither_see_nor_fetch_service_a_uploads(live, browser) -> None:
    portal, base = live
    uploaded = portal.api_upload("a-private.csv", GOOD_CSV + b"\r\n").json()["upload_id"]
    watched = Watched(browser, base)
    page = watched.page
    watched.sign_in(portal.credential_b)
    page.goto("/uploads")
    assert "a-private.csv" not in page.content()
    response = page.goto(f"/uploads/{uploaded}")
    assert response.status == 404 and "no upload with that reference" in page.content()
    response = page.goto(f"/api/uploads/{uploaded}")
    assert response.status == 404
    watched.context.close()


def test_a_wrong_key_is_explained_beside_the_field(live, browser) -> None:
    portal, base = live
    watched = Watched(browser, base)
    page = watched.page
    page.goto("/sign-in")
    page.get_by_label("Access key").fill("walks.not-it")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    field = page.get_by_label("Access key")
    assert field.get_attribute("aria-invalid") == "true"
    described = " ".join(page.locator(f"#{name}").inner_text()
                         for name in field.get_attribute("aria-describedby").split())
    assert "not valid" in described
    assert page.evaluate("document.activeElement.id") == "credential"  # focus goes to the field to fix
    watched.context.close()


def test_an_over_size_sheet_is_refused_on_the_page_beside_the_field(live, browser) -> None:
    portal, base = live
    before = portal.landing_files()
    watched = Watched(browser, base)
    page = watched.page
    watched.sign_in(portal.credential_a)
    watched.upload("huge.csv", GOOD_CSV + b"x" * (11 * 1024 * 1024))  # over the 10 MB default
    assert "larger than the limit of 10 MB" in page.locator("#file-error").inner_text()
    assert page.get_by_label("Attendance sheet").get_attribute("aria-invalid") == "true"
    watched.shot("upload-too-large")
    assert portal.landing_files() == before
    watched.context.close()
