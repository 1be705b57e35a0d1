"""Load semantics that keep the warehouse true: any order, twice, or killed half-way, the result is the same."""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import flows.load

from flows.ingest import SOURCE_FOLDERS, _deliveries_in, _delivery, _old_history, _order
from flows.load import Loader
from flows.warehouse import RAW_TABLES, connect
from sprx.readers import ambulance as ambulance_source
from sprx.readers.frames import FeedFileError
from sprx.settings import SAMPLE_FEEDS_DIR
from tests.helpers import raw_state

KEY = b"order-test-key-0123456789abcdef0123"
# A slice of the sample feeds with every kind of version decision in it.
SLICE = (
    "gp/emis/emis_P91004_*",  # two full-refresh snapshots of one practice
    "gp/systmone/systmone_P91006_*",  # deltas with updates, deletions, folders and zips
    "ambulance/ambulance_RX7_2025*",  # overlapping weeks with revised outcomes
    "vcse/trafford-walking-for-health/*",  # monthly sheets and a corrected re-upload
)


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    for pattern in SLICE:
        for path in SAMPLE_FEEDS_DIR.glob(pattern):
            target = root / path.relative_to(SAMPLE_FEEDS_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target)
            else:
                shutil.copy2(path, target)
    return root


def deliveries(landing: Path):
    found = []
    for source in SOURCE_FOLDERS:
        found.extend(_delivery(landing, path, source) for path in _deliveries_in(landing, source))
    return found


def load_all(warehouse: Path, order: list, *, batched: bool = False) -> None:
    """Load deliveries in this order, each alone or (batched) SystmOne deltas in batches as the ingest does."""
    connection = connect(warehouse)
    try:
        loader = Loader(connection, KEY)
        for delivery in order:
            if batched:
                loader.join_batch(delivery)
            if not loader.already_loaded(delivery):
                loader.load(delivery)
        loader.commit_batch()
    finally:
        connection.close()


