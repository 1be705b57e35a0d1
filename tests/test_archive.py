"""The archive and `sprx ingest --reprocess`: nothing taken is lost, and the raw zone can be rebuilt from it."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import stat
from pathlib import Path

import duckdb
import pytest

import flows.ingest
import flows.load
from flows.ingest import BACKUP_NAME, REBUILD_NAME, _delivery, ingest
from flows.load import Loader
from flows.warehouse import DDL, RAW_TABLES, connect
from sprx.cli import main
from sprx.settings import SAMPLE_FEEDS_DIR
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.usefixtures("prefect_harness")
FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
# A small slice of the sample feeds: two EMIS snapshots, SystmOne folders and zips, overlapping ambulance
# weeks, and VCSE sheets with a corrected re-upload.
SLICE = (
    "gp/emis/emis_P91004_*",
    "gp/systmone/systmone_P91006_2024*",
    "ambulance/ambulance_RX7_202501*",
    "vcse/trafford-walking-for-health/january-2025-*",
    "vcse/trafford-walking-for-health/*-2024-*",
)
# When the hand-made files "arrived", in UTC.
RECEIVED = dt.datetime(2026, 11, 20, 2, 30)
VCSE_HEADER = "Date,Group,First Name,Surname,DOB,Attended"


def stamp(path: Path, moment: dt.datetime) -> None:
    """Set a delivery's modification time (the time it was received) to a UTC moment."""
    seconds = moment.replace(tzinfo=dt.UTC).timestamp()
    os.utime(path, (seconds, seconds))


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def audit(home: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def full_state(warehouse: Path) -> dict[str, list[tuple]]:
    """Every raw and audit table, with file ids replaced by the file they stand for (path and sha256);
    without loaded_at and run_id, the two columns that say when and by which run a file was taken."""
    state = {}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        files = {file_id: (path, sha256) for file_id, path, sha256 in
                 connection.execute("select file_id, path, sha256 from audit.file_loads").fetchall()}
        for table in (*RAW_TABLES, "audit.file_loads", "audit.rejected_rows"):
            columns = [row[0] for row in connection.execute(f"describe {table}").fetchall()
                       if row[0] not in ("loaded_at", "run_id")]
            position = columns.index("file_id")
            rows = connection.execute(f"select {', '.join(columns)} from {table}").fetchall()
            state[table] = sorted((tuple(files[v] if i == position else v for i, v in enumerate(row))
                                   for row in rows), key=repr)
    return state


# --- archiving after a load -------------------------------------------------------------------


def test_loaded_files_move_to_archive_read_only_keeping_path_and_time_received(sprx_home: Path) -> None:
    landing = sprx_home / "landing"
    shutil.copytree(FIXTURES, landing, ignore=shutil.ignore_patterns("README.md"))
    expected = files_under(landing)
    for path in landing.rglob("*"):
        stamp(path, RECEIVED)
    summary = ingest()
    assert summary.archived == 4 and summary.by_status() == {"loaded": 4}
    archive = sprx_home / "archive"
    assert files_under(archive) == expected and files_under(landing) == set()
    for path in archive.rglob("*"):  # the SystmOne folder's files included: the owner's alone, read-only
        assert stat.S_IMODE(path.stat().st_mode) == (0o400 if path.is_file() else 0o700), path
    rows = audit(sprx_home, "select path, archived_path, received_at from audit.file_loads")
    assert {(path, archived) for path, archived, _ in rows} == {(p, p) for p, _, _ in rows}
    received = {at for _, _, at in rows}
    assert len(received) == 1 and RECEIVED not in received  # when the run found them, not the senders' stamps
    assert dt.datetime.fromtimestamp((archive / "gp/systmone/systmone_P91006_20261120").stat().st_mtime,
                                     dt.UTC).replace(tzinfo=None) in received


def test_a_resent_sheet_with_other_bytes_is_kept_beside_the_first(sprx_home: Path) -> None:
    sheet = sprx_home / "landing/vcse/walks/june.csv"
    sheet.parent.mkdir(parents=True)
    sheet.write_text(f"{VCSE_HEADER}\n03/06/2026,Walk,Zoe,Hughes,17/08/1972,Y\n04/06/2026,Walk,Zoe,Hughes,17/08/1972,Y\n")
    stamp(sheet, RECEIVED)
    ingest()
    first = (sprx_home / "archive/vcse/walks/june.csv").read_bytes()
    corrected = f"{VCSE_HEADER}\n03/06/2026,Walk,Zoe,Hughes,17/08/1972,N\n"
    sheet.write_text(corrected)  # the service re-sends the sheet, corrected, under the same name
    stamp(sheet, RECEIVED + dt.timedelta(days=2))
    assert ingest().by_status() == {"loaded": 1}
    later = f"versions/{hashlib.sha256(corrected.encode()).hexdigest()[:12]}/vcse/walks/june.csv"
    assert files_under(sprx_home / "archive") == {"vcse/walks/june.csv", later}
    assert (sprx_home / "archive/vcse/walks/june.csv").read_bytes() == first  # the first is never overwritten
    assert (sprx_home / "archive" / later).read_text() == corrected
    before = full_state(sprx_home / "warehouse.duckdb")
    # a reprocess reads both under their landing path and time received, and comes to the same answer
    assert main(["ingest", "--reprocess"]) == 0
    assert full_state(sprx_home / "warehouse.duckdb") == before
    rows = sorted(audit(sprx_home, "select received_at, path, archived_path from audit.file_loads"))
    assert [(path, archived) for _, path, archived in rows] == [
        ("vcse/walks/june.csv", "vcse/walks/june.csv"), ("vcse/walks/june.csv", later)]
    assert rows[0][0] < rows[1][0]  # each kept the time it was first found, so the correction still wins
    assert audit(sprx_home, "select attended from raw.vcse_attendances order by session_date") == [(False,), (True,)]


def test_held_and_rejected_files_stay_in_landing_and_are_not_read_again(sprx_home: Path) -> None:
    landing = sprx_home / "landing"
    emis = (landing / "gp/emis")
    emis.mkdir(parents=True)
    header = ('"Organisation Code","EMIS Number","NHS Number","Family Name","Calling Name","Date of Birth",'
              '"Gender","Postcode","Date","Code","Code Term","Type of Consultation","Appointment Status"')
    patients = [f'"P91004","{10000 + i}","","Smith","Jo","01-Jan-1980","Female","M16 7YE","","","","",""'
                for i in range(10)]
    (emis / "emis_P91004_20261119.csv").write_text("\n".join([header, *patients]) + "\n")
    ingest()
    (emis / "emis_P91004_20261120.csv").write_text("\n".join([header, *patients[:5]]) + "\n")  # truncated
    (emis / "export_P91004.csv").write_text("\n".join([header, *patients[1:]]) + "\n")  # a name outside the pattern
    assert ingest().by_status() == {"held": 1, "rejected": 1}
    assert files_under(landing) == {"gp/emis/emis_P91004_20261120.csv", "gp/emis/export_P91004.csv"}
    assert files_under(sprx_home / "archive") == {"gp/emis/emis_P91004_20261119.csv"}
    again = ingest()
    assert again.files == [] and again.skipped == 2  # unchanged: not read again, not moved
    assert files_under(landing) == {"gp/emis/emis_P91004_20261120.csv", "gp/emis/export_P91004.csv"}
    # a rejected file fixed by its sender (renamed) is read again
    (emis / "export_P91004.csv").rename(emis / "emis_P91004_20261118.csv")
    assert ingest().by_status() == {"superseded": 1}  # older than what is loaded: kept, not used
    assert files_under(landing) == {"gp/emis/emis_P91004_20261120.csv"}
    assert "gp/emis/emis_P91004_20261118.csv" in files_under(sprx_home / "archive")


def test_a_crash_between_load_and_archive_is_finished_by_the_next_run(sprx_home: Path) -> None:
    landing = sprx_home / "landing"
    shutil.copytree(FIXTURES / "ambulance", landing / "ambulance")
    shutil.copytree(FIXTURES / "gp", landing / "gp")
    # the loads committed, then the process died before moving anything
    connection = connect(sprx_home / "warehouse.duckdb")
    try:
        loader = Loader(connection, TEST_KEY.encode())
        for relative, source in (("ambulance/ambulance_RX7_20261116.csv", "ambulance"),
                                 ("gp/emis/emis_P91004_20261120.csv", "emis")):
            assert loader.load(_delivery(landing, landing / relative, source)).status == "loaded"
    finally:
        connection.close()
    # ... and for the EMIS file, after copying it into archive/ but before removing it from landing/
    (sprx_home / "archive/gp/emis").mkdir(parents=True)
    shutil.copy2(landing / "gp/emis/emis_P91004_20261120.csv", sprx_home / "archive/gp/emis/emis_P91004_20261120.csv")
    before = full_state(sprx_home / "warehouse.duckdb")["raw.emis_patients"]
    summary = ingest(sources=("emis", "ambulance"))
    assert summary.files == [] and summary.archived == 2  # nothing loaded twice; both now archived
    assert files_under(landing / "ambulance") == set() and files_under(landing / "gp/emis") == set()
    assert files_under(sprx_home / "archive") == {"ambulance/ambulance_RX7_20261116.csv",
                                                  "gp/emis/emis_P91004_20261120.csv"}
    assert full_state(sprx_home / "warehouse.duckdb")["raw.emis_patients"] == before
    assert audit(sprx_home, "select count(*) from audit.file_loads where archived_path is null")[0][0] == 0


def test_files_loaded_before_an_error_are_archived_and_the_failed_one_waits(sprx_home: Path, monkeypatch) -> None:
    landing = sprx_home / "landing/gp/emis"  # exports: each its own transaction (not a batch, undone whole)
    landing.mkdir(parents=True)
    exports = sorted(SAMPLE_FEEDS_DIR.joinpath("gp/emis").glob("emis_*_20221101.csv"))[:5]  # loaded in this order
    for path in exports:
        shutil.copy2(path, landing / path.name)
    failing = f"gp/emis/{exports[-1].name}"
    real_load = Loader.load

    def load(self, delivery, **options):
        if delivery.relative == failing:
            raise RuntimeError("the disk is full")
        return real_load(self, delivery, **options)

    monkeypatch.setattr(Loader, "load", load)
    monkeypatch.setattr(flows.ingest, "ARCHIVE_GROUP_FILES", 3)  # one group of three, then one left when it fails
    monkeypatch.setattr(flows.ingest, "load_files", flows.ingest.load_files.with_options(retries=0))
    with pytest.raises(RuntimeError, match="the disk is full"):
        ingest(sources=("emis",))
    assert files_under(landing) == {exports[-1].name}  # the four loaded went to archive/, recorded there
    assert files_under(sprx_home / "archive") == {f"gp/emis/{path.name}" for path in exports[:-1]}
    assert audit(sprx_home, "select count(*) from audit.file_loads where archived_path is not null")[0][0] == 4
    monkeypatch.setattr(Loader, "load", real_load)
    summary = ingest(sources=("emis",))  # the next run loads the one left
    assert [result.relative for result in summary.files] == [failing] and summary.archived == 1


def test_an_error_while_a_batch_is_open_still_records_where_earlier_files_were_archived(
        sprx_home: Path, monkeypatch) -> None:
    landing = sprx_home / "landing/gp"
    (landing / "emis").mkdir(parents=True)
    shutil.copy2(SAMPLE_FEEDS_DIR / "gp/emis/emis_P91004_20221101.csv", landing / "emis")
    shutil.copytree(SAMPLE_FEEDS_DIR / "gp/systmone/systmone_P91003_20221129",
                    landing / "systmone/systmone_P91003_20221129")
    real_join = Loader.join_batch

    def join_batch(self, delivery, after_commit=None):  # the export loaded and waits for its group; then a batch
        real_join(self, delivery, after_commit=after_commit)
        if self.in_batch:
            raise KeyboardInterrupt  # e.g. the run cancelled while the delta is read

    monkeypatch.setattr(Loader, "join_batch", join_batch)
    monkeypatch.setattr(flows.ingest, "load_files", flows.ingest.load_files.with_options(retries=0))
    with pytest.raises(BaseException):  # noqa: B017 - Prefect may wrap the interrupt
        ingest(sources=("emis", "systmone"))
    # the export went to archive/ and its place there is recorded (the statement did not join the batch undone)
    assert files_under(sprx_home / "archive") == {"gp/emis/emis_P91004_20221101.csv"}
    assert audit(sprx_home, "select path, archived_path from audit.file_loads") == [
        ("gp/emis/emis_P91004_20221101.csv", "gp/emis/emis_P91004_20221101.csv")]
    assert (landing / "systmone/systmone_P91003_20221129").is_dir()  # not loaded: waits for the next run


def test_an_existing_warehouse_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    warehouse = tmp_path / "old.duckdb"
    old_ddl = "\n".join(line for line in DDL.splitlines() if not line.startswith("alter table"))
    old_ddl = old_ddl.split("create table if not exists audit.pipeline_runs")[0] + old_ddl.split(
        "primary key (run_id, stage)\n);", 1)[1]
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(old_ddl)
        connection.execute("insert into audit.file_loads values (1, 'emis', 'gp/emis/emis_P91004_20261120.csv', "
                           "'abc', 'P91004', '2026-11-20', '2026-11-20 02:30', '2026-11-20 02:31', 6, 6, 0, "
                           "'loaded', 'ok')")
        assert "run_id" not in {row[0] for row in connection.execute("describe audit.file_loads").fetchall()}
    connect(warehouse).close()
    connection = connect(warehouse)  # twice: the upgrade is safe to repeat
    try:
        columns = [row[0] for row in connection.execute("describe audit.file_loads").fetchall()]
        assert columns[-2:] == ["run_id", "archived_path"]
        assert connection.execute("select path, status, run_id from audit.file_loads").fetchall() == [
            ("gp/emis/emis_P91004_20261120.csv", "loaded", None)]
        assert connection.execute("select count(*) from audit.pipeline_runs").fetchone()[0] == 0
    finally:
        connection.close()


# --- reprocess --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingested_slice(tmp_path_factory, prefect_harness) -> Path:
    """A home that took a slice of the sample feeds in one run, with a duplicate, a held export and a
    rejected file among them (copy it before changing it)."""
    home = tmp_path_factory.mktemp("slice") / "home"
    landing = home / "landing"
    for pattern in SLICE:
        for path in SAMPLE_FEEDS_DIR.glob(pattern):
            target = landing / path.relative_to(SAMPLE_FEEDS_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)
    # the same bytes under a later name; a truncated later EMIS export (held); a file with a bad name
    shutil.copy2(landing / "ambulance/ambulance_RX7_20250107.csv", landing / "ambulance/ambulance_RX7_20250109.csv")
    newest = (landing / "gp/emis/emis_P91004_20261031.csv").read_text(encoding="utf-8").splitlines()
    (landing / "gp/emis/emis_P91004_20261107.csv").write_text("\n".join(newest[:60]) + "\n", encoding="utf-8")
    (landing / "ambulance/ambulance_20250110.csv").write_text("incident_id\n1\n")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPRX_HOME", str(home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", TEST_KEY)
    try:
        summary = ingest()
    finally:
        monkeypatch.undo()
    assert {status: count for status, count in summary.by_status().items()} == {
        "loaded": len(summary.files) - 3, "duplicate": 1, "held": 1, "rejected": 1}
    return home


