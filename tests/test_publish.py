"""Publishing the analysts' copy: what is copied, what is refused, and CSV that spreadsheets cannot run.

These tests build a small warehouse with a published schema by hand (the sample's full build and
publish run in tests/test_run.py) and call the publish flow's own steps on it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from flows.publish import ANALYTICS_FILE, PublicationRefused, export_release, publish, release_problems


def record_completed_build(path: Path) -> None:
    """Record a completed build in audit.pipeline_runs: publish copies only what a completed build left."""
    import datetime as dt

    from flows.warehouse import connect, record_stage

    connection = connect(path)
    try:
        moment = dt.datetime(2026, 11, 20, 3, 0)
        record_stage(connection, "build-1", "build", moment, moment, "completed")
    finally:
        connection.close()


def make_warehouse(path: Path, *statements: str) -> Path:
    """A warehouse file with a marts schema and a published schema holding one clean table, then `statements`."""
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema marts; create schema published")
        connection.execute("create table marts.mart_counts as select 'P91004' as practice_code, 3 as people")
        connection.execute("""
            create table published.pub_counts as
            select 'P91004' as practice_code, '2025-01' as referral_month, cast(10 as bigint) as people,
                   cast(null as bigint) as engaged, cast(0 as bigint) as declined, 0.25 as engagement_rate""")
        connection.execute("comment on table published.pub_counts is 'One row per practice and month.'")
        connection.execute("comment on column published.pub_counts.people is 'People referred, rounded to 5.'")
        for statement in statements:
            connection.execute(statement)
    return path


# Each case: SQL that adds something to the published schema, and the problem publishing must report.
REFUSED = [
    # a count from 1 to 7 that escaped redaction
    ("create table published.pub_small as select cast(3 as bigint) as people", "pub_small.people: 1 count(s) from 1 to 7"),
    # a count not rounded to the nearest 5
    ("create table published.pub_unrounded as select cast(12 as bigint) as people",
     "pub_unrounded.people: 1 count(s) from 1 to 7 or not a multiple of 5"),
    # a pseudonym column, even if empty of values
    ("create table published.pub_tokens as select cast(null as varchar) as nhs_number_token",
     "pub_tokens.nhs_number_token: a column named like an identifier"),
    # an NHS number in a text column (spaced as on a letter)
    ("create table published.pub_text as select '943 476 5919' as note", "pub_text.note: 1 value(s) that look like an NHS number"),
    # a postcode in a text column
    ("create table published.pub_place as select 'M32 0TR' as area", "pub_place.area: 1 value(s) that look like a postcode"),
    # a 64-hex-digit token in a text column
    ("create table published.pub_hash as select repeat('ab12', 16) as key_text",
     "pub_hash.key_text: 1 value(s) that look like a pseudonym token"),
    # other schemas in the analysts' file (the hand-made warehouse has an unrounded marts schema too)
    ("create schema staging", "schemas other than published: ['marts', 'staging']"),
]


@pytest.mark.parametrize(("statement", "problem"), REFUSED, ids=[case[1].split(":")[0] for case in REFUSED])
def test_a_copy_with_a_disclosure_or_identifier_problem_is_refused(tmp_path, statement, problem):
    analytics = make_warehouse(tmp_path / "analytics.duckdb", statement)
    problems = release_problems(analytics)
    assert any(problem in found for found in problems), problems


def test_a_clean_copy_has_no_problems(tmp_path):
    with duckdb.connect(str(tmp_path / "analytics.duckdb")) as connection:
        connection.execute("create schema published")
        connection.execute("create table published.pub_counts as select 'P91004' as practice_code, "
                           "cast(15 as bigint) as people, cast(null as bigint) as engaged, 'E01005974' as lsoa21_code")
    assert release_problems(tmp_path / "analytics.duckdb") == []


def test_export_copies_the_published_schema_only_with_descriptions_parquet_and_safe_csv(tmp_path):
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb", """
        create table published.pub_reasons as select * from (values
            ('=HYPERLINK("http://example.invalid","click")', cast(10 as bigint)),
            ('+44 161', cast(0 as bigint)), ('-1', cast(0 as bigint)), ('@SUM(A1)', cast(0 as bigint)),
            ('plain text', cast(0 as bigint))) as reasons (rejection_reason, rejected_rows)""")
    staging = tmp_path / "release"
    counts = export_release.fn(warehouse, staging)
    assert counts == {"pub_counts": 1, "pub_reasons": 5}
    with duckdb.connect(str(staging / ANALYTICS_FILE), read_only=True) as connection:
        schemas = {row[0] for row in connection.execute(
            "select distinct table_schema from information_schema.tables").fetchall()}
        comment = connection.execute("select comment from duckdb_columns() where table_name = 'pub_counts' "
                                     "and column_name = 'people'").fetchone()[0]
    assert schemas == {"published"}  # marts.mart_counts (unrounded) stayed behind
    assert comment == "People referred, rounded to 5."
    with duckdb.connect() as connection:
        parquet = staging / "parquet" / "pub_reasons.parquet"
        assert connection.execute("select count(*) from read_parquet(?)", [str(parquet)]).fetchone()[0] == 5
    with open(staging / "csv" / "pub_reasons.csv", newline="", encoding="utf-8") as handle:
        cells = [row["rejection_reason"] for row in csv.DictReader(handle)]
    assert cells == ["'=HYPERLINK(\"http://example.invalid\",\"click\")", "'+44 161", "'-1", "'@SUM(A1)", "plain text"]
    with open(staging / "csv" / "pub_counts.csv", newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    assert row["engaged"] == "" and row["declined"] == "0"  # redacted is empty, zero stays zero


def test_publish_refuses_an_unsafe_build_and_keeps_the_previous_copy(tmp_path, monkeypatch, prefect_harness):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SPRX_HOME", str(home))
    make_warehouse(home / "warehouse.duckdb")
    record_completed_build(home / "warehouse.duckdb")
    first = publish()
    assert first.tables == {"pub_counts": 1}
    manifest = (home / "published" / "manifest.json").read_text()
    assert json.loads(manifest)["disclosure"]["threshold"] == 7

    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
        connection.execute("create table published.pub_leak as select cast(2 as bigint) as people")
    with pytest.raises(PublicationRefused, match="pub_leak.people: 1 count"):
        publish()
    assert (home / "published" / "manifest.json").read_text() == manifest
    with duckdb.connect(str(home / "published" / ANALYTICS_FILE), read_only=True) as connection:
        assert connection.execute("select count(*) from information_schema.tables").fetchone()[0] == 1
    assert sorted(p.name for p in (home / "published").iterdir()) == ["analytics.duckdb", "csv", "manifest.json",
                                                                       "parquet"]
