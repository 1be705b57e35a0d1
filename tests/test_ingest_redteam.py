"""Regression tests for the red-team findings of issue 13 that concern the ingest (1, 2, 4, 5, 10, 11).

Each test is named after its finding and reproduces the attack or fault end to end."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import duckdb
import pytest

import flows.archive
import flows.load
from flows.ingest import ingest
from sprx.cli import main
from sprx.readers import ambulance as ambulance_source
from sprx.readers import emis as emis_source
from sprx.readers import vcse as vcse_source
from sprx.settings import SAMPLE_FEEDS_DIR

pytestmark = pytest.mark.usefixtures("prefect_harness")
AMBULANCE = "ambulance_RX7_20241105.csv"


def query(home: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def ambulance_lines() -> tuple[str, list[str]]:
    """The header and data lines of one sample ambulance file."""
    lines = (SAMPLE_FEEDS_DIR / "ambulance" / AMBULANCE).read_text(encoding="utf-8").splitlines(keepends=True)
    return lines[0], lines[1:]


def data_rows(path: Path) -> int:
    """Data rows of a CSV file as a spreadsheet counts them (quoted commas and all)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(io.StringIO(handle.read()))) - 1


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def age(path: Path, seconds: float = 3600) -> None:
    """Make a file look written `seconds` ago (a sender that finished long before the run)."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


# --- finding 1: silent loss of a file still being written -----------------------------------------


def test_finding_1_a_file_appended_to_while_it_is_read_is_not_taken_until_whole(sprx_home: Path,
                                                                                  monkeypatch) -> None:
    """The writer's last rows arrive while the ingest reads the first ones: nothing may be marked loaded
    from the part read, and the rows written after are loaded by the next run (nothing lost)."""
    monkeypatch.setenv("SPRX_LANDING_SETTLE_SECONDS", "0")
    header, lines = ambulance_lines()
    first, rest = lines[: len(lines) * 2 // 3], lines[len(lines) * 2 // 3:]
    target = sprx_home / "landing" / "ambulance" / AMBULANCE
    target.parent.mkdir(parents=True)
    target.write_text(header + "".join(first), encoding="utf-8")
    age(target)
    writer = open(target, "a", encoding="utf-8")  # the sender still holds the file open
    original = ambulance_source.read_ambulance

    def read_then_writer_finishes(path, *args, **kwargs):
        yield from original(path, *args, **kwargs)
        if not writer.closed:  # the writer's last rows land after the reader has read the first ones
            writer.write("".join(rest))
            writer.close()

    monkeypatch.setattr(ambulance_source, "read_ambulance", read_then_writer_finishes)
    ingest()
    loaded = query(sprx_home, "select rows_received from audit.file_loads where status = 'loaded'")
    assert all(received == len(lines) for (received,) in loaded), "rows were marked loaded from half a file"
    ingest()  # the next run takes the whole file
    landing, archived = target, sprx_home / "archive" / "ambulance" / AMBULANCE
    assert not landing.exists() and data_rows(archived) == len(lines)
    rows = query(sprx_home, "select rows_received, sha256 from audit.file_loads where status = 'loaded'")
    assert rows == [(len(lines), sha256(archived))]  # the archived bytes are the bytes loaded


def test_finding_1_a_file_still_being_written_waits_for_the_settle_interval(sprx_home: Path, monkeypatch) -> None:
    """A sender appending a row at a time: the run waits the settle interval, sees the file still growing and
    leaves it in landing/; once it has stopped changing it is taken whole."""
    monkeypatch.setenv("SPRX_LANDING_SETTLE_SECONDS", "1")
    header, lines = ambulance_lines()
    target = sprx_home / "landing" / "ambulance" / AMBULANCE
    target.parent.mkdir(parents=True)
    stop = threading.Event()
    written = []

    def write_slowly() -> None:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(header)
            for line in lines:
                handle.write(line)
                handle.flush()
                written.append(line)
                if stop.wait(0.05):
                    break
            while not stop.wait(0.05):  # all rows written, but the sender keeps touching the file
                handle.write("")
                os.utime(target)

    thread = threading.Thread(target=write_slowly)
    thread.start()
    try:
        while not written:
            time.sleep(0.01)
        summary = ingest()
    finally:
        stop.set()
        thread.join()
    assert summary.files == [] and AMBULANCE in " ".join(summary.arriving)
    assert target.exists() and query(sprx_home, "select count(*) from audit.file_loads") == [(0,)]
    age(target)
    assert ingest().by_status() == {"loaded": 1}
    assert query(sprx_home, "select rows_received from audit.file_loads") == [(data_rows(
        sprx_home / "archive" / "ambulance" / AMBULANCE),)]


def test_finding_1_files_named_as_in_progress_are_not_taken(sprx_home: Path, monkeypatch) -> None:
    """Dot-files and .part/.tmp names are a sender's file still arriving (renamed into place when whole)."""
    monkeypatch.setenv("SPRX_LANDING_SETTLE_SECONDS", "0")
    folder = sprx_home / "landing" / "ambulance"
    folder.mkdir(parents=True)
    names = [f"{AMBULANCE}.part", f"{AMBULANCE}.tmp", f".{AMBULANCE}", f"{AMBULANCE}.filepart"]
    for name in names:
        shutil.copy2(SAMPLE_FEEDS_DIR / "ambulance" / AMBULANCE, folder / name)
    ingest()
    assert query(sprx_home, "select count(*) from audit.file_loads") == [(0,)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    os.replace(folder / f"{AMBULANCE}.part", folder / AMBULANCE)  # the sender renames it into place
    assert ingest().by_status() == {"loaded": 1}


def test_finding_1_bytes_that_change_during_the_move_into_archive_fail_loudly_and_are_kept(
        sprx_home: Path, monkeypatch, capsys) -> None:
    """The sha256 is checked again after the move: a writer that still held the file open appended to it."""
    monkeypatch.setenv("SPRX_LANDING_SETTLE_SECONDS", "0")
    header, lines = ambulance_lines()
    target = sprx_home / "landing" / "ambulance" / AMBULANCE
    target.parent.mkdir(parents=True)
    target.write_text(header + "".join(lines[:-20]), encoding="utf-8")
    age(target)
    replace = os.replace
    appended = []

    def replace_then_writer_appends(source, destination, *args, **kwargs):
        replace(source, destination, *args, **kwargs)
        if "archive" in Path(destination).parts and not appended:
            with open(destination, "a", encoding="utf-8") as handle:  # the writer's open descriptor
                handle.write("".join(lines[-20:]))
            appended.append(destination)

    monkeypatch.setattr(flows.archive.os, "replace", replace_then_writer_appends)
    assert main(["ingest"]) == 1
    error = capsys.readouterr().err
    assert AMBULANCE in error and "changed" in error
    monkeypatch.setattr(flows.archive.os, "replace", replace)
    assert target.exists() and data_rows(target) == len(lines)  # kept, back in landing/, whole
    assert query(sprx_home, "select archived_path from audit.file_loads") == [(None,)]
    assert main(["ingest"]) == 0  # the next run loads the whole file as a new version
    archived = sprx_home / "archive" / "ambulance" / AMBULANCE
    assert query(sprx_home, "select rows_received, sha256, archived_path from audit.file_loads "
                            "where archived_path is not null") == [(len(lines), sha256(archived), f"ambulance/{AMBULANCE}")]
    rejected = {row for (row,) in query(sprx_home, "select row_number from audit.rejected_rows")}
    late = {line.split(",", 1)[0] for number, line in enumerate(lines, start=2)
            if number > len(lines) + 1 - 20 and number not in rejected}
    loaded = {incident for (incident,) in query(sprx_home, "select incident_id from raw.ambulance_incidents")}
    assert late and late <= loaded  # the rows appended during the move were loaded: nothing lost


def test_finding_1_a_delta_rewritten_after_it_was_read_ahead_waits_for_the_next_run(sprx_home: Path,
                                                                                      monkeypatch) -> None:
    """SystmOne deltas are read and validated several at a time, before their turn to load. One its sender
    touches after that read is not recorded from what was read: it stays in landing/, the deltas around it load,
    and the next run takes it whole."""
    names = sorted(path.name for path in (SAMPLE_FEEDS_DIR / "gp" / "systmone").glob("systmone_P91003_2023*.zip"))[:3]
    landing = sprx_home / "landing" / "gp" / "systmone"
    landing.mkdir(parents=True)
    for name in names:
        shutil.copy2(SAMPLE_FEEDS_DIR / "gp" / "systmone" / name, landing / name)
        age(landing / name)
    touched = landing / names[1]
    read_systmone = flows.load.Loader.read_systmone
    groups = []

    def read_then_touch(self, deliveries, **options):
        reads = read_systmone(self, deliveries, **options)
        groups.append(sorted(reads))
        if touched.name in " ".join(reads):  # the sender writes it again (same bytes) once it has been read
            age(touched, 7200)
        return reads

    monkeypatch.setattr(flows.load.Loader, "read_systmone", read_then_touch)
    summary = ingest()
    assert groups[0] == [f"gp/systmone/{name}" for name in names]  # the three read in one group
    assert summary.by_status() == {"loaded": 2} and names[1] in " ".join(summary.arriving)
    assert touched.exists()
    assert query(sprx_home, "select count(*) from audit.file_loads where path like ?", [f"%{names[1]}"]) == [(0,)]
    monkeypatch.setattr(flows.load.Loader, "read_systmone", read_systmone)
    assert ingest().by_status() == {"loaded": 1} and not touched.exists()
    assert query(sprx_home, "select path, status from audit.file_loads where path like ?", [f"%{names[1]}"]) == [
        (f"gp/systmone/{names[1]}", "loaded")]


READ_WHOLE = {  # a feed whose files are read whole ahead of their load: three of its sample files, its reader
    "ambulance": ([f"ambulance/ambulance_RX7_2023{day}.csv" for day in ("0131", "0207", "0214")],
                  ambulance_source, "read_ambulance"),
    "emis": ([f"gp/emis/emis_{practice}_20261031.csv" for practice in ("P91009", "P91029", "P91631")],
             emis_source, "read_emis"),
    "vcse": ([f"vcse/trafford-walking-for-health/{month}-2025-register.csv" for month in ("april", "may", "june")],
             vcse_source, "read_vcse"),
}


@pytest.mark.parametrize("feed", sorted(READ_WHOLE))
def test_finding_1_a_file_rewritten_after_it_was_read_ahead_waits_for_the_next_run(
        feed: str, sprx_home: Path, monkeypatch) -> None:
    """Ambulance files, EMIS exports and VCSE sheets are read, validated and pseudonymised before their turn to load
    (the next while the loader writes the one before), each file read once, in the run that also reads SystmOne
    deltas ahead. One its sender touches after that read is not recorded from what was read: it stays in landing/, the
    files around it load, and the next run takes it whole."""
    names, reader_module, reader_name = READ_WHOLE[feed]
    files = [SAMPLE_FEEDS_DIR / name for name in names]
    deltas = [SAMPLE_FEEDS_DIR / "gp" / "systmone" / f"systmone_P91003_2023{day}.zip" for day in ("0124", "0221")]
    for path in [*files, *deltas]:
        folder = sprx_home / "landing" / path.relative_to(SAMPLE_FEEDS_DIR).parent
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / path.name)
        age(folder / path.name)
    touched = sprx_home / "landing" / names[1]
    read_whole, read_file = flows.load.Loader.read_whole, getattr(reader_module, reader_name)
    files_read = []

    def read_then_touch(self, delivery):
        read = read_whole(self, delivery)
        if delivery.path == touched:  # the sender writes it again (same bytes) once it has been read
            age(touched, 7200)
        return read

    def counted(path, *args, **kwargs):
        files_read.append(Path(path).name)
        return read_file(path, *args, **kwargs)

    monkeypatch.setattr(flows.load.Loader, "read_whole", read_then_touch)
    monkeypatch.setattr(reader_module, reader_name, counted)
    summary = ingest()
    assert sorted(files_read) == sorted(path.name for path in files)  # each read once, ahead of its load
    assert summary.by_status() == {"loaded": len(files) - 1 + len(deltas)}
    assert touched.name in " ".join(summary.arriving) and touched.exists()
    assert query(sprx_home, "select count(*) from audit.file_loads where path like ?", [f"%{touched.name}"]) == [(0,)]
    monkeypatch.setattr(flows.load.Loader, "read_whole", read_whole)
    assert ingest().by_status() == {"loaded": 1} and not touched.exists()
    assert query(sprx_home, "select path, status from audit.file_loads where path like ?", [f"%{touched.name}"]) == [
        (names[1], "loaded")]


