"""`sprx status`: per source and practice, what arrived, loaded, waits and is late; a snapshot while a run holds the warehouse."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import flows.ingest
from flows.ingest import _delivery as arrived
from flows.ingest import ingest
from flows.warehouse import connect, record_stage
from sprx.cli import main
from sprx.settings import SAMPLE_FEEDS_DIR
from sprx.status import STATUS_VERSION, read_status
from sprx.synthetic.identity import FEMALE_NAMES, MALE_NAMES, SURNAMES
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.usefixtures("prefect_harness")
# The reference time lateness is judged against in these tests (UTC).
NOW = dt.datetime(2026, 11, 20, 12, 0)
# When each slice of the sample feeds "arrived": EMIS P91004 has been silent for 19 days.
ARRIVALS = {
    "gp/emis/emis_P91004_*": dt.datetime(2026, 11, 1, 2, 0),
    "gp/systmone/systmone_P91006_20240*": dt.datetime(2026, 11, 19, 2, 0),
    "ambulance/ambulance_RX7_202501*": dt.datetime(2026, 11, 16, 6, 0),
    "vcse/trafford-walking-for-health/january-2025-register.csv": dt.datetime(2026, 11, 2, 9, 0),
}
HELD = "gp/emis/emis_P91004_20261107.csv"
SECOND_RUN = "gp/systmone/systmone_P91006_20241001.zip"  # the delivery after the first run's last
FEED_KEYS = {
    "source", "organisation", "last_received_at", "last_received_file", "last_received_status", "last_loaded_at",
    "last_loaded_file", "latest_extract_date", "data_received_at", "last_run", "held_files", "expected_every_days",
    "late_after_days", "age_days", "late",
}


def stamp(path: Path, moment: dt.datetime) -> None:
    seconds = moment.replace(tzinfo=dt.UTC).timestamp()
    for member in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(member, (seconds, seconds))


@pytest.fixture(scope="module")
def home(tmp_path_factory, prefect_harness) -> Path:
    """Two ingest runs: a slice of the sample feeds (with a held EMIS export and a misnamed file), then one
    SystmOne extract."""
    home = tmp_path_factory.mktemp("status") / "home"
    landing = home / "landing"
    for pattern, moment in ARRIVALS.items():
        for path in SAMPLE_FEEDS_DIR.glob(pattern):
            target = landing / path.relative_to(SAMPLE_FEEDS_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
            stamp(target, moment)
    newest = (landing / "gp/emis/emis_P91004_20261031.csv").read_text(encoding="utf-8").splitlines()
    (landing / HELD).write_text("\n".join(newest[:60]) + "\n", encoding="utf-8")  # truncated: held
    stamp(landing / HELD, dt.datetime(2026, 11, 19, 2, 0))
    (landing / "ambulance/incidents.csv").write_text("incident_id\n1\n")  # no trust in the name: rejected
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPRX_HOME", str(home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", TEST_KEY)
    # the ingest takes the moment it finds a file as its time received; here, each file "arrived" when stamped
    monkeypatch.setattr(flows.ingest, "_delivery", lambda landing, path, source, received_at=None: arrived(
        landing, path, source, dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)))
    try:
        assert ingest().by_status()["held"] == 1
        shutil.copy2(SAMPLE_FEEDS_DIR / SECOND_RUN, landing / SECOND_RUN)
        stamp(landing / SECOND_RUN, dt.datetime(2026, 11, 20, 2, 0))
        assert ingest().by_status() == {"loaded": 1}
    finally:
        monkeypatch.undo()
    return home


@pytest.fixture
def in_home(home: Path, monkeypatch) -> Path:
    monkeypatch.setenv("SPRX_HOME", str(home))
    return home


def feeds(status: dict) -> dict[tuple[str, str | None], dict]:
    return {(feed["source"], feed["organisation"]): feed for feed in status["feeds"]}


def test_each_practice_shows_last_received_last_loaded_and_the_last_runs_rows(home: Path) -> None:
    status = read_status(home, now=NOW)
    assert status["origin"] == "warehouse" and not status["run_in_progress"]
    by_feed = feeds(status)
    assert set(by_feed) == {("emis", "P91004"), ("systmone", "P91006"), ("ambulance", "RX7"),
                            ("ambulance", None), ("vcse", "trafford-walking-for-health")}
    emis = by_feed[("emis", "P91004")]
    assert (emis["last_received_file"], emis["last_received_status"]) == (HELD, "held")
    assert emis["last_received_at"] == "2026-11-19T02:00:00Z"
    assert emis["last_loaded_file"] == "gp/emis/emis_P91004_20261031.csv"
    assert emis["latest_extract_date"] == "2026-10-31" and emis["data_received_at"] == "2026-11-01T02:00:00Z"
    assert emis["held_files"] == [HELD]
    # the last run took one SystmOne extract: its rows count for P91006, and nothing for the others
    systmone = by_feed[("systmone", "P91006")]
    assert systmone["last_received_file"] == SECOND_RUN and systmone["last_loaded_file"] == SECOND_RUN
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        loaded, rejected = connection.execute("select rows_loaded, rows_rejected from audit.file_loads where path = ?",
                                              [SECOND_RUN]).fetchone()
    assert systmone["last_run"] == {"files": 1, "rows_loaded": loaded, "rows_rejected": rejected, "files_rejected": 0}
    assert loaded > 0
    assert emis["last_run"] == {"files": 0, "rows_loaded": 0, "rows_rejected": 0, "files_rejected": 0}
    assert status["runs"]["ingest"]["status"] == "completed"
    assert status["runs"]["ingest"]["detail"]["files_loaded"] == 1
    assert status["runs"]["build"] is None and status["runs"]["publish"] is None


def test_a_practice_silent_past_its_cadence_is_late(home: Path) -> None:
    by_feed = feeds(read_status(home, now=NOW))
    emis, systmone = by_feed[("emis", "P91004")], by_feed[("systmone", "P91006")]
    assert (emis["late"], emis["age_days"], emis["late_after_days"]) == (True, 19.4, 3)  # a held export does not count
    assert (systmone["late"], systmone["age_days"]) == (False, 0.4)
    assert by_feed[("ambulance", "RX7")]["late"] is False  # weekly: 4 days is on time
    assert by_feed[("ambulance", None)]["late"] is None  # no organisation to judge
    # the same warehouse a week earlier: nothing was late yet
    earlier = read_status(home, now=dt.datetime(2026, 11, 3, 12, 0))
    assert earlier["summary"]["late"] == 0


def test_the_table_has_one_line_per_feed_and_check_exits_1_when_something_is_late_or_held(in_home: Path,
                                                                                          capsys) -> None:
    assert main(["status", "--now", "2026-11-20T12:00"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.search(r"^emis\s+P91004\s.*emis_P91004_20261107\.csv \(held\).*LATE \(> 3 d\)$", out, re.MULTILINE)
    assert re.search(r"^systmone\s+P91006\s.*\bok$", out, re.MULTILINE)
    assert any(line.startswith("ambulance  (unidentified)") for line in lines)
    assert f"held: {HELD} (release with: sprx ingest --accept {HELD})" in out
    assert "last build: never" in out and "1 late, 1 held file(s)" in out
    assert main(["status", "--check", "--now", "2026-11-20T12:00"]) == 1
    capsys.readouterr()


def test_json_has_the_documented_keys(in_home: Path, capsys) -> None:
    assert main(["status", "--json", "--now", "2026-11-20T12:00Z"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert set(status) == {"status_version", "now", "origin", "taken_at", "run_in_progress", "running", "runs",
                           "feeds", "rejected_in_landing", "ignored_in_landing", "summary"}
    assert status["status_version"] == STATUS_VERSION and status["now"] == "2026-11-20T12:00:00Z"
    assert set(status["runs"]) == {"ingest", "build", "publish"}
    assert set(status["runs"]["ingest"]) == {"run_id", "status", "started_at", "finished_at", "detail"}
    assert all(set(feed) == FEED_KEYS for feed in status["feeds"])
    assert set(status["feeds"][0]["last_run"]) == {"files", "rows_loaded", "rows_rejected", "files_rejected"}
    assert status["summary"] == {"feeds": 5, "late": 1, "held_files": 1, "rejected_files": 1, "ignored_files": 0,
                                 "failed_stages": []}
    assert status["rejected_in_landing"] == ["ambulance/incidents.csv"] and status["running"] is None
    # every key is listed in `sprx status --help`
    assert main(["status", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for key in [*status, *status["summary"], *FEED_KEYS]:
        assert key in help_text, key


def test_a_recorded_build_and_publish_show_as_the_last_ones(home: Path, tmp_path: Path) -> None:
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    connection = connect(copy / "warehouse.duckdb")
    try:
        record_stage(connection, "run-1", "build", dt.datetime(2026, 11, 20, 3, 0), None, "running")
        record_stage(connection, "run-1", "build", dt.datetime(2026, 11, 20, 3, 0), dt.datetime(2026, 11, 20, 3, 9),
                     "completed", {"models": 41, "tests_failed": 0})
        record_stage(connection, "run-1", "publish", dt.datetime(2026, 11, 20, 3, 9),
                     dt.datetime(2026, 11, 20, 3, 10), "failed", {"tables": 0})
        with pytest.raises(TypeError):  # only counts and flags: nothing that could carry an identifier
            record_stage(connection, "run-1", "publish", NOW, NOW, "failed", {"file": "emis_P91004_20261120.csv"})
    finally:
        connection.close()
    status = read_status(copy, now=NOW)
    assert status["runs"]["build"] == {"run_id": "run-1", "status": "completed", "started_at": "2026-11-20T03:00:00Z",
                                       "finished_at": "2026-11-20T03:09:00Z",
                                       "detail": {"models": 41, "tests_failed": 0}}
    assert status["runs"]["publish"]["status"] == "failed" and status["summary"]["failed_stages"] == ["publish"]


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    connection = duckdb.connect(sys.argv[1])  # read-write, as a run holds it
    print("holding", flush=True)
    time.sleep(60)
""")


