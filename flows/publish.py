"""Prefect flow `publish`: the analysts' copy of the published schema, replaced atomically.

    publish ─► export_release ─► check_release ─► swap_release

Analysts never open the pipeline's own warehouse (DuckDB allows one writer, or many readers, never
both). After a successful build, this flow copies the ``published`` schema, and nothing else, into
a new file, checks it, and renames it over ``published/analytics.duckdb``:

- an analyst's connection that is already open keeps reading the previous copy (it holds the old
  file), and a connection opened afterwards sees the new one; nobody ever sees half a copy;
- ``published/parquet/<mart>.parquet`` and ``published/csv/<mart>.csv`` are written beside it for
  Power BI, Excel and pandas users, each file renamed into place; CSV text cells that a spreadsheet
  would run as a formula (starting ``=``, ``+``, ``-``, ``@``, tab or carriage return) are prefixed
  with an apostrophe;
- ``published/manifest.json`` says when the copy was made and what it holds.

Before anything is renamed into place, the new copy is checked: every integer column is a count and
must be 0, redacted (null) or a multiple of the rounding base above the disclosure threshold; no
column may be named like an identifier or a pseudonym; no text may look like an NHS number, a
postcode or a token. A copy that fails is not published, and the previous one stays.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.lock import warehouse_lock
from flows.warehouse import utc_now
from sprx.settings import DBT_PROJECT_DIR, get_settings

# The schema of the pipeline's warehouse that analysts get, and its name in their copy.
PUBLISHED_SCHEMA = "published"
# The analysts' database file, inside published/.
ANALYTICS_FILE = "analytics.duckdb"
# Column names that would carry an identifier or a pseudonym; none may reach published/.
FORBIDDEN_COLUMN_WORDS = ("token", "nhs_number", "postcode", "date_of_birth", "forename", "surname",
                          "first_name", "last_name", "person_key", "person_id", "emis_number", "patient_id")
# Text that looks like an identifier: an NHS number (10 digits, spaced 3-3-4 or not), a UK
# postcode, or a hex pseudonym token (32 or more hex digits).
IDENTIFIER_PATTERNS = {
    "an NHS number": r"(^|[^0-9A-Za-z])[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}([^0-9A-Za-z]|$)",
    "a postcode": r"(^|[^A-Za-z0-9])[A-Za-z]{1,2}[0-9][A-Za-z0-9]? ?[0-9][A-Za-z]{2}([^A-Za-z0-9]|$)",
    "a pseudonym token": r"[0-9a-f]{32,}",
}
# A CSV text cell starting with one of these would run as a formula in a spreadsheet.
FORMULA_PREFIX = r"^[=+\-@\t\r]"
# Integer columns that are identifiers of files, not counts of people or events.
NON_COUNT_INTEGER_COLUMNS = frozenset({"file_id"})
INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                           "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"})


class PublicationRefused(RuntimeError):
    """The new copy broke disclosure control or held something like an identifier, or the last build did
    not complete; nothing was published."""


def check_last_build(warehouse: Path) -> str:
    """The run id of the last build if it completed; else PublicationRefused saying what happened to it.

    A build that failed, or was killed (recorded "running", or "abandoned" once the next stage found it),
    may have replaced some published tables and not others: that schema is never copied to analysts."""
    with duckdb.connect(str(warehouse)) as connection:
        last = connection.execute(
            "select run_id, status, started_at from audit.pipeline_runs where stage = 'build' "
            "order by started_at desc, run_id desc limit 1").fetchone()
    if last is None:
        raise PublicationRefused("no build has been recorded in this warehouse: run `sprx build` (or `sprx run`) "
                                 "first; the published copy stands")
    run_id, status, started_at = last
    if status != "completed":
        raise PublicationRefused(
            f"the last build (started {started_at:%Y-%m-%d %H:%M} UTC) did not complete ({status}), so the "
            "warehouse may be half-built: run `sprx build` (or `sprx run`) again; the published copy stands")
    return run_id


@dataclass
class PublishSummary:
    """What one publish wrote: tables and their row counts (no data), where, and when."""

    published_at: str
    folder: str
    tables: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for people."""
        return (f"Published {len(self.tables)} table(s) to {self.folder} at {self.published_at} "
                f"({sum(self.tables.values())} rows; analytics.duckdb, parquet/, csv/) in {self.seconds:.1f}s")


