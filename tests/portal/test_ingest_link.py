"""The portal's verdict is the ingest's: an accepted upload, once ingested, appears in audit.file_loads with
the counts the portal showed; and an upload can start that ingest itself (the real flow, in a child process)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from flows.ingest import ingest
from tests.portal.conftest import BAD_CSV, GOOD_CSV, Portal, make_portal, xlsx

pytestmark = pytest.mark.usefixtures("prefect_harness")

HEADER = ["Date", "Group", "Attended", "First Name", "Surname", "DOB", "Postcode", "Wellbeing"]

# (service, file name, content): sheets with and without problems, in the shapes services send.
SHEETS = {
    # every row fine
    "good csv": ("walks", "june.csv", GOOD_CSV),
    # bad attended value, impossible date, bad check digit, out-of-range score and a repeated person
    "bad rows csv": ("walks", "july.csv", BAD_CSV),
    # semicolons, a BOM, other header spellings (Windows Excel in a European locale)
    "semicolons with a BOM": ("sheds", "june.csv",
                              "\ufeffSession Date;Session Name;Present;NHS No;Forename;Family Name;D.O.B.;Post Code\r\n"
                              "03/06/2026;Men in Sheds;1;999 008 0631;Zoe;Hughes;17/08/1972;m41 9jd\r\n"
                              "04/06/2026;Men in Sheds;✓;;;Hughes;17/08/1972;nowhere\r\n".encode("utf-8")),
    # Windows-1252 with title rows, a blank row and a totals row
    "Windows-1252 with totals": ("sheds", "july.csv",
                                 "Register,,,,,\r\n,,,,,\r\nDate,Group,First Name,Surname,DOB,Attended\r\n"
                                 "03/07/2026,Walk,Zoë,Hughes,17/08/1972,Y\r\n,,,,,\r\n"
                                 "04/07/2026,Walk,Zoë,Hughes,17/08/1972,No\r\nTotal,,,,,2\r\n".encode("cp1252")),
    # a workbook with date cells, a title row, a problem row, a repeat and a totals row
    "xlsx with problems": ("walks", "august.xlsx", xlsx([
        HEADER,
        ["05/08/2026", "Walk", "Y", "Zoe", "Hughes", "17/08/1972", "M41 9JD", 7],
        ["06/08/2026", "Walk", "perhaps", "Zoe", "Hughes", "17/08/1972", "M41 9JD", None],
        ["05/08/2026", "walk", "Y", "ZOE", "HUGHES", "17/08/1972", "m419jd", 7],
        ["07/08/2026", "Walk", "N", None, None, None, None, 12],
        ["Total", None, None, None, None, None, None, 4],
    ], title_rows=1)),
}


def audit_row(home: Path, path: str) -> dict:
    """The audit.file_loads row of a landing path."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            "select status, rows_received, rows_loaded, rows_rejected from audit.file_loads where path = ?", [path]
        ).fetchall()
    assert len(rows) == 1, f"{path} recorded {len(rows)} times"
    return dict(zip(("status", "rows_received", "rows_loaded", "rows_rejected"), rows[0], strict=True))


def test_the_ingest_records_the_counts_the_portal_showed(sprx_home: Path) -> None:
    portal = make_portal(sprx_home)
    credentials = {"walks": portal.credential_a, "sheds": portal.credential_b}
    shown = {}
    for case, (service, name, content) in SHEETS.items():
        response = portal.api_upload(name, content, credential=credentials[service])
        assert response.status_code == 201, (case, response.text)
        shown[case] = response.json()
    assert shown["bad rows csv"]["rows_with_problems"] == 4 and shown["xlsx with problems"]["rows_with_problems"] == 3
    summary = ingest(sources=("vcse",))
    assert len(summary.files) == len(SHEETS)
    for case, body in shown.items():
        landing_path = f"vcse/{body['service_id']}/" + next(
            p.name for p in portal.landing_files() + sorted((sprx_home / "archive").rglob("*"))
            if body["upload_id"] in p.name)
        recorded = audit_row(sprx_home, landing_path)
        assert recorded == {"status": "loaded", "rows_received": body["rows_received"],
                            "rows_loaded": body["rows_accepted"], "rows_rejected": body["rows_with_problems"]}, case
        # the portal reads the outcome back for the service
        again = portal.client.get(f"/api/uploads/{body['upload_id']}",
                                  headers={"Authorization": f"Bearer {credentials[body['service_id']]}"}).json()
        assert again["load_status"] == "loaded", case


def test_an_accepted_upload_starts_the_vcse_ingest_when_asked(sprx_home: Path, monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the child process uses the test server
    portal: Portal = make_portal(sprx_home, ingest_on_upload=True)
    body = portal.api_upload("july.csv", BAD_CSV).json()
    assert body["queued_for_loading"] and body["load_status"] == "queued"
    assert portal.client.app.state.runner.wait(timeout=240)
    after = portal.client.get(f"/api/uploads/{body['upload_id']}",
                              headers={"Authorization": f"Bearer {portal.credential_a}"}).json()
    assert after["load_status"] == "loaded", after
    with duckdb.connect(str(sprx_home / "warehouse.duckdb"), read_only=True) as connection:
        [(received, loaded, rejected)] = connection.execute(
            "select rows_received, rows_loaded, rows_rejected from audit.file_loads").fetchall()
        reasons = connection.execute("select row_number from audit.rejected_rows order by 1").fetchall()
    assert (received, loaded, rejected) == (body["rows_received"], body["rows_accepted"], body["rows_with_problems"])
    assert sorted({row for (row,) in reasons}) == sorted({p["row"] for p in body["problems"]})


def test_the_template_with_its_wellbeing_answers_loads_every_ons4_column(sprx_home: Path) -> None:
    from sprx.portal.app import template_csv, template_xlsx

    portal = make_portal(sprx_home)
    for name, content in (("template.csv", template_csv()), ("template.xlsx", template_xlsx())):
        body = portal.api_upload(name, content).json()
        assert body["verdict"] == "accepted" and body["rows_accepted"] == 1, body
        assert {h["column"] for h in body["headings"]} >= {"Life Satisfaction", "Worthwhile", "Happiness", "Anxiety"}
        ingest(sources=("vcse",))
    with duckdb.connect(str(sprx_home / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute("select wellbeing_score, wellbeing_worthwhile, wellbeing_happiness, "
                                  "wellbeing_anxiety from raw.vcse_attendances").fetchall()
    assert rows == [(7, 8, 6, 3)]  # the template's example row, once: the second upload restates its session
