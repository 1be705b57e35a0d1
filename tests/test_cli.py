"""The `sprx` command line: help, settings, and the demo on the embedded sample feeds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sprx.cli import main
from sprx.settings import SAMPLE_FEEDS_DIR, get_settings


def test_settings_default_home_is_data_and_follows_sprx_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPRX_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert get_settings().home == tmp_path / "data"
    monkeypatch.setenv("SPRX_HOME", str(tmp_path / "elsewhere"))
    settings = get_settings()
    assert settings.landing_dir == tmp_path / "elsewhere" / "landing"
    assert settings.warehouse_path == tmp_path / "elsewhere" / "warehouse.duckdb"
    assert settings.published_dir == tmp_path / "elsewhere" / "published"


def test_help_lists_every_command() -> None:
    # the console script is installed and explains itself, one line per command
    result = subprocess.run([Path(sys.executable).parent / "sprx", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("sample", "ingest", "build", "run", "publish", "serve", "status", "portal", "demo"):
        assert re.search(rf"^    {command} ", result.stdout, flags=re.MULTILINE), command


@pytest.mark.parametrize(("variable", "value", "message"), [
    # a lock wait that is not a number is named, not a traceback
    ("SPRX_LOCK_WAIT_SECONDS", "soon", "SPRX_LOCK_WAIT_SECONDS must be a number of seconds (got 'soon')"),
    # a cron that cron cannot read is named with its deployment
    ("SPRX_SCHEDULE_VCSE", "every 15 minutes", "schedule for vcse-frequent ('every 15 minutes', Europe/London)"),
    # so is a time zone that does not exist
    ("SPRX_SCHEDULE_TIMEZONE", "Europe/Stretford", "SPRX_SCHEDULE_TIMEZONE 'Europe/Stretford' is not a time zone"),
])
def test_a_bad_setting_is_one_line_and_exit_2(monkeypatch, tmp_path: Path, capsys, variable, value, message) -> None:
    monkeypatch.setenv("SPRX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", "k" * 32)
    monkeypatch.setenv(variable, value)
    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "home").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_demo_lands_ingests_and_summarises_the_sample_feeds(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("SPRX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPRX_PSEUDONYMISATION_KEY", raising=False)
    assert main(["demo"]) == 0
    captured = capsys.readouterr()

    def files_under(folder: Path) -> list[Path]:
        return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())

    expected = sorted(p.relative_to(SAMPLE_FEEDS_DIR) for p in SAMPLE_FEEDS_DIR.rglob("*")
                      if p.is_file() and p.name not in ("truth.json", "README.md"))
    # every sample file loaded, so every one moved from landing/ to archive/
    assert files_under(tmp_path / "home" / "archive") == expected
    assert files_under(tmp_path / "home" / "landing") == []
    assert f"Landed {len(expected)} new file(s)" in captured.out and "referral episodes" in captured.out
    # the demo makes a local key when none is set, and says so
    assert "created a local key" in captured.err and (tmp_path / "home" / "pseudonymisation.key").exists()
    truth = json.loads((SAMPLE_FEEDS_DIR / "truth.json").read_text(encoding="utf-8"))
    faults = len({(f["file"], f["row_number"]) for f in truth["injected_faults"]["rows"]})
    assert re.search(rf"rows: \d+ received = \d+ loaded \+ {faults} rejected", captured.out)
    assert "dbt build passed" in captured.out and " 0 failed" in captured.out  # the warehouse is built
    # a second demo lands and loads nothing new
    assert main(["demo"]) == 0
    again = capsys.readouterr().out
    assert "Landed 0 new file(s)" in again and "0 file(s) processed" in again
    assert files_under(tmp_path / "home" / "landing") == []  # nothing already archived is landed again


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_exits_0_with_quarantined_rows_and_1_without_a_key(sprx_home: Path, monkeypatch, capsys) -> None:
    landing = sprx_home / "landing" / "ambulance"
    landing.mkdir(parents=True)
    (landing / "ambulance_RX7_20261116.csv").write_text(
        "incident_id,call_received,nhs_number,date_of_birth,sex,postcode,arp_category,call_outcome,conveyed_to,"
        "chief_complaint,communal_address,frequent_caller_flag\n"
        "A1,2026-11-02 10:05:59,9994158686,2011-06-15,M,M16 7YE,C4,hear_and_treat,,Pain,N,N\n"
        "A2,2026-11-02 11:05:59,9994158686,2011-06-15,M,M16 7YE,C9,hear_and_treat,,Pain,N,N\n")
    assert main(["ingest", "--source", "ambulance"]) == 0
    out = capsys.readouterr().out
    assert "rows: 2 received = 1 loaded + 1 rejected" in out and "arp" in out.lower()
    monkeypatch.delenv("SPRX_PSEUDONYMISATION_KEY")
    assert main(["ingest"]) == 1
    assert "SPRX_PSEUDONYMISATION_KEY is not set" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")
def test_each_run_publishes_a_report_artifact_without_identifiers(sprx_home: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.ingest import ingest

    fixtures = Path(__file__).parent / "fixtures" / "feeds"
    shutil.copytree(fixtures / "ambulance", sprx_home / "landing" / "ambulance")
    ingest()

    files = Artifact.get("ingest-files").data
    assert "ambulance/ambulance_RX7_20261116.csv" in files and "loaded" in files
    report = files + Artifact.get("ingest-rejections").data
    for identifier in ("9994068121", "M31 1XR", "1949-04-02", "Fall at home"):
        assert identifier not in report
