"""Publishing the analysts' copy: what is copied, what is refused, and CSV that spreadsheets cannot run.

These tests build a small warehouse with a published schema by hand (the sample's full build and
publish run in tests/test_run.py) and call the publish flow's own steps on it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
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
    # rows are sorted by the table's grain (its columns left to right)
    assert cells == ["'+44 161", "'-1", "'=HYPERLINK(\"http://example.invalid\",\"click\")", "'@SUM(A1)", "plain text"]
    with open(staging / "csv" / "pub_counts.csv", newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    assert row["engaged"] == "" and row["declined"] == "0"  # redacted is empty, zero stays zero


def release_entries(published: Path) -> list[str]:
    """What analysts see in published/ (the fixed entries and the release machinery)."""
    return sorted(path.name for path in published.iterdir())


LAYOUT = ["analytics.duckdb", "csv", "current", "manifest.json", "parquet", "releases", "report"]


@pytest.fixture
def home(tmp_path, monkeypatch, prefect_harness) -> Path:
    """SPRX_HOME with a warehouse whose last build completed (one published table), nothing published yet."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SPRX_HOME", str(home))
    make_warehouse(home / "warehouse.duckdb")
    record_completed_build(home / "warehouse.duckdb")
    return home


def test_publish_refuses_an_unsafe_build_and_keeps_the_previous_copy(home: Path):
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
    assert release_entries(home / "published") == LAYOUT
    assert len(list((home / "published" / "releases").iterdir())) == 1  # the refused copy left nothing behind


def test_a_status_that_disagrees_with_its_figure_is_refused(tmp_path):
    analytics = make_warehouse(tmp_path / "analytics.duckdb", """
        create table published.pub_status as select * from (values
            (cast(null as bigint), 'shown'), (cast(10 as bigint), 'redacted'), (cast(null as bigint), 'missing'))
            as rows (people, people_status)""")
    assert any("pub_status.people_status: 3 status(es) that disagree" in problem
               for problem in release_problems(analytics))


def test_an_organisational_count_is_published_as_it_is_only_when_described_so(tmp_path):
    analytics = make_warehouse(tmp_path / "analytics.duckdb", """
        create table published.pub_files as select cast(3 as bigint) as rows_received, cast(3 as bigint) as people""",
        "comment on column published.pub_files.rows_received is 'Organisational count (not redacted): data rows.'")
    problems = release_problems(analytics)
    assert any("pub_files.people: 1 count" in problem for problem in problems), problems
    assert not any("rows_received" in problem for problem in problems), problems


def test_parquet_keeps_descriptions_integers_and_utc_times(tmp_path):
    import pyarrow.parquet as pq

    warehouse = make_warehouse(tmp_path / "warehouse.duckdb", """
        create table published.pub_times as select cast(10 as bigint) as people, cast(null as bigint) as engaged,
            timezone('UTC', timestamp '2026-01-02 03:04:05') as received_at""",
        "comment on table published.pub_times is 'One row per file.'",
        "comment on column published.pub_times.people is 'People, rounded to 5.'")
    export_release.fn(warehouse, tmp_path / "release")
    parquet = tmp_path / "release" / "parquet" / "pub_times.parquet"
    schema = pq.read_schema(parquet)
    assert schema.field("people").metadata[b"description"] == b"People, rounded to 5."
    assert schema.metadata[b"description"] == b"One row per file."
    assert str(schema.field("people").type) == "int64" and str(schema.field("received_at").type) == "timestamp[us, tz=UTC]"
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(parquet)
    assert str(frame["engaged"].dtype) == "Int64" and str(frame["people"].dtype) == "Int64"  # a null keeps it integer


def test_the_analysts_file_is_written_in_the_duckdb_1_1_storage_format(tmp_path):
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb")
    export_release.fn(warehouse, tmp_path / "release")
    header = (tmp_path / "release" / ANALYTICS_FILE).read_bytes()[:20]
    # the main header: 8 bytes of checksum, the magic bytes DUCK, then the storage version number; 64 is the
    # format of DuckDB 0.10 to 1.1, which every DuckDB from 1.0 on reads (1.2+ would write 65 or more)
    assert header[8:12] == b"DUCK"
    assert int.from_bytes(header[12:20], "little") == 64


def test_finding_12_csv_formula_guard_catches_a_leading_space_or_newline(tmp_path):
    # Issue 13, finding 12: " =1+1" and "\n=1+1" reached the CSV unguarded; a spreadsheet skips the space or
    # newline and runs the formula
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb", """
        create table published.pub_text as select * from (values
            (' =HYPERLINK("http://example.invalid")'), (chr(10) || '=1+1'), ('  +cmd'), (chr(13) || '@A1'),
            ('a = b'), ('plain')) as rows (reason)""")
    export_release.fn(warehouse, tmp_path / "release")
    with open(tmp_path / "release" / "csv" / "pub_text.csv", newline="", encoding="utf-8") as handle:
        cells = [row["reason"] for row in csv.DictReader(handle)]
    unsafe = [value for value in cells if not value.startswith("'") and value.lstrip(" \t\r\n")[:1] in "=+-@"]
    assert unsafe == [], unsafe
    assert "a = b" in cells and "plain" in cells  # ordinary text is left alone


# A publish that kills itself (SIGKILL, no clean-up) just before its k-th change under published/ that a
# reader could see: a file or folder renamed, a symlink made, a tree removed.
KILLED_PUBLISH = textwrap.dedent("""
    import os, shutil, signal, sys
    published = os.path.join(os.path.realpath(os.environ["SPRX_HOME"]), "published")
    kill_at, seen = int(sys.argv[1]), [0]

    def guarded(function):
        def wrapper(*args, **kwargs):
            if any(isinstance(arg, (str, os.PathLike)) and os.path.abspath(arg).startswith(published)
                   for arg in args[:2]):
                seen[0] += 1
                if seen[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)
        return wrapper

    for name in ("rename", "replace", "symlink"):
        setattr(os, name, guarded(getattr(os, name)))
    shutil.rmtree = guarded(shutil.rmtree)
    from sprx.cli import main
    sys.exit(main(["publish"]))