def audit_trail(warehouse: Path) -> dict[str, list]:
    """What the audit tables say of each file (file ids given as the file's path)."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return {
            "file_loads": connection.execute(
                "select path, status, rows_received, rows_loaded, rows_rejected, message from audit.file_loads "
                "order by path, sha256").fetchall(),
            "rejected_rows": connection.execute(
                "select f.path, r.path, r.row_number, r.field, r.reason, r.value from audit.rejected_rows r "
                "left join audit.file_loads f using (file_id) order by all").fetchall()}


def systmone_only(trail: dict[str, list]) -> dict[str, list]:
    """The part of an audit trail about SystmOne deltas."""
    return {part: [row for row in rows if row[0] is None or row[0].startswith("gp/systmone/")]
            for part, rows in trail.items()}


def test_any_order_and_twice_give_the_same_warehouse(landing: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    files = deliveries(landing)
    assert len(files) > 40
    in_order = sorted(files, key=_order)
    load_all(tmp_path / "ordered.duckdb", in_order)
    expected = raw_state(tmp_path / "ordered.duckdb")
    assert all(expected[table] for table in RAW_TABLES if table != "raw.emis_events") and expected["raw.emis_events"]
    # newest first: older snapshots, versions and deletions must not win
    load_all(tmp_path / "reversed.duckdb", list(reversed(in_order)))
    assert raw_state(tmp_path / "reversed.duckdb") == expected
    # a shuffle, then everything again in another shuffle (the second pass changes nothing)
    shuffled = in_order[:]
    random.Random(7).shuffle(shuffled)
    load_all(tmp_path / "shuffled.duckdb", shuffled)
    random.Random(8).shuffle(shuffled)
    load_all(tmp_path / "shuffled.duckdb", shuffled)
    assert raw_state(tmp_path / "shuffled.duckdb") == expected
    # SystmOne deltas in batches, in order: as the ingest takes them (each run of deltas between other files is a
    # batch) and all in one batch; the same raw zone and the same account of every file (a deletion of a row an
    # earlier delta of the batch added is not reported as unknown)
    systmone = [delivery for delivery in in_order if delivery.source == "systmone"]
    others = [delivery for delivery in in_order if delivery.source != "systmone"]
    assert len(systmone) > 20
    for name, order in (("batched", in_order), ("one-batch", others + systmone)):
        load_all(tmp_path / f"{name}.duckdb", order, batched=True)
        assert raw_state(tmp_path / f"{name}.duckdb") == expected, name
        assert audit_trail(tmp_path / f"{name}.duckdb") == audit_trail(tmp_path / "ordered.duckdb"), name
    assert any("deletion(s) of rows the warehouse has not seen" in message
               for *_, message in audit_trail(tmp_path / "one-batch.duckdb")["file_loads"])
    # newest first in one batch: an older delta never overrides a newer one, and each delta's account (its
    # deletions of unknown rows among it) is what loading the files one by one in that order gave
    load_all(tmp_path / "batched-reversed.duckdb", others + list(reversed(systmone)), batched=True)
    assert raw_state(tmp_path / "batched-reversed.duckdb") == expected
    assert systmone_only(audit_trail(tmp_path / "batched-reversed.duckdb")) == systmone_only(
        audit_trail(tmp_path / "reversed.duckdb"))
    # ambulance files in one batch, newest first and shuffled: an incident a later week revised keeps its revision
    ambulance = [delivery for delivery in in_order if delivery.source == "ambulance"]
    not_ambulance = [delivery for delivery in in_order if delivery.source != "ambulance"]
    assert len(ambulance) > 20
    for name, order in (("ambulance-reversed", list(reversed(ambulance))),
                        ("ambulance-shuffled", random.Random(10).sample(ambulance, len(ambulance)))):
        load_all(tmp_path / f"{name}.duckdb", not_ambulance + order, batched=True)
        assert raw_state(tmp_path / f"{name}.duckdb") == expected, name
    with monkeypatch.context() as patch:  # many small batches: an incident's versions split across them
        patch.setattr(flows.load, "AMBULANCE_BATCH_MAX_ROWS", 300)
        load_all(tmp_path / "ambulance-small-batches.duckdb", not_ambulance + list(reversed(ambulance)), batched=True)
        assert raw_state(tmp_path / "ambulance-small-batches.duckdb") == expected
    # shuffled, in two batches
    random.Random(9).shuffle(systmone)
    load_all(tmp_path / "batched-shuffled.duckdb", systmone[:len(systmone) // 2] + others
             + systmone[len(systmone) // 2:], batched=True)
    assert raw_state(tmp_path / "batched-shuffled.duckdb") == expected
    # one row per practice and row identifier (the tables keep no key index: warehouse.DROPPED_KEYS)
    for warehouse in tmp_path.glob("*.duckdb"):
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            for table in ("raw.systmone_patients", "raw.systmone_codes", "raw.systmone_appointments"):
                rows, keys = connection.execute(
                    f"select count(*), count(distinct (practice_code, row_identifier)) from {table}").fetchone()
                assert rows == keys > 0, (warehouse.name, table)


def test_a_week_sent_again_corrected_wins_in_a_batch_as_it_does_alone(landing: Path, tmp_path: Path) -> None:
    """Two versions of one week (the same extract date) in one batch: the one loaded later wins, as it does when
    each is loaded alone, and within a file the last row of an incident."""
    week = sorted((d for d in deliveries(landing) if d.source == "ambulance"), key=_order)[0]
    lines = week.path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    incident = cells[header.index("incident_id")]
    cells[header.index("call_outcome")] = "hear_and_treat"
    corrected = tmp_path / "again" / week.relative
    corrected.parent.mkdir(parents=True)
    corrected.write_text("\n".join([*lines[:2], *lines[2:], ",".join(cells)]) + "\n")  # the incident restated
    again = _delivery(tmp_path / "again", corrected, "ambulance")
    load_all(tmp_path / "alone.duckdb", [week, again])
    load_all(tmp_path / "batch.duckdb", [week, again], batched=True)
    assert raw_state(tmp_path / "batch.duckdb") == raw_state(tmp_path / "alone.duckdb")
    with duckdb.connect(str(tmp_path / "batch.duckdb"), read_only=True) as connection:
        assert connection.execute("select call_outcome from raw.ambulance_incidents where incident_id = ?",
                                  [incident]).fetchall() == [("hear_and_treat",)]


@pytest.mark.parametrize("flush_rows", [1, flows.load.BATCH_FLUSH_ROWS], ids=["flushed", "in-memory"])
def test_an_ambulance_file_rejected_inside_a_batch_leaves_the_others_as_if_it_had_not_come(
        landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flush_rows: int) -> None:
    """A week that cannot be read to its end (its reader fails on its third chunk, after a row of its first was
    quarantined and its first chunks staged) is rejected alone: the weeks before and after it in the batch load,
    and none of its rows remain, whether still in memory or already in DuckDB."""
    monkeypatch.setattr(flows.load, "BATCH_FLUSH_ROWS", flush_rows)
    weeks = sorted((d for d in deliveries(landing) if d.source == "ambulance"), key=_order)
    first, second, third = weeks[:3]
    lines = second.path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[lines[0].split(",").index("arp_category")] = "C9"  # not a category: the row is quarantined
    lines[1] = ",".join(cells)
    bad = tmp_path / "bad-landing" / second.relative
    bad.parent.mkdir(parents=True)
    bad.write_text("\n".join(lines) + "\n")
    real_read = ambulance_source.read_ambulance

    def read_ambulance(path, chunk_rows=5):  # small chunks; the bad week fails part way
        for number, chunk in enumerate(real_read(path, chunk_rows)):
            if Path(path) == bad and number == 2:
                raise FeedFileError("row 12 could not be read as one CSV row (it has an unclosed quote)")
            yield chunk

    monkeypatch.setattr(ambulance_source, "read_ambulance", read_ambulance)
    rejected = _delivery(tmp_path / "bad-landing", bad, "ambulance")
    load_all(tmp_path / "alone.duckdb", [first, third], batched=True)
    load_all(tmp_path / "with-bad.duckdb", [first, rejected, third], batched=True)
    assert raw_state(tmp_path / "alone.duckdb")["raw.ambulance_incidents"]
    assert raw_state(tmp_path / "with-bad.duckdb") == raw_state(tmp_path / "alone.duckdb")
    alone, trail = audit_trail(tmp_path / "alone.duckdb"), audit_trail(tmp_path / "with-bad.duckdb")
    assert trail["rejected_rows"] == alone["rejected_rows"]  # the quarantined row went with its file
    assert [row for row in trail["file_loads"] if row not in alone["file_loads"]] == [
        (second.relative, "rejected", 0, 0, 0, "row 12 could not be read as one CSV row (it has an unclosed quote)")]
    load_all(tmp_path / "bad-alone.duckdb", [_delivery(tmp_path / "bad-landing", bad, "ambulance")])
    assert audit_trail(tmp_path / "bad-alone.duckdb")["file_loads"][0][1] == "rejected"


@pytest.mark.parametrize("flush_rows", [1, flows.load.BATCH_FLUSH_ROWS], ids=["flushed", "in-memory"])
def test_a_delta_rejected_inside_a_batch_leaves_the_others_as_if_it_had_not_come(
        landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flush_rows: int) -> None:
    """A file-level problem part way through a delta (a row of its third table names another practice, after a
    row of its first table was quarantined) rejects that file alone: none of its staged or quarantined rows
    remain, whether they were still in memory or already in DuckDB, and the batch's other files load."""
    monkeypatch.setattr(flows.load, "BATCH_FLUSH_ROWS", flush_rows)
    folders = sorted((d for d in deliveries(landing) if d.source == "systmone" and d.path.is_dir()), key=_order)
    first, second, third = folders[:3]
    bad = tmp_path / "bad-landing" / second.relative
    shutil.copytree(second.path, bad)
    appointments = bad / "SRAppointment.csv"
    lines = appointments.read_bytes().split(b"\n")
    practice = second.path.name.split("_")[1].encode()
    kept = next(i for i, line in enumerate(lines) if line.rstrip(b"\r").endswith(b"," + practice + b",0"))
    lines[kept] = lines[kept].replace(b"," + practice + b",", b",Y99999,")
    appointments.write_bytes(b"\n".join(lines))
    patients = bad / "SRPatient.csv"
    lines = patients.read_bytes().split(b"\n")
    nhs_number = lines[0].split(b",").index(b"NHSNumber")
    cells = lines[1].split(b",")
    cells[nhs_number] = b"1234567890"  # fails the Modulus 11 check: the row is quarantined
    lines[1] = b",".join(cells)
    patients.write_bytes(b"\n".join(lines))
    rejected = _delivery(tmp_path / "bad-landing", bad, "systmone")
    load_all(tmp_path / "alone.duckdb", [first, third], batched=True)
    load_all(tmp_path / "with-bad.duckdb", [first, rejected, third], batched=True)
    assert raw_state(tmp_path / "with-bad.duckdb") == raw_state(tmp_path / "alone.duckdb")
    alone, trail = audit_trail(tmp_path / "alone.duckdb"), audit_trail(tmp_path / "with-bad.duckdb")
    assert trail["rejected_rows"] == alone["rejected_rows"]  # none of the rejected file's, nor of a file unrecorded
    patients_only = tmp_path / "patients-only" / second.relative
    shutil.copytree(second.path, patients_only)
    shutil.copy2(patients, patients_only / "SRPatient.csv")
    load_all(tmp_path / "patients-only.duckdb", [_delivery(tmp_path / "patients-only", patients_only, "systmone")])
    assert any("Modulus 11" in row[4] for row in audit_trail(tmp_path / "patients-only.duckdb")["rejected_rows"])
    assert [row for row in trail["file_loads"] if row not in alone["file_loads"]] == [
        (second.relative, "rejected", 0, 0, 0, next(row[-1] for row in trail["file_loads"] if row[1] == "rejected"))]
    assert "Y99999" in next(row[-1] for row in trail["file_loads"] if row[1] == "rejected")