def disclosure_rule() -> tuple[int, int]:
    """(threshold, rounding) from the dbt project's vars: the one place the rule is set."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    variables = project["vars"]
    return int(variables["disclosure_threshold"]), int(variables["disclosure_rounding"])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _published_tables(connection: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    rows = connection.execute(
        "select table_name from information_schema.tables where table_catalog = ? and table_schema = ? "
        "order by table_name", [catalog, PUBLISHED_SCHEMA]).fetchall()
    return [name for (name,) in rows]


def _copy_comments(connection: duckdb.DuckDBPyConnection, table: str) -> None:
    """Carry the table's and its columns' descriptions (dbt persist_docs) into the analysts' copy."""
    target = f"{PUBLISHED_SCHEMA}.{_quote(table)}"
    for (comment,) in connection.execute(
            "select comment from duckdb_tables() where database_name = 'warehouse' and schema_name = ? "
            "and table_name = ? and comment is not null", [PUBLISHED_SCHEMA, table]).fetchall():
        connection.execute(f"comment on table {target} is {_literal(comment)}")
    for column, comment in connection.execute(
            "select column_name, comment from duckdb_columns() where database_name = 'warehouse' "
            "and schema_name = ? and table_name = ? and comment is not null",
            [PUBLISHED_SCHEMA, table]).fetchall():
        connection.execute(f"comment on column {target}.{_quote(column)} is {_literal(comment)}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _formula_safe(table: pa.Table) -> pa.Table:
    """Prefix with an apostrophe every text cell a spreadsheet would read as a formula."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_PREFIX), False)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


@task(persist_result=False)
def export_release(warehouse: Path, staging: Path) -> dict[str, int]:
    """Copy the warehouse's published schema into staging/: analytics.duckdb, parquet/, csv/."""
    (staging / "parquet").mkdir(parents=True)
    (staging / "csv").mkdir()
    counts: dict[str, int] = {}
    connection = duckdb.connect(str(staging / ANALYTICS_FILE))
    try:
        connection.execute(f"attach {_literal(str(warehouse))} as warehouse (read_only)")
        tables = _published_tables(connection, "warehouse")
        if not tables:
            raise PublicationRefused(f"the warehouse has no {PUBLISHED_SCHEMA} tables: run `sprx build` first")
        connection.execute(f"create schema {PUBLISHED_SCHEMA}")
        for table in tables:
            target = f"{PUBLISHED_SCHEMA}.{_quote(table)}"
            connection.execute(f"create table {target} as select * from warehouse.{PUBLISHED_SCHEMA}.{_quote(table)}")
            _copy_comments(connection, table)
            counts[table] = connection.execute(f"select count(*) from {target}").fetchone()[0]
            connection.execute(f"copy {target} to {_literal(str(staging / 'parquet' / f'{table}.parquet'))} "
                               "(format parquet, compression zstd)")
            arrow = connection.sql(f"select * from {target}").to_arrow_table()
            pa_csv.write_csv(_formula_safe(arrow), staging / "csv" / f"{table}.csv")
        connection.execute("detach warehouse")
        connection.execute("checkpoint")
    finally:
        connection.close()
    return counts


def release_problems(analytics: Path) -> list[str]:
    """Everything in an analysts' copy that breaks disclosure control or looks like an identifier.

    Returns problems as text naming the table and column (never the offending value)."""
    threshold, rounding = disclosure_rule()
    problems: list[str] = []
    connection = duckdb.connect(str(analytics), read_only=True)
    try:
        schemas = {name for (name,) in connection.execute(
            "select schema_name from duckdb_schemas() where not internal and database_name = current_database()"
        ).fetchall()} - {"main"}
        if schemas - {PUBLISHED_SCHEMA}:
            problems.append(f"schemas other than {PUBLISHED_SCHEMA}: {sorted(schemas - {PUBLISHED_SCHEMA})}")
        columns = connection.execute(
            "select table_schema, table_name, column_name, data_type from information_schema.columns "
            "where table_catalog = current_database() order by table_schema, table_name, ordinal_position"
        ).fetchall()
        for schema, table, column, data_type in columns:
            place = f"{schema}.{table}.{column}"
            relation = f"{_quote(schema)}.{_quote(table)}"
            if any(word in column.lower() for word in FORBIDDEN_COLUMN_WORDS):
                problems.append(f"{place}: a column named like an identifier")
            if data_type.upper() in INTEGER_TYPES and column not in NON_COUNT_INTEGER_COLUMNS:
                broken = connection.execute(
                    f"select count(*) from {relation} where {_quote(column)} between 1 and {threshold} "
                    f"or {_quote(column)} % {rounding} != 0").fetchone()[0]
                if broken:
                    problems.append(f"{place}: {broken} count(s) from 1 to {threshold} or not a multiple of {rounding}")
            if data_type.upper() == "VARCHAR":
                for label, pattern in IDENTIFIER_PATTERNS.items():
                    found = connection.execute(
                        f"select count(*) from {relation} where regexp_matches({_quote(column)}, ?)", [pattern]
                    ).fetchone()[0]
                    if found:
                        problems.append(f"{place}: {found} value(s) that look like {label}")
    finally:
        connection.close()
    return problems


@task(persist_result=False)
def check_release(staging: Path) -> None:
    """Refuse a copy that breaks disclosure control or holds anything like an identifier."""
    problems = release_problems(staging / ANALYTICS_FILE)
    if problems:
        raise PublicationRefused("the new published copy was not published: " + "; ".join(problems[:10]))


def _replace_folder_files(source: Path, target: Path) -> None:
    """Rename each file of source/ over its namesake in target/ (atomic per file); drop target's others."""
    target.mkdir(parents=True, exist_ok=True)
    keep = set()
    for path in sorted(source.iterdir()):
        os.replace(path, target / path.name)
        keep.add(path.name)
    for path in target.iterdir():
        if path.name not in keep and path.is_file():
            path.unlink()


@task(persist_result=False)
def swap_release(staging: Path, published: Path, summary: PublishSummary) -> None:
    """Put the checked copy in place: analytics.duckdb by one rename, then Parquet, CSV and the manifest."""
    os.replace(staging / ANALYTICS_FILE, published / ANALYTICS_FILE)
    _replace_folder_files(staging / "parquet", published / "parquet")
    _replace_folder_files(staging / "csv", published / "csv")
    threshold, rounding = disclosure_rule()
    manifest = {
        "published_at": summary.published_at,
        "tables": summary.tables,
        "disclosure": {
            "threshold": threshold,
            "rounding": rounding,
            "rule": f"counts from 1 to {threshold} are redacted (empty); other counts are rounded to the "
                    f"nearest {rounding}; rates and averages are computed from unrounded values and "
                    f"redacted when their denominator is {threshold} or fewer (a rate also when its "
                    f"numerator is a redacted count)",
        },
    }
    temporary = staging / "manifest.json"
    temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, published / "manifest.json")