""")


def assert_published_copy_is_whole(published: Path) -> None:
    """manifest.json, analytics.duckdb, parquet/ and csv/ are one release: the same tables, the manifest's files."""
    manifest = json.loads((published / "manifest.json").read_text(encoding="utf-8"))
    with duckdb.connect(str(published / ANALYTICS_FILE), read_only=True) as connection:
        tables = {name for (name,) in connection.execute(
            "select table_name from information_schema.tables where table_schema = 'published'").fetchall()}
    assert set(manifest["tables"]) == tables
    assert {path.stem for path in (published / "parquet").iterdir()} == tables
    assert {path.stem for path in (published / "csv").iterdir()} == tables
    for name, file in manifest.get("files", {}).items():
        digest = base64.b64encode(hashlib.sha256((published / "current" / name).read_bytes()).digest()).decode()
        assert digest == file["sha256_base64"], name


@pytest.mark.slow
def test_finding_9_a_kill_anywhere_in_publish_leaves_one_whole_copy_and_the_next_publish_cleans_up(home: Path):
    # Issue 13, finding 9: a kill during publish left new data beside the old manifest.json and a
    # leftover .release-* folder. Now: a kill before each step of a publish leaves the previous copy or the
    # new one whole, and the next publish removes whatever the killed one left.
    from prefect.settings import get_current_settings

    publish()
    published = home / "published"
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:  # the next build adds a table
        connection.execute("create table published.pub_more as select cast(15 as bigint) as people")
    environment = {**os.environ, "SPRX_HOME": str(home), "PREFECT_API_URL": str(get_current_settings().api.url)}
    kills = 0
    for kill_at in range(1, 60):
        process = subprocess.run([sys.executable, "-c", KILLED_PUBLISH, str(kill_at)], env=environment,
                                 capture_output=True, text=True, timeout=300)
        assert_published_copy_is_whole(published)
        if process.returncode != -signal.SIGKILL:
            assert process.returncode == 0, process.stderr[-2000:]
            break
        kills += 1
    assert kills >= 5  # the sweep reached every step of the publish, up to one that finished
    publish()
    assert_published_copy_is_whole(published)
    assert release_entries(published) == LAYOUT
    # the current release and the one it replaced (kept for readers until the next publish); nothing else
    releases = {f"releases/{path.name}" for path in (published / "releases").iterdir()}
    assert len(releases) == 2 and os.readlink(published / "current") in releases
    assert json.loads((published / "manifest.json").read_text())["tables"] == {"pub_counts": 1, "pub_more": 1}


def test_a_reader_that_resolved_the_copy_before_a_swap_still_opens_it_until_the_next_publish(home: Path):
    # The fault suite's reader, opening analytics.duckdb afresh for each query, once found the release it
    # had resolved an instant before the swap already deleted. The replaced release now stays one publish.
    published = home / "published"
    publish()
    resolved = Path(os.path.realpath(published / ANALYTICS_FILE))  # what a reader's open resolved
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
        connection.execute("create table published.pub_more as select cast(15 as bigint) as people")
    publish()
    assert Path(os.path.realpath(published / ANALYTICS_FILE)) != resolved
    with duckdb.connect(str(resolved), read_only=True) as connection:  # the old copy, whole
        assert connection.execute("select count(*) from information_schema.tables").fetchone()[0] == 1
    assert_published_copy_is_whole(published)
    publish()
    assert not resolved.exists()  # gone at the next publish
    assert len(list((published / "releases").iterdir())) == 2


def test_a_table_left_by_a_removed_model_is_not_published(tmp_path):
    # dbt leaves the table of a renamed or removed model in the warehouse; the build's manifest says what is current
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb",
                               "create table published.pub_old_name as select cast(10 as bigint) as people")
    (tmp_path / "dbt" / "target").mkdir(parents=True)
    (tmp_path / "dbt" / "target" / "manifest.json").write_text(json.dumps({"nodes": {
        "model.sprx.pub_counts": {"resource_type": "model", "name": "pub_counts", "alias": "pub_counts",
                                  "schema": "published"},
        "model.sprx.mart_counts": {"resource_type": "model", "name": "mart_counts", "alias": "mart_counts",
                                   "schema": "marts"}}}))
    assert export_release.fn(warehouse, tmp_path / "release") == {"pub_counts": 1}