def test_an_older_emis_export_after_a_newer_one_is_superseded(landing: Path, tmp_path: Path) -> None:
    emis = sorted((d for d in deliveries(landing) if d.source == "emis"), key=_order)
    connection = connect(tmp_path / "w.duckdb")
    try:
        loader = Loader(connection, KEY)
        assert loader.load(emis[-1]).status == "loaded"
        held = {table: connection.execute(f"select * from raw.{table} order by all").fetchall()
                for table in ("emis_patients", "emis_events")}
        older = loader.load(emis[0])
        assert older.status == "superseded" and "already loaded" in older.message
        assert older.rows_received == older.rows_loaded + older.rows_rejected
        snapshot = connection.execute("select distinct extract_date from raw.emis_patients").fetchall()
        assert snapshot == [(dt.date(2026, 10, 31),)]
        # the newer snapshot is untouched, patients and events alike
        assert {table: connection.execute(f"select * from raw.{table} order by all").fetchall()
                for table in held} == held
    finally:
        connection.close()


def test_a_newer_emis_export_held_or_rejected_part_way_leaves_the_snapshot_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader deletes the practice's snapshot before it writes the new one's events, chunk by chunk: an
    export held for a drop in patients, or rejected by a row in a late chunk, must undo all of that."""
    import threading

    from sprx.readers import emis as emis_source

    original = emis_source.read_emis
    monkeypatch.setattr(emis_source, "read_emis", lambda path: original(path, chunk_rows=500))
    monkeypatch.setattr(flows.load, "EMIS_APPEND_ROWS", 1000)  # events written several times per export
    source = SAMPLE_FEEDS_DIR / "gp/emis/emis_P91004_20251031.csv"
    folder = tmp_path / "landing" / "gp" / "emis"
    folder.mkdir(parents=True)
    shutil.copy2(source, folder / source.name)
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header = next(i for i, line in enumerate(lines) if "Organisation Code" in line)
    # held: a later export listing about a tenth of the patients
    (folder / "emis_P91004_20261031.csv").write_text("".join(lines[:header + 1 + (len(lines) - header) // 10]),
                                                     encoding="utf-8")
    # rejected: a later export whose row in its sixth chunk names another practice
    late = next(i for i in range(header + 2500, len(lines)) if "P91004" in lines[i])
    lines[late] = lines[late].replace("P91004", "P91007", 1)
    (folder / "emis_P91004_20261101.csv").write_text("".join(lines), encoding="utf-8")

    connection = connect(tmp_path / "w.duckdb")
    try:
        loader = Loader(connection, KEY)
        assert loader.load(_delivery(tmp_path / "landing", folder / source.name, "emis")).status == "loaded"
        # patients whose rows span chunks are still one row each (raw.emis_patients has no key to refuse a second)
        assert connection.execute("select count(*) = count(distinct emis_number) and count(*) > 100 "
                                  "from raw.emis_patients").fetchone()[0]

        def state():
            return {table: connection.execute(f"select * from {table} order by all").fetchall()
                    for table in ("raw.emis_patients", "raw.emis_events", "audit.rejected_rows")}

        before = state()
        assert len(before["raw.emis_events"]) > 2 * 1000  # more than one append's worth
        held = loader.load(_delivery(tmp_path / "landing", folder / "emis_P91004_20261031.csv", "emis"))
        assert held.status == "held" and "Nothing changed" in held.message
        assert state() == before
        rejected = loader.load(_delivery(tmp_path / "landing", folder / "emis_P91004_20261101.csv", "emis"))
        assert rejected.status == "rejected" and "P91007" in rejected.message
        assert state() == before
        # values slid into the wrong column can put an identifier where the practice code goes: the file is
        # rejected without quoting it (the message is kept in audit.file_loads)
        lines[late] = lines[late].replace("P91007", "9434765919", 1)
        (folder / "emis_P91004_20261102.csv").write_text("".join(lines), encoding="utf-8")
        slid = loader.load(_delivery(tmp_path / "landing", folder / "emis_P91004_20261102.csv", "emis"))
        assert slid.status == "rejected" and "not a practice code" in slid.message
        assert "9434765919" not in slid.message
        assert state() == before
        # a bug that kept the replaced snapshot's patients (raw.emis_patients has no key to refuse them): the
        # snapshot is counted as it would commit, and the export refused with nothing changed
        lines[late] = lines[late].replace("9434765919", "P91004", 1)
        (folder / "emis_P91004_20261103.csv").write_text("".join(lines) + "\n", encoding="utf-8")  # not a duplicate
        with pytest.raises(RuntimeError, match="would hold"):
            Loader(_KeepsReplacedPatients(connection), KEY).load(
                _delivery(tmp_path / "landing", folder / "emis_P91004_20261103.csv", "emis"))
        assert state() == before
        assert loader.load(_delivery(tmp_path / "landing", folder / "emis_P91004_20261103.csv", "emis")
                           ).status == "loaded"
        assert connection.execute("select count(*) = count(distinct emis_number), count(distinct file_id) "
                                  "from raw.emis_patients").fetchone() == (True, 1)
        assert not [thread for thread in threading.enumerate() if thread.name == "sprx-read-ahead"]
    finally:
        connection.close()


class _KeepsReplacedPatients:
    """A warehouse connection on which deleting a practice's replaced patients does nothing (a bug, simulated)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection

    def execute(self, sql: str, *args):
        if sql.startswith("delete from raw.emis_patients"):
            sql, args = "select 1", ()
        return self.connection.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.connection, name)