def test_while_a_run_holds_the_warehouse_status_shows_the_snapshot(home: Path, tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    monkeypatch.setenv("SPRX_HOME", str(copy))
    snapshot = json.loads((copy / "status.json").read_text(encoding="utf-8"))  # written by the last ingest
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(copy / "warehouse.duckdb")],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "holding"
        assert main(["status", "--now", "2026-11-20T12:00"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"A run is in progress (the warehouse is busy): showing the snapshot taken at "
                              f"{snapshot['taken_at'][:16].replace('T', ' ')} UTC.")
        assert re.search(r"^emis\s+P91004\s.*LATE", out, re.MULTILINE)  # judged against now, not the snapshot
        assert main(["status", "--json", "--now", "2026-11-20T12:00"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert (status["origin"], status["run_in_progress"]) == ("snapshot", True)
        assert feeds(status)[("emis", "P91004")]["late"] is True
        (copy / "status.json").unlink()
        assert main(["status"]) == 1
        assert "a run is in progress" in capsys.readouterr().err
    finally:
        process.kill()
        process.wait(timeout=30)


def test_a_fresh_home_says_nothing_is_ingested_and_json_is_json(sprx_home: Path, capsys) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "nothing ingested yet" in out
    assert main(["status", "--json", "--check"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["origin"] == "none" and status["feeds"] == [] and status["runs"] == dict.fromkeys(
        ("ingest", "build", "publish"))
    assert not sprx_home.exists()  # status never creates anything


def test_stray_files_in_landing_are_listed_as_ignored(home: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    monkeypatch.setenv("SPRX_HOME", str(copy))
    landing = copy / "landing"
    for stray in ("README.md", "truth.json", "vcse/loose-sheet.csv", "gp/notes/emis_P91004_20261101.csv"):
        (landing / stray).parent.mkdir(parents=True, exist_ok=True)
        (landing / stray).write_text("x\n")
    (landing / "gp/emis/.emis_P91004_20261120.csv.part").write_text("still arriving\n")  # a dot file: skipped
    assert main(["status", "--json", "--now", "2026-11-20T12:00"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["ignored_in_landing"] == ["README.md", "gp/notes/emis_P91004_20261101.csv", "truth.json",
                                            "vcse/loose-sheet.csv"]
    assert status["summary"]["ignored_files"] == 4
    main(["status", "--now", "2026-11-20T12:00"])
    assert "ignored: vcse/loose-sheet.csv (no reader takes it" in capsys.readouterr().out


def test_check_exits_1_for_a_rejected_file_still_in_landing(home: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    monkeypatch.setenv("SPRX_HOME", str(copy))
    connection = connect(copy / "warehouse.duckdb")  # nothing late, nothing held: only the rejected file is left
    try:
        connection.execute("update audit.file_loads set status = 'superseded' where status = 'held'")
    finally:
        connection.close()
    assert main(["status", "--check", "--now", "2026-11-02T12:00"]) == 1
    assert "rejected, still in landing/: ambulance/incidents.csv" in capsys.readouterr().out
    (copy / "landing/ambulance/incidents.csv").unlink()
    assert main(["status", "--check", "--now", "2026-11-02T12:00"]) == 0


def test_a_killed_stage_shows_abandoned_and_the_next_stage_records_it(home: Path, tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    from flows.lock import warehouse_lock

    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    monkeypatch.setenv("SPRX_HOME", str(copy))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", TEST_KEY)
    connection = connect(copy / "warehouse.duckdb")  # what a build killed with -9 leaves behind
    try:
        record_stage(connection, "killed-run", "build", dt.datetime(2026, 11, 20, 3, 0), None, "running")
    finally:
        connection.close()
    # while a process holds the lock, the stage is shown running, and status names what holds it
    with warehouse_lock(copy, "run > build", 0):
        assert main(["status", "--json", "--now", "2026-11-20T12:00"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["runs"]["build"]["status"] == "running"
        assert f"pid {os.getpid()}: run > build" in status["running"]["holder"]
    # nobody holds it: the build's process died
    assert main(["status", "--check", "--now", "2026-11-02T12:00"]) == 1
    out = capsys.readouterr().out
    assert "last build: abandoned" in out and "last run failed or abandoned: build" in out
    ingest()  # the next stage closes it for good
    with duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute("select status, finished_at is not null from audit.pipeline_runs "
                                  "where run_id = 'killed-run'").fetchall()
    assert rows == [("abandoned", True)]


def test_no_identifier_in_the_status_or_its_snapshot(in_home: Path, capsys) -> None:
    assert main(["status", "--now", "2026-11-20T12:00"]) == 0
    assert main(["status", "--json", "--now", "2026-11-20T12:00"]) == 0
    text = capsys.readouterr().out + (in_home / "status.json").read_text(encoding="utf-8")
    assert not re.search(r"\b999\s?\d{3}\s?\d{4}\b", text)  # NHS numbers
    assert not re.search(r"\b(M|WA)\d{1,2}\s?\d[A-Z]{2}\b", text, re.IGNORECASE)  # postcodes
    names = {name.upper() for name in FEMALE_NAMES + MALE_NAMES + SURNAMES if len(name) >= 4}
    assert not set(re.findall(r"[A-Za-z']+", text.upper())) & names
