"""The published report of the sample: one self-contained HTML page and a PDF with one page per section,
built from the published tables; rendered by Debian's Chromium (Playwright) with no console error and no
request leaving 127.0.0.1. Screenshots go to test-artifacts/report/ (not committed)."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

import pytest
from pypdf import PdfReader

pytestmark = pytest.mark.usefixtures("prefect_harness")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "report"
# Sections the sample must have (its published tables hold all of them); diagnostics appear when published.
EXPECTED = ["Referral funnel over time", "Referral funnel by deprivation", "Referrals by Primary Care Network",
            "Outcome effects", "Frequent callers by month", "VCSE activity and wellbeing by service",
            "Data quality and feed freshness"]


def sections(page: str) -> list[str]:
    return re.findall(r'<section id="[^"]+"[^>]*>\s*<h2[^>]*>([^<]+)</h2>', page)


def test_the_report_is_one_self_contained_file_with_a_table_under_every_chart(published: Path) -> None:
    page = (published / "report" / "index.html").read_text(encoding="utf-8")
    titles = sections(page)
    for expected in EXPECTED:
        assert any(title.startswith(expected) for title in titles), (expected, titles)
    assert "<script" not in page.lower()
    # nothing to fetch: no src, no url(); links only to the page's own sections (and the empty inline icon)
    assert not re.search(r"\bsrc\s*=|url\(", page, flags=re.IGNORECASE)
    assert set(re.findall(r'href="([^"]*)"', page)) <= {"data:,"} | {
        f"#{key}" for key in re.findall(r'<section id="([^"]+)"', page)}
    for body in page.split("<section ")[1:]:
        assert body.index("<table>") > body.find("<figure>")  # the figures follow the chart
        assert "<th scope=\"col\">" in body
    assert ">redacted</td>" in page  # redacted figures are written as such, not left blank or zero
    assert 'role="img"' in page and "@media print" in page


def test_the_pdf_has_one_page_per_section(published: Path) -> None:
    page = (published / "report" / "index.html").read_text(encoding="utf-8")
    reader = PdfReader(published / "report" / "report.pdf")
    assert len(reader.pages) == len(sections(page)) >= len(EXPECTED)
    first = reader.pages[0].extract_text()
    assert "Referral funnel over time" in first and "redacted" in first


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_the_report_renders_in_chromium_without_errors_or_requests_leaving_localhost(published: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(published / "report"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    errors: list[str] = []
    requests: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("console", lambda message: message.type == "error" and errors.append(message.text))
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
                page.on("request", lambda request: requests.append(request.url))
                page.goto(f"{base}/index.html")
                page.wait_for_load_state("networkidle")
                assert page.title() == "Social prescribing: published report"
                assert page.locator("section").count() == len(sections(page.content()))
                assert page.locator("section svg[role=img]").count() >= len(EXPECTED)
                assert page.get_by_role("table").count() == page.locator("section").count()
                page.screenshot(path=str(SCREENSHOTS / "report.png"), full_page=True)
                page.emulate_media(media="print")
                page.screenshot(path=str(SCREENSHOTS / "report-print.png"), full_page=True)
                page.set_viewport_size({"width": 375, "height": 740})
                page.emulate_media(media="screen")
                page.screenshot(path=str(SCREENSHOTS / "report-phone.png"))
            finally:
                browser.close()
    finally:
        server.shutdown()
    assert errors == []
    assert requests and all(url.startswith(base + "/") for url in requests), requests
