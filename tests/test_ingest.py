"""`sprx ingest`: landing → raw with full accounting, on the hand-made examples and the sample feeds."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from flows.ingest import ingest
from sprx.cli import main
from sprx.settings import SAMPLE_FEEDS_DIR
from tests.helpers import raw_state
from sprx.synthetic.identity import FEMALE_NAMES, MALE_NAMES, SURNAMES

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
pytestmark = pytest.mark.usefixtures("prefect_harness")


def land(source: Path, home: Path) -> Path:
    """Copy a feed tree (gp/, ambulance/, vcse/) into home/landing."""
    landing = home / "landing"
    for child in source.iterdir():
        if child.is_dir():
            shutil.copytree(child, landing / child.name, dirs_exist_ok=True)
    return landing


def query(home: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def file_loads(home: Path) -> dict[str, dict]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        frame = connection.sql("select * from audit.file_loads").pl()
    return {row["path"]: row for row in frame.iter_rows(named=True)}


# --- the hand-made examples -----------------------------------------------------------------


def test_every_example_loads_with_the_expected_counts(sprx_home: Path) -> None:
    land(FIXTURES, sprx_home)
    summary = ingest()
    loads = file_loads(sprx_home)
    expected = {
        # path: (received, loaded, rejected)
        "gp/emis/emis_P91004_20261120.csv": (6, 6, 0),  # 4 patients, fill-down, a repeated Date column
        "gp/systmone/systmone_P91006_20261120": (9, 9, 0),  # 3 tables of 3 rows, one a deletion
        "ambulance/ambulance_RX7_20261116.csv": (4, 4, 0),  # an untraced caller still counts
        "vcse/trafford-walking-for-health/june-register.csv": (4, 4, 0),  # the totals row is not a row
    }
    assert {path: (r["rows_received"], r["rows_loaded"], r["rows_rejected"]) for path, r in loads.items()} == expected
    assert {r["status"] for r in loads.values()} == {"loaded"}
    assert summary.rows_received == 23 and summary.rows_rejected == 0
    # the EMIS snapshot: 4 registered patients, 5 events (Daniel has none)
    assert query(sprx_home, "select count(*) from raw.emis_patients")[0][0] == 4
    assert query(sprx_home, "select count(*) from raw.emis_events")[0][0] == 5
    # the unlinkable VCSE row (no date of birth) is loaded and flagged, never dropped
    assert query(sprx_home, "select count(*) filter (not is_linkable), count(*) from raw.vcse_attendances")[0] == (1, 4)
    assert "totals row" in loads["vcse/trafford-walking-for-health/june-register.csv"]["message"]
    # the deletion of a row the warehouse never saw is kept as a tombstone and reported
    assert "deletion" in loads["gp/systmone/systmone_P91006_20261120"]["message"]
    assert query(sprx_home, "select is_removed from raw.systmone_codes where row_identifier = '799950'") == [(True,)]


def test_local_times_become_utc_at_both_clock_changes(sprx_home: Path) -> None:
    land(FIXTURES, sprx_home)
    ingest()
    # the two 01:30 calls on 25 Oct 2026 (the hour that repeats) are read as BST: 00:30 UTC
    calls = query(sprx_home, "select call_received_at from raw.ambulance_incidents "
                             "where incident_id in ('NW2610250417', 'NW2610250418')")
    assert {c[0] for c in calls} == {dt.datetime(2026, 10, 25, 0, 30)}
    # 01:30 on 29 Mar 2026 does not exist; it is read as GMT
    assert query(sprx_home, "select appointment_start_at from raw.systmone_appointments "
                            "where row_identifier = '900003'") == [(dt.datetime(2026, 3, 29, 1, 30),)]


def test_the_same_person_links_across_sources_by_token(sprx_home: Path) -> None:
    land(FIXTURES, sprx_home)
    ingest()
    # Zoë Hughes (SystmOne, Windows-1252) and "Zoë Hughes" on the walking register (name + date of birth)
    linked = query(sprx_home, """
        select count(*) from raw.vcse_attendances v
        join raw.systmone_patients p on p.name_dob_token = v.name_dob_token""")
    assert linked[0][0] == 2
    # Margaret Haworth: EMIS (with NHS number) and the register (name + date of birth, short year session)
    assert query(sprx_home, """
        select count(*) from raw.vcse_attendances v
        join raw.emis_patients p on p.name_dob_token = v.name_dob_token""")[0][0] == 1


def test_a_missing_key_stops_the_run_with_a_clear_message(sprx_home: Path, monkeypatch, capsys) -> None:
    land(FIXTURES, sprx_home)
    monkeypatch.delenv("SPRX_PSEUDONYMISATION_KEY")
    assert main(["ingest"]) == 1
    error = capsys.readouterr().err
    assert "SPRX_PSEUDONYMISATION_KEY is not set" in error
    assert not (sprx_home / "warehouse.duckdb").exists()


# --- the sample feeds -----------------------------------------------------------------------


def test_sample_ingest_rejects_exactly_the_injected_faults(sample_home: Path) -> None:
    truth = json.loads((SAMPLE_FEEDS_DIR / "truth.json").read_text(encoding="utf-8"))
    injected = {(f["file"], f["row_number"], f["field"]) for f in truth["injected_faults"]["rows"]}
    rejected = set(query(sample_home, "select path, row_number, field from audit.rejected_rows"))
    assert rejected == injected


def test_sample_accounting_holds_for_every_file(sample_home: Path) -> None:
    loads = file_loads(sample_home)
    expected_files = {p.relative_to(SAMPLE_FEEDS_DIR).as_posix() for p in SAMPLE_FEEDS_DIR.glob("gp/*/*")} | {
        p.relative_to(SAMPLE_FEEDS_DIR).as_posix() for p in SAMPLE_FEEDS_DIR.glob("ambulance/*")} | {
        p.relative_to(SAMPLE_FEEDS_DIR).as_posix() for p in SAMPLE_FEEDS_DIR.glob("vcse/*/*")}
    assert set(loads) == expected_files
    for path, row in loads.items():
        assert row["status"] == "loaded", (path, row["message"])
        assert row["rows_received"] == row["rows_loaded"] + row["rows_rejected"], path
    rejected_per_file = dict(query(sample_home, """
        select f.path, count(distinct (r.path, r.row_number)) from audit.rejected_rows r
        join audit.file_loads f using (file_id) group by f.path"""))
    assert {p: r["rows_rejected"] for p, r in loads.items() if r["rows_rejected"]} == rejected_per_file


def test_rerunning_changes_nothing(in_sample_home: Path) -> None:
    sample_home = in_sample_home
    before = raw_state(sample_home / "warehouse.duckdb"), len(file_loads(sample_home))
    summary = ingest()
    assert summary.files == []
    assert (raw_state(sample_home / "warehouse.duckdb"), len(file_loads(sample_home))) == before


def test_no_identifier_in_clear_anywhere_in_the_warehouse(sample_home: Path) -> None:
    nhs_number = re.compile(r"\b999\s?\d{3}\s?\d{4}\b")
    postcode = re.compile(r"\b(M|WA)\d{1,2}\s?\d[A-Z]{2}\b", re.IGNORECASE)
    names = {name.upper() for name in FEMALE_NAMES + MALE_NAMES + SURNAMES if len(name) >= 4}
    with duckdb.connect(str(sample_home / "warehouse.duckdb"), read_only=True) as connection:
        columns = connection.execute("""
            select table_schema, table_name, column_name from information_schema.columns
            where data_type = 'VARCHAR' and table_schema in ('raw', 'audit')""").fetchall()
        assert columns
        for schema, table, column in columns:
            values = [v for (v,) in connection.execute(
                f'select distinct "{column}" from {schema}.{table} where "{column}" is not null').fetchall()]
            for value in values:
                assert not nhs_number.search(value), (table, column)
                assert not postcode.search(value), (table, column)
                words = set(re.findall(r"[A-Za-zÀ-ÿ']+", value.upper()))
                assert not (words & names) or column in ("reason", "message", "code_term", "ctv3_text", "activity",
                                                         "clinician_type"), (table, column, words & names)