# --- finding 2: no guard against a changed or weak key --------------------------------------------

OTHER_KEY = "another-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
FIXTURES = Path(__file__).parent / "fixtures" / "feeds"


def land_fixtures(home: Path) -> None:
    shutil.copytree(FIXTURES, home / "landing", ignore=shutil.ignore_patterns("README.md"), dirs_exist_ok=True)


def tokens(home: Path) -> set[str]:
    return {token for (token,) in query(home, "select nhs_number_token from raw.ambulance_incidents "
                                              "where nhs_number_token is not null")}


@pytest.mark.parametrize("key", ["a" * 32, " " * 32, "x" * 20, "ab" * 20, "0123456789abcdef" * 2, "\t" * 40])
def test_finding_2_a_weak_key_is_refused_with_one_line(key: str, sprx_home: Path, monkeypatch, capsys) -> None:
    land_fixtures(sprx_home)
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", key)
    assert main(["ingest"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error and "SPRX_PSEUDONYMISATION_KEY" in error
    assert key.strip() == "" or key not in error  # the key itself is never echoed
    assert not (sprx_home / "warehouse.duckdb").exists()


def test_finding_2_a_run_under_another_key_is_refused_and_rotation_is_a_reprocess(sprx_home: Path, monkeypatch,
                                                                                   capsys) -> None:
    land_fixtures(sprx_home)
    later = sprx_home / "landing" / "ambulance" / AMBULANCE
    assert main(["ingest"]) == 0
    before = tokens(sprx_home)
    shutil.copy2(SAMPLE_FEEDS_DIR / "ambulance" / AMBULANCE, later)
    capsys.readouterr()
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", OTHER_KEY)
    assert main(["ingest"]) == 1  # tokens under another key would link nobody: refused, nothing touched
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "key" in error and "--reprocess" in error and OTHER_KEY not in error
    assert later.exists() and query(sprx_home, "select count(*) from audit.file_loads where path like ?",
                                    [f"%{AMBULANCE}"]) == [(0,)]
    assert main(["run"]) == 1 and "key" in capsys.readouterr().err
    # rotation: reprocess everything under the new key; the old key is then the one refused
    assert main(["ingest", "--reprocess"]) == 0
    rotated = tokens(sprx_home)
    assert rotated and not rotated & before and len(rotated) >= len(before)
    assert not later.exists()  # the waiting file was taken by the reprocess, under the new key
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", "test-key-0123456789abcdef0123456789abcdef")
    assert main(["ingest"]) == 1
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", OTHER_KEY)
    assert main(["ingest"]) == 0


# --- finding 10: the documented recovery from a corrupt warehouse ---------------------------------


def test_finding_10_reprocess_moves_a_corrupt_warehouse_aside_and_rebuilds(sprx_home: Path, capsys) -> None:
    from tests.helpers import raw_state

    land_fixtures(sprx_home)
    assert main(["ingest"]) == 0
    warehouse = sprx_home / "warehouse.duckdb"
    before = raw_state(warehouse)
    damaged = bytearray(warehouse.read_bytes())
    damaged[: 16 * 1024] = os.urandom(16 * 1024)  # the header and the first blocks overwritten
    warehouse.write_bytes(bytes(damaged))
    assert main(["ingest", "--reprocess"]) == 0, capsys.readouterr().err
    aside = list(sprx_home.glob("warehouse.corrupt-*.duckdb"))
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(damaged)  # kept, as it was, for inspection
    assert raw_state(warehouse) == before
    assert main(["ingest"]) == 0  # and the pipeline runs on it


# --- finding 11: VCSE sheets dated by their modification time; dates in the future ----------------

VCSE_HEADER = "Date,Group,First Name,Surname,DOB,Attended"


def test_finding_11_a_sheet_stamped_in_the_future_does_not_beat_a_later_correction(sprx_home: Path) -> None:
    folder = sprx_home / "landing" / "vcse" / "walks"
    folder.mkdir(parents=True)
    first = folder / "june.csv"
    first.write_text(f"{VCSE_HEADER}\n03/06/2026,Walk,Zoe,Hughes,17/08/1972,Y\n", encoding="utf-8")
    stamp = time.mktime((2030, 1, 1, 0, 0, 0, 0, 1, -1))
    os.utime(first, (stamp, stamp))  # the sender's clock, or a tool, says 2030
    assert ingest().by_status() == {"loaded": 1}
    (received,) = query(sprx_home, "select received_at from audit.file_loads")[0]
    assert received.year < 2030  # taken when it was found
    corrected = folder / "june-corrected.csv"
    corrected.write_text(f"{VCSE_HEADER}\n03/06/2026,Walk,Zoe,Hughes,17/08/1972,N\n", encoding="utf-8")
    assert ingest().by_status() == {"loaded": 1}
    assert query(sprx_home, "select attended from raw.vcse_attendances") == [(False,)]  # the correction won


def test_finding_11_a_file_name_dated_in_the_future_is_refused(sprx_home: Path, capsys) -> None:
    folder = sprx_home / "landing" / "ambulance"
    folder.mkdir(parents=True)
    header, lines = ambulance_lines()
    future = folder / "ambulance_RX7_20300101.csv"
    future.write_text(header + "".join(lines), encoding="utf-8")
    assert main(["ingest"]) == 0
    out = capsys.readouterr().out
    (status, message), = query(sprx_home, "select status, message from audit.file_loads")
    assert status == "rejected" and "2030-01-01" in message and "future" in message and "future" in out
    assert future.exists() and query(sprx_home, "select count(*) from raw.ambulance_incidents") == [(0,)]
    shutil.copy2(future, folder / AMBULANCE)  # the same rows under the right date load
    assert main(["ingest"]) == 0
    assert query(sprx_home, "select count(*) from raw.ambulance_incidents")[0][0] > 0


# --- finding 4: clear identifiers kept through other columns --------------------------------------

CLEAR = ("9992914173", "999 291 4173", "M41 9JD", "17/08/1972", "Zoe Hughes")


def every_text_value(home: Path) -> list[str]:
    """Every text value in every table of the warehouse."""
    values = []
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        columns = connection.execute("select table_schema, table_name, column_name from information_schema.columns "
                                     "where data_type = 'VARCHAR'").fetchall()
        for schema, table, column in columns:
            values.extend(str(v) for (v,) in connection.execute(
                f'select "{column}" from "{schema}"."{table}" where "{column}" is not null').fetchall())
    return values


def test_finding_4_personal_details_typed_in_other_columns_reject_the_row_and_are_never_stored(
        sprx_home: Path) -> None:
    sheet = sprx_home / "landing" / "vcse" / "walks" / "june.csv"
    sheet.parent.mkdir(parents=True)
    sheet.write_text(
        "Date,Activity,First Name,Surname,DOB,Postcode,Attended,Wellbeing\n"
        "03/06/2026,Walking group,Amir,Khan,02/02/1960,WA14 4NQ,Y,7\n"
        "03/06/2026,Zoe Hughes 999 291 4173 M41 9JD,Zoe,Hughes,17/08/1972,,Y,6\n"  # details typed in Activity
        "03/06/2026,Walk - born 17/08/1972,Zoe,Hughes,17/08/1972,,Y,6\n"
        "03/06/2026,Lunch club m41 9jd,Zoe,Hughes,17/08/1972,,Y,6\n"
        "04/06/2026,Walking group,Zoe,Hughes,17/08/1972,,Y,9992914173\n",  # an NHS number typed into Wellbeing
        encoding="utf-8")
    [result] = ingest().files
    assert (result.rows_received, result.rows_loaded, result.rows_rejected) == (5, 1, 4)
    reasons = query(sprx_home, "select row_number, field, reason, value from audit.rejected_rows order by 1")
    assert [(row, field) for row, field, _, _ in reasons] == [(3, "activity"), (4, "activity"), (5, "activity"),
                                                              (6, "wellbeing_score")]
    assert all("NHS number" in reason for _, field, reason, _ in reasons if field == "activity")
    assert all(value is None for *_, value in reasons)  # never echoed
    assert query(sprx_home, "select activity from raw.vcse_attendances") == [("Walking group",)]
    stored = " | ".join(every_text_value(sprx_home))
    for clear in CLEAR:
        assert clear.casefold() not in stored.casefold(), clear


# --- finding 5: identifier files are world-readable -----------------------------------------------


def modes(root: Path) -> dict[str, int]:
    """The permission bits of every file and folder under root (root included), by relative path."""
    paths = [root, *root.rglob("*")] if root.exists() else []
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in paths}


@pytest.fixture
def umask_022():
    """The common default umask, under which new files are world-readable unless made otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask_022")
def test_finding_5_identifier_files_and_folders_are_the_owners_alone_whatever_the_umask(sprx_home: Path) -> None:
    from tests.portal.conftest import GOOD_CSV, make_portal

    land_fixtures(sprx_home)  # landed by a sender: its modes are the sender's
    assert main(["ingest"]) == 0
    assert main(["ingest", "--reprocess"]) == 0
    for name in ("warehouse.duckdb", "warehouse.before-reprocess.duckdb"):
        assert stat.S_IMODE((sprx_home / name).stat().st_mode) == 0o600, name
    archive = modes(sprx_home / "archive")
    assert archive and {mode for path, mode in archive.items() if (sprx_home / "archive" / path).is_file()} == {0o400}
    assert {mode for path, mode in archive.items() if (sprx_home / "archive" / path).is_dir()} == {0o700}
    # the portal: its database, the uploads it keeps and the sheets it lands
    portal = make_portal(sprx_home)
    response = portal.api_upload("june.csv", GOOD_CSV)
    assert response.status_code == 201, response.text
    kept = modes(sprx_home / "portal")
    assert kept["."] == 0o700 and kept["portal.sqlite3"] == 0o600
    assert {mode for path, mode in kept.items() if (sprx_home / "portal" / path).is_file()} == {0o600}
    assert {mode for path, mode in kept.items() if (sprx_home / "portal" / path).is_dir()} == {0o700}
    [landed] = [p for p in (sprx_home / "landing" / "vcse" / "walks").iterdir()]
    assert stat.S_IMODE(landed.stat().st_mode) == 0o600
    assert stat.S_IMODE(landed.parent.stat().st_mode) == 0o700  # a folder the portal made


# --- finding 6 (landing): a hostile workbook dropped straight into landing/vcse/ -------------------


@pytest.mark.parametrize(("part", "reference", "row", "message"), [
    ("xl/worksheets/sheet1.bin", "XFD3", 3, "the sheet has cells past column 200"),  # the red team's workbook
    ("xl/worksheets/sheet1.xml", "A1048576", 1048576, "the sheet has rows past row 50,000"),  # Excel's last row
])
def test_finding_6_a_hostile_workbook_dropped_in_landing_gets_the_portals_checks(
        sprx_home: Path, capsys, part: str, reference: str, row: int, message: str) -> None:
    """Not through the portal: `sprx ingest` refuses the workbook before openpyxl reads it, says why in the
    audit trail, and keeps the file where it was."""
    from tests.portal.conftest import far_cell, rename_sheet_part, xlsx

    folder = sprx_home / "landing" / "vcse" / "walks"
    folder.mkdir(parents=True)
    sheet = folder / "june.xlsx"
    sheet.write_bytes(rename_sheet_part(xlsx([VCSE_HEADER.split(","), ["03/06/2026", "Walk", "Zoe", "Hughes",
                                                                       "17/08/1972", "Y"]]),
                                        part, far_cell(reference, row)))
    held = sheet.read_bytes()
    assert main(["ingest"]) == 0
    (status, message_recorded, received, loaded, rejected), = query(
        sprx_home, "select status, message, rows_received, rows_loaded, rows_rejected from audit.file_loads")
    assert status == "rejected" and message in message_recorded, message_recorded
    assert message in capsys.readouterr().out
    assert (received, loaded, rejected) == (0, 0, 0)  # nothing read, so nothing counted as loaded
    assert sheet.read_bytes() == held  # kept in landing, as every rejected file is
    assert query(sprx_home, "select count(*) from raw.vcse_attendances") == [(0,)]
