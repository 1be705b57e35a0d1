"""The report at /report in a real browser (Debian's Chromium via Playwright): a staff account signs in and reads
it (no console error, no request leaving 127.0.0.1), signs out from its bar; a service is refused it.
Screenshots go to test-artifacts/portal/ (not committed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from sprx.portal.server import build_server
from tests.portal.conftest import Portal, make_portal
from tests.portal.test_browser import CHROMIUM, SCREENSHOTS, Watched, browser  # noqa: F401 (a fixture)
from tests.portal.test_staff import publish_report

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")


@pytest.fixture(scope="module")
def live_with_report(tmp_path_factory) -> Iterator[tuple[Portal, str, str]]:
    """The portal served as `sprx portal` serves it, with a published report and a staff account."""
    portal = make_portal(tmp_path_factory.mktemp("report") / "home")
    staff_key = portal.client.app.state.store.add_service("ics-analysts", "ICS analytics team", role="staff")
    publish_report(portal.home)
    server = build_server(portal.client.app, portal.config.portal, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the portal did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield portal, staff_key, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def sign_in(watched: Watched, credential: str, lands_on: str) -> None:
    """Sign in with the keyboard and wait for the page it lands on."""
    watched.page.goto("/sign-in")
    watched.page.get_by_label("Access key").fill(credential)
    with watched.page.expect_navigation():
        watched.page.keyboard.press("Enter")
    watched.page.wait_for_url(f"**{lands_on}")


def test_staff_read_the_report_and_services_are_refused(live_with_report, browser) -> None:  # noqa: F811
    portal, staff_key, base = live_with_report
    requested: list[str] = []
    staff = Watched(browser, base)
    staff.page.on("request", lambda request: requested.append(request.url))
    sign_in(staff, staff_key, "/report")
    page = staff.page
    assert page.get_by_role("heading", level=1).inner_text() == "Social prescribing report"
    assert page.get_by_role("img", name="Referrals by month").count() == 1
    assert "Signed in as ICS analytics team" in page.get_by_role("navigation", name="Portal").inner_text()
    staff.shot("report-staff")
    assert staff.errors == []
    assert all(urlsplit(url).hostname == "127.0.0.1" for url in requested if not url.startswith("data:"))
    # signing out from the report's bar ends the session
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    page.goto("/report")
    assert page.url.endswith("/sign-in")

    service = Watched(browser, base)
    sign_in(service, portal.credential_a, "/upload")
    response = service.page.goto("/report")
    assert response.status == 403
    assert "staff accounts only" in service.page.content() and "Referrals by month" not in service.page.content()
    service.shot("report-refused-service")
    assert [error for error in service.errors if "status of 403" not in error] == []  # the 403 itself is logged