@pytest.fixture
def slice_home(ingested_slice: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the ingested slice, with SPRX_HOME pointing at it."""
    home = tmp_path / "home"
    shutil.copytree(ingested_slice, home)
    monkeypatch.setenv("SPRX_HOME", str(home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", TEST_KEY)
    return home


def test_systmone_deltas_in_full_batches_are_archived_once_each_batch_commits(ingested_slice: Path, sprx_home: Path,
                                                                              monkeypatch) -> None:
    """With batches of two SystmOne deltas (each full batch commits as the next delta comes), one run takes every
    file, archives each once its batch has committed, and leaves what the default batches left."""
    monkeypatch.setattr(flows.load, "BATCH_MAX_FILES", 2)
    shutil.copytree(ingested_slice / "archive", sprx_home / "landing")
    shutil.copytree(ingested_slice / "landing", sprx_home / "landing", dirs_exist_ok=True)
    summary = ingest()
    assert summary.by_status()["loaded"] == len(summary.files) - 3
    assert files_under(sprx_home / "archive") == files_under(ingested_slice / "archive")
    assert files_under(sprx_home / "landing") == files_under(ingested_slice / "landing")
    state, expected = full_state(sprx_home / "warehouse.duckdb"), full_state(ingested_slice / "warehouse.duckdb")
    # (VCSE rows carry the time their sheet was received, which is this run's)
    compared = [table for table in (*RAW_TABLES, "audit.rejected_rows") if table != "raw.vcse_attendances"]
    assert {table: state[table] for table in compared} == {table: expected[table] for table in compared}
    trail = "select path, status, rows_received, rows_loaded, rows_rejected, message, archived_path from audit.file_loads"
    assert sorted(audit(sprx_home, trail)) == sorted(audit(ingested_slice, trail))


def test_reprocess_rebuilds_the_same_raw_zone_and_audit_trail(slice_home: Path, capsys) -> None:
    warehouse = slice_home / "warehouse.duckdb"
    before = full_state(warehouse)
    assert all(before[table] for table in RAW_TABLES) and before["audit.rejected_rows"]
    archived, waiting = files_under(slice_home / "archive"), files_under(slice_home / "landing")
    with duckdb.connect(str(warehouse)) as connection:  # a dbt-built schema, which the reprocess leaves out
        connection.execute("create schema marts; create table marts.anything as select 1 as x")
    assert main(["ingest", "--reprocess"]) == 0
    out = capsys.readouterr().out
    assert "sprx build --full-refresh" in out and "1 held" in out and "1 rejected" in out
    assert full_state(warehouse) == before
    assert audit(slice_home, "select count(*) from information_schema.schemata where schema_name = 'marts'")[0][0] == 0
    assert (slice_home / BACKUP_NAME).exists() and not (slice_home / REBUILD_NAME).exists()
    # the archive and landing/ are as they were: the held and rejected files still wait
    assert files_under(slice_home / "archive") == archived and files_under(slice_home / "landing") == waiting
    runs = audit(slice_home, "select stage, status, detail from audit.pipeline_runs order by started_at")
    assert [(stage, status) for stage, status, _ in runs] == [("ingest", "completed")] * 2
    assert '"reprocess": true' in runs[-1][2]
    # with the warehouse lost altogether, the archive alone gives the same raw zone
    warehouse.unlink()
    (slice_home / BACKUP_NAME).unlink()
    assert main(["ingest", "--reprocess"]) == 0
    capsys.readouterr()
    after = full_state(warehouse)
    assert {table: after[table] for table in RAW_TABLES} == {table: before[table] for table in RAW_TABLES}


def test_a_failed_reprocess_leaves_the_old_warehouse_as_it_was(slice_home: Path, monkeypatch, capsys) -> None:
    warehouse = slice_home / "warehouse.duckdb"
    before = full_state(warehouse)
    original, calls = Loader.load, []

    def load_then_fail(self, delivery, **options):
        calls.append(delivery.relative)
        if len(calls) == 5:
            raise OSError("disk full")
        return original(self, delivery, **options)

    monkeypatch.setattr(Loader, "load", load_then_fail)
    assert main(["ingest", "--reprocess"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "the warehouse is unchanged" in error and "disk full" in error
    assert full_state(warehouse) == before
    assert not (slice_home / REBUILD_NAME).exists() and not (slice_home / BACKUP_NAME).exists()
    assert audit(slice_home, "select status, detail from audit.pipeline_runs order by started_at desc limit 1")[0][0] \
        == "failed"