def _clear_abandoned(published: Path) -> None:
    """Remove staging folders left by a publish that was killed before it finished."""
    for path in published.glob(".release-*"):
        shutil.rmtree(path, ignore_errors=True)


@flow(name="publish", persist_result=False)
def publish() -> PublishSummary:
    """Copy the warehouse's published schema to published/ for analysts, checked, and swap it in atomically."""
    from flows.ingest import record_run, run_id_now

    settings = get_settings()
    started = time.perf_counter()
    run_id, started_at = run_id_now(), utc_now()
    published = settings.published_dir
    with warehouse_lock(settings.home, "publish", settings.lock_wait_seconds):
        record_run(settings, run_id, started_at, "running", stage="publish")  # also closes abandoned stages
        try:
            build_run = check_last_build(settings.warehouse_path)
        except PublicationRefused:
            record_run(settings, run_id, started_at, "failed", {"refused": True}, quiet=True, stage="publish")
            raise
        get_run_logger().info("publishing the published schema of build %s", build_run)
        published.mkdir(parents=True, exist_ok=True)
        _clear_abandoned(published)
        staging = Path(tempfile.mkdtemp(prefix=".release-", dir=published))
        try:
            tables = export_release(settings.warehouse_path, staging)
            check_release(staging)
            summary = PublishSummary(
                published_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
                folder=str(published), tables=tables)
            swap_release(staging, published, summary)
            record_run(settings, run_id, started_at, "completed", {"tables": len(tables)}, stage="publish")
        except BaseException:
            record_run(settings, run_id, started_at, "failed", quiet=True, stage="publish")
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    get_run_logger().info(summary.describe())
    create_table_artifact(
        key="publish", description=summary.describe(),
        table=[{"table": name, "rows": rows} for name, rows in sorted(tables.items())])
    return summary