KILLER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from flows.ingest import _delivery
    from flows.load import Loader
    from flows.warehouse import connect

    original = Loader._stage
    def stage_then_signal(self, *args, **kwargs):
        original(self, *args, **kwargs)
        print("staging", flush=True)  # the transaction is open and rows are going in
        import time; time.sleep(30)
    Loader._stage = stage_then_signal
    landing, warehouse = Path(sys.argv[1]), Path(sys.argv[2])
    connection = connect(warehouse)
    Loader(connection, b"k" * 32).load(_delivery(landing, landing / sys.argv[3], "emis"))
""")


def test_killing_the_process_mid_load_leaves_nothing_and_the_next_run_completes(landing: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "killed.duckdb"
    connect(warehouse).close()
    relative = sorted(p.relative_to(landing).as_posix() for p in (landing / "gp/emis").iterdir())[-1]
    environment = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    process = subprocess.Popen([sys.executable, "-c", KILLER, str(landing), str(warehouse), relative],
                               stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert process.stdout.readline().strip() == "staging"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        for table in ("audit.file_loads", "audit.rejected_rows", *RAW_TABLES):
            assert connection.execute(f"select count(*) from {table}").fetchone()[0] == 0, table
    connection = connect(warehouse)
    try:
        loader = Loader(connection, b"k" * 32)
        delivery = _delivery(landing, landing / relative, "emis")
        assert not loader.already_loaded(delivery)
        result = loader.load(delivery)
        assert result.status == "loaded" and result.rows_loaded > 1000
    finally:
        connection.close()


@pytest.mark.parametrize(("table", "key"), [
    ("emis_patients", "emis_number"), ("systmone_patients", "row_identifier"),
    ("systmone_codes", "row_identifier"), ("systmone_appointments", "row_identifier")])
def test_a_warehouse_made_with_an_old_key_loses_it_and_keeps_its_rows(tmp_path: Path, table: str, key: str) -> None:
    """Warehouses made before 2026-11-27 keyed raw.emis_patients, before 2026-11-28 the SystmOne tables; opening one
    rebuilds the table without the key (whose index made each night's snapshot swap, and each SystmOne batch,
    slow), rows and NOT NULLs kept, and then leaves it alone."""
    fresh = connect(tmp_path / "fresh.duckdb")
    try:
        create = fresh.execute("select sql from duckdb_tables() where schema_name = 'raw' and table_name = ?",
                               [table]).fetchone()[0]
        not_nulls = fresh.execute("select count(*) from duckdb_constraints() where schema_name = 'raw' "
                                  "and table_name = ? and constraint_type = 'NOT NULL'", [table]).fetchone()[0]
    finally:
        fresh.close()
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as old:
        old.execute("create schema raw")
        old.execute(create.rstrip(";").rstrip()[:-1] + f", primary key (practice_code, {key}))")  # as it was
        removed = ", is_removed" if table.startswith("systmone") else ""
        old.execute(f"insert into raw.{table} (practice_code, {key}, extract_date, file_id{removed}) values "
                    + ", ".join(f"('P91004', '{number}', date '2026-10-{day}', {file_id}{', false' * bool(removed)})"
                                for number, day, file_id in (("1001", 31, 7), ("1002", 30, 8))))

    def constraints(connection) -> list[str]:
        return sorted(row[0] for row in connection.execute(
            "select constraint_type from duckdb_constraints() where schema_name = 'raw' "
            "and table_name = ?", [table]).fetchall())

    # a reprocess only reads the warehouse it replaces: it is not rebuilt first (a rebuild that failed, on a
    # full disk, would be taken for corruption and the history lost)
    reader, history, _, _ = _old_history(path)
    try:
        assert history == {} and constraints(reader) == ["NOT NULL"] * not_nulls + ["PRIMARY KEY"]
    finally:
        reader.close()
    for _ in range(2):  # the second opening finds nothing to do
        connection = connect(path)
        try:
            assert constraints(connection) == ["NOT NULL"] * not_nulls
            assert connection.execute(f"select practice_code, {key}, extract_date, file_id from raw.{table} "
                                      f"order by {key}").fetchall() == [
                ("P91004", "1001", dt.date(2026, 10, 31), 7), ("P91004", "1002", dt.date(2026, 10, 30), 8)]
            assert f"{table}_keyed" not in {row[0] for row in connection.execute(
                "select table_name from duckdb_tables()").fetchall()}
        finally:
            connection.close()


def test_a_batch_knows_the_files_it_holds_before_it_commits(landing: Path, tmp_path: Path) -> None:
    """A batch writes its files' audit rows when it commits, but the files it holds count already: the same
    bytes again under another name are a duplicate, even after a file between them was rejected (which makes the
    loader read what is recorded afresh), and a file it holds is already loaded."""
    first, second = sorted((d for d in deliveries(landing) if d.source == "systmone" and d.path.is_dir()),
                           key=_order)[:2]
    elsewhere = tmp_path / "elsewhere"
    renamed = elsewhere / "gp/systmone" / f"{first.path.name.rsplit('_', 1)[0]}_20000101"  # another name, same bytes
    future = elsewhere / "gp/systmone" / f"{second.path.name.rsplit('_', 1)[0]}_20991231"
    shutil.copytree(first.path, renamed)
    shutil.copytree(second.path, future)
    again, dated_ahead = _delivery(elsewhere, renamed, "systmone"), _delivery(elsewhere, future, "systmone")
    assert again.sha256 == first.sha256 and again.relative != first.relative
    connection = connect(tmp_path / "batch.duckdb")
    try:
        loader = Loader(connection, KEY)
        statuses = []
        for delivery in (first, dated_ahead, again):
            loader.join_batch(delivery)
            statuses.append(loader.load(delivery).status)
        assert loader.in_batch and loader.already_loaded(first) and not loader.already_loaded(second)
        loader.commit_batch()
        assert statuses == ["loaded", "rejected", "duplicate"]
        assert connection.execute("select path, status from audit.file_loads order by file_id").fetchall() == [
            (first.relative, "loaded"), (dated_ahead.relative, "rejected"), (again.relative, "duplicate")]
    finally:
        connection.close()
