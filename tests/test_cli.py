"""The `sprx` command line: help, settings, and the demo on the embedded sample feeds."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sprx.cli import _deliveries_in_folder, land_sample, main
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


def test_demo_lands_ingests_and_summarises_the_sample_feeds(demo_run, monkeypatch, capsys) -> None:
    # `sprx demo` on a fresh home with no key set, run once per session (tests/conftest.py `demo_run`): its
    # home is the sample warehouse the other tests read, so this test only adds a run that loads nothing
    home, out, err = demo_run.home, demo_run.out, demo_run.err
    assert demo_run.code == 0, err[-3000:]

    def files_under(folder: Path) -> list[Path]:
        return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())

    expected = sorted(p.relative_to(SAMPLE_FEEDS_DIR) for p in SAMPLE_FEEDS_DIR.rglob("*")
                      if p.is_file() and p.name not in ("truth.json", "README.md"))
    # every sample file loaded, so every one moved from landing/ to archive/
    assert files_under(home / "archive") == expected
    assert files_under(home / "landing") == []
    deliveries = len(_deliveries_in_folder(SAMPLE_FEEDS_DIR))  # a SystmOne folder is one delivery
    assert f"Landed {deliveries} new deliveries" in out and "referral episodes" in out
    assert f"Ingest: {deliveries} new deliveries" in out  # the same count, the same word
    # the demo makes a local key when none is set, and says so
    assert "created a local key" in err and (home / "pseudonymisation.key").exists()
    truth = json.loads((SAMPLE_FEEDS_DIR / "truth.json").read_text(encoding="utf-8"))
    faults = len({(f["file"], f["row_number"]) for f in truth["injected_faults"]["rows"]})
    assert re.search(rf"rows: \d+ received = \d+ loaded \+ {faults} quarantined", out)
    assert "Build: dbt build passed" in out and " 0 failed" in out  # the warehouse is built
    # ... and published, and the summary says where
    published = home / "published" / "analytics.duckdb"
    assert published.exists() and f"analysts open {published}" in out
    assert "Published " in out
    # Prefect's own log lines went to the log file, not the console
    assert "Beginning flow run" not in err + out
    assert (home / "logs" / "sprx.log").exists()  # (what reaches it: tests/test_run.py)
    assert len((out + err).splitlines()) < 60
    # sprx run after the demo finds the demo's key file, and names it
    monkeypatch.setenv("SPRX_HOME", str(home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", "")  # recorded, so that the key the run sets is taken back
    monkeypatch.delenv("SPRX_PSEUDONYMISATION_KEY")
    assert main(["run", "--if-loaded"]) == 0
    again = capsys.readouterr()
    assert f"using the demo's key file {home / 'pseudonymisation.key'}" in again.err
    assert "Nothing new was loaded" in again.out
    # landing the sample again lands nothing: what is archived is not landed twice
    assert land_sample(home / "landing", home / "archive") == 0
    assert files_under(home / "landing") == []


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
    assert "rows: 2 received = 1 loaded + 1 quarantined" in out and "arp" in out.lower()
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


@pytest.mark.usefixtures("prefect_harness")
def test_the_ingest_run_shows_a_task_per_source_family_it_loaded(sprx_home: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    from flows.ingest import ingest

    fixtures = Path(__file__).parent / "fixtures" / "feeds"
    for family in ("ambulance", "vcse"):
        shutil.copytree(fixtures / family, sprx_home / "landing" / family)
    run = ingest(return_state=True).state_details.flow_run_id

    async def runs():
        async with get_client() as client:
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run])))
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run])))
            return tasks, children

    tasks, children = asyncio.run(runs())
    families = sorted(task.name.rsplit("-", 1)[0] for task in tasks if task.name.startswith("ingest-"))  # -<suffix>
    assert families == ["ingest-ambulance", "ingest-vcse"]  # no GP file, no GP task
    assert all(task.state.is_completed() for task in tasks)
    assert children == []  # tasks, not subflows: each subflow cost about a second of its own


@pytest.mark.usefixtures("prefect_harness")
def test_run_on_an_empty_home_says_there_is_nothing_to_publish(sprx_home: Path, capsys) -> None:
    # no landing folder: one line saying where feeds are expected, no traceback
    assert main(["run"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"there is no landing folder at {sprx_home / 'landing'}" in err
    # an empty landing folder: nothing to build, and nothing published (no empty tables)
    (sprx_home / "landing").mkdir(parents=True)
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "Nothing to publish: no file has loaded into this warehouse yet" in out
    assert not (sprx_home / "published").exists()
    assert main(["publish"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no build has been recorded" in err


@pytest.mark.parametrize(("key", "message"), [
    (None, "SPRX_PSEUDONYMISATION_KEY is not set: export a secret of at least 32 characters"),
    ("too-short", "SPRX_PSEUDONYMISATION_KEY is too short"),
])
@pytest.mark.parametrize("command", ["run", "ingest", "serve"])
def test_a_missing_or_short_key_is_one_line_before_anything_starts(sprx_home: Path, monkeypatch, capsys, key,
                                                                    message, command) -> None:
    if key is None:
        monkeypatch.delenv("SPRX_PSEUDONYMISATION_KEY")
    else:
        monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", key)
    (sprx_home / "landing").mkdir(parents=True)
    assert main([command]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert key is None or key not in err
    assert not (sprx_home / "warehouse.duckdb").exists()


def test_serve_help_names_the_schedule_settings_and_their_time_zone(capsys) -> None:
    assert main(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in ("SPRX_SCHEDULE_TIMEZONE", "SPRX_SCHEDULE_GP", "SPRX_SCHEDULE_AMBULANCE", "SPRX_SCHEDULE_VCSE",
                 "PREFECT_API_URL", "--verbose"):
        assert name in text, name


@pytest.mark.parametrize(("environment", "expected"), [
    ({}, 300),  # sprx's default: Prefect's own 20 s fails on a loaded machine
    ({"SPRX_PREFECT_STARTUP_TIMEOUT_SECONDS": "45"}, 45),
    ({"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}, 120),  # set for Prefect directly: kept
    ({"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "SPRX_PREFECT_STARTUP_TIMEOUT_SECONDS": "90"}, 90),
])
def test_commands_give_prefects_temporary_server_a_startup_timeout(environment, expected) -> None:
    code = ("from sprx.output import prepare_prefect; from sprx.settings import get_settings; "
            "prepare_prefect(get_settings()); from prefect.settings import get_current_settings; "
            "print(get_current_settings().server.ephemeral.startup_timeout_seconds)")
    base = {name: value for name, value in os.environ.items()
            if name not in ("SPRX_PREFECT_STARTUP_TIMEOUT_SECONDS", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**base, **environment})
    assert int(result.stdout.strip()) == expected
