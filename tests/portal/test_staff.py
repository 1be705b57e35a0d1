"""Staff accounts and the published report at /report: staff see it, services never do, and nobody signed out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sprx.cli import main
from sprx.portal.store import PortalStore
from tests.portal.conftest import GOOD_CSV, Portal

# A report as `sprx publish` writes it: one self-contained page (inline SVG, no scripts), and its PDF.
REPORT_HTML = ("<!doctype html><html lang='en-GB'><head><meta charset='utf-8'><title>Social prescribing report"
               "</title><style>h1{color:#123}</style></head><body><h1>Social prescribing report</h1>"
               "<svg role='img' aria-label='Referrals by month' width='120' height='40'><rect width='40' height='30'/>"
               "</svg><table><tr><th>Month</th><th>Referrals</th></tr><tr><td>2026-06</td><td>128</td></tr></table>"
               "</body></html>")
REPORT_PDF = b"%PDF-1.7\n% a published report\n%%EOF\n"


def publish_report(home: Path) -> None:
    """Put a report where `sprx publish` puts it."""
    folder = home / "published" / "report"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(REPORT_HTML, encoding="utf-8")
    (folder / "report.pdf").write_bytes(REPORT_PDF)


@pytest.fixture
def staff_key(portal: Portal) -> str:
    """A staff account's credential on the portal."""
    return portal.client.app.state.store.add_service("ics-analysts", "ICS analytics team", role="staff")


def test_staff_see_the_published_report(portal: Portal, staff_key: str) -> None:
    publish_report(portal.home)
    token = portal.client.get("/sign-in").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', token).group(1)
    signed_in = portal.client.post("/sign-in", data={"csrf_token": token, "credential": staff_key},
                                   follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/report"
    report = portal.client.get("/report")
    assert report.status_code == 200 and "Referrals by month" in report.text and "<td>128</td>" in report.text
    assert "Signed in as ICS analytics team" in report.text and 'action="/sign-out"' in report.text
    policy = report.headers["content-security-policy"]
    assert "script-src" not in policy and "default-src 'none'" in policy  # still no script may run
    pdf = portal.client.get("/report/report.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf" and pdf.content == REPORT_PDF
    # "/" takes staff to the report; a service's pages send them there too
    assert portal.client.get("/", follow_redirects=False).headers["location"] == "/report"
    assert portal.client.get("/upload", follow_redirects=False).headers["location"] == "/report"


def test_a_clear_page_when_no_report_has_been_published(portal: Portal, staff_key: str) -> None:
    portal.sign_in(staff_key, expect="/report")
    response = portal.client.get("/report")
    assert response.status_code == 404 and "No report has been published yet" in response.text
    assert "sprx publish" in response.text
    assert portal.client.get("/report/report.pdf").status_code == 404


def test_services_never_see_the_report(portal: Portal) -> None:
    publish_report(portal.home)
    # signed out: sent to sign in
    assert portal.client.get("/report", follow_redirects=False).headers["location"] == "/sign-in"
    assert portal.client.get("/report/report.pdf", follow_redirects=False).headers["location"] == "/sign-in"
    # a signed-in service: 403, and nothing of the report
    portal.sign_in(portal.credential_a)
    for path in ("/report", "/report/report.pdf"):
        response = portal.client.get(path)
        assert response.status_code == 403 and "staff accounts only" in response.text
        assert "Referrals by month" not in response.text and b"%PDF" not in response.content
    # a service's key on the API reaches no report either
    api = portal.client.get("/report", headers={"Authorization": f"Bearer {portal.credential_a}"})
    assert "Referrals by month" not in api.text


def test_staff_cannot_upload_or_see_uploads(portal: Portal, staff_key: str) -> None:
    portal.api_upload("june.csv", GOOD_CSV)  # service A's upload
    assert portal.api_upload("june.csv", GOOD_CSV + b"\r\n", credential=staff_key).status_code == 403
    assert portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {staff_key}"}).status_code == 403
    token = portal.sign_in(staff_key, expect="/report")
    assert portal.client.get("/api/uploads").status_code == 403
    form = portal.client.post("/upload", data={"csrf_token": token}, files={"file": ("june.csv", GOOD_CSV)})
    assert form.status_code == 403 and "cannot upload" in form.text
    assert len(portal.landing_files()) == 1  # only A's sheet


def test_a_revoked_staff_account_loses_the_report(portal: Portal, staff_key: str) -> None:
    publish_report(portal.home)
    portal.sign_in(staff_key, expect="/report")
    assert portal.client.get("/report").status_code == 200
    portal.client.app.state.store.revoke_service("ics-analysts")
    assert portal.client.get("/report", follow_redirects=False).headers["location"] == "/sign-in"


def test_add_staff_and_list_staff(sprx_home: Path, capsys) -> None:
    assert main(["portal", "add-staff", "ics-analysts", "ICS analytics team"]) == 0
    credential = capsys.readouterr().out.strip().splitlines()[-1]
    store = PortalStore(sprx_home / "portal")
    assert store.check_credential(credential)[0] == "ics-analysts" and store.role("ics-analysts") == "staff"
    assert main(["portal", "list-staff"]) == 0
    assert "ics-analysts\tstaff\tactive\tICS analytics team" in capsys.readouterr().out
    assert main(["portal", "list-services"]) == 0
    assert "ics-analysts" not in capsys.readouterr().out  # staff are not services
    assert main(["portal", "add-service", "ics-analysts", "Walks"]) == 2  # one set of ids
    assert main(["portal", "revoke-staff", "ics-analysts"]) == 0
    assert store.check_credential(credential) is None
