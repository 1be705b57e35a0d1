"""Prefect flow `publish`: the analysts' copy of the published schema, swapped in as one directory.

    publish ─► export_release ─► check_release ─► write_report ─► swap_release

Analysts never open the pipeline's own warehouse (DuckDB allows one writer, or many readers, never
both). After a successful build, this flow copies the ``published`` schema, and nothing else, into
a new release folder, ``published/releases/<release id>/``:

- ``analytics.duckdb`` (written in DuckDB's v1.1 storage format, so DuckDB 1.1 and later open it),
  with every table's and column's description (dbt ``persist_docs``) as its COMMENT;
- ``parquet/<table>.parquet`` (the same descriptions as field metadata, integers as Int64 for pandas,
  times as UTC timestamps) and ``csv/<table>.csv`` (sorted by the table's grain; text cells that a
  spreadsheet would run as a formula, starting ``=``, ``+``, ``-``, ``@``, tab, carriage return or
  newline, also after leading spaces, are prefixed with an apostrophe);
- ``report/index.html`` and ``report/report.pdf`` (flows/report.py), built from those tables alone;
- ``manifest.json``: the release, the build it came from, the data's end dates, the schema version,
  and the size and SHA-256 (base64) of every file beside it.

The release is checked, then made current by ONE rename: the symlink ``published/current`` is
replaced by one pointing at the new release. ``published/analytics.duckdb``, ``parquet``, ``csv``,
``report`` and ``manifest.json`` are fixed symlinks through ``current``, so every path analysts use
switches to the new release at the same instant: a kill at any point leaves either the old release or
the new one whole, never a mix. An analyst's connection that is already open keeps reading the file it
opened. The release before the current one stays until the next publish (a reader that resolved the
old path an instant before the swap still opens it); leftovers of a killed publish (a half-written
release, older releases) are removed by the next publish.

Before the swap the new copy is checked: every integer column is 0, redacted (null) or a multiple of
the rounding base above the disclosure threshold, unless its description says it is an organisational
count or not a count; every ``X_status`` agrees with ``X``; no column may be named like an identifier
or a pseudonym; no text may look like an NHS number, a postcode or a token. A copy that fails is not
published, and the previous one stays.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.lock import warehouse_lock
from flows.warehouse import bound, utc_now
from sprx.settings import DBT_PROJECT_DIR, get_settings

# The schema of the pipeline's warehouse that analysts get, and its name in their copy.
PUBLISHED_SCHEMA = "published"
# The analysts' database file, inside a release.
ANALYTICS_FILE = "analytics.duckdb"
# The version of the published tables' layout (names, grains, columns); raised when it changes.
# 2: area x period funnel tables, _status columns, organisational counts unredacted, data_coverage.
SCHEMA_VERSION = 2
# DuckDB storage format of analytics.duckdb: readable by DuckDB 1.1 and every later 1.x and 2.x.
STORAGE_VERSION = "v1.1.0"
# The entries of published/ that analysts use, each a symlink through `current` to the release's own.
RELEASE_ENTRIES = (ANALYTICS_FILE, "parquet", "csv", "report", "manifest.json")
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
# A CSV text cell that a spreadsheet would run as a formula: one starting with = + - @ or a control
# character (tab, carriage return, newline), also after leading spaces (Excel and LibreOffice skip them).
FORMULA_PREFIX = r"^[ ]*[=+\-@\t\r\n]"
# Descriptions that mark an integer column as not subject to the small-number rule (see
# dbt_project/models/published/_published__models.yml): files, rows and sessions, ids and days.
NOT_REDACTED_PREFIXES = ("Organisational count (not redacted)", "Not a count")
# The values of a `<figure>_status` column.
STATUSES = ("shown", "redacted", "not_applicable")
INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                           "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"})


class PublicationRefused(RuntimeError):
    """The new copy broke disclosure control or held something like an identifier, or the last build did
    not complete; nothing was published."""


def check_last_build(warehouse: Path) -> str:
    """The run id of the last build if it completed; else PublicationRefused saying what happened to it.

    A build that failed, or was killed (recorded "running", or "abandoned" once the next stage found it),
    may have replaced some published tables and not others: that schema is never copied to analysts."""
    with bound(duckdb.connect(str(warehouse))) as connection:
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
    release: str = ""

    def describe(self) -> str:
        """One line for people."""
        return (f"Published {len(self.tables)} table(s) to {self.folder} at {self.published_at} "
                f"({sum(self.tables.values())} rows; analytics.duckdb, parquet/, csv/, report/) in {self.seconds:.1f}s")


def disclosure_rule() -> tuple[int, int]:
    """(threshold, rounding) from the dbt project's vars: the one place the rule is set."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    variables = project["vars"]
    return int(variables["disclosure_threshold"]), int(variables["disclosure_rounding"])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def current_models(warehouse: Path) -> set[str] | None:
    """The published models of the last build (dbt's manifest beside the warehouse), or None when there is none.

    dbt leaves the table of a model that was renamed or removed in place; only current models are published."""
    manifest = warehouse.parent / "dbt" / "target" / "manifest.json"
    if not manifest.exists():
        return None
    nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"].values()
    return {node.get("alias") or node["name"] for node in nodes
            if node["resource_type"] == "model" and node.get("schema") == PUBLISHED_SCHEMA}


def _published_tables(connection: duckdb.DuckDBPyConnection, catalog: str, only: set[str] | None = None) -> list[str]:
    rows = connection.execute(
        "select table_name from information_schema.tables where table_catalog = ? and table_schema = ? "
        "order by table_name", [catalog, PUBLISHED_SCHEMA]).fetchall()
    return [name for (name,) in rows if only is None or name in only]


def _comments(connection: duckdb.DuckDBPyConnection, catalog: str, table: str) -> tuple[str | None, dict[str, str]]:
    """The table's description and its columns' (COMMENTs), from catalog."""
    found = connection.execute(
        "select comment from duckdb_tables() where database_name = ? and schema_name = ? and table_name = ?",
        [catalog, PUBLISHED_SCHEMA, table]).fetchone()
    columns = dict(connection.execute(
        "select column_name, comment from duckdb_columns() where database_name = ? and schema_name = ? "
        "and table_name = ? and comment is not null", [catalog, PUBLISHED_SCHEMA, table]).fetchall())
    return (found[0] if found else None), columns


def _copy_comments(connection: duckdb.DuckDBPyConnection, target_catalog: str, table: str) -> None:
    """Carry the table's and its columns' descriptions (dbt persist_docs) into the analysts' copy."""
    target = f"{target_catalog}.{PUBLISHED_SCHEMA}.{_quote(table)}"
    table_comment, column_comments = _comments(connection, "warehouse", table)
    if table_comment:
        connection.execute(f"comment on table {target} is {_literal(table_comment)}")
    for column, comment in column_comments.items():
        connection.execute(f"comment on column {target}.{_quote(column)} is {_literal(comment)}")


def _formula_safe(table: pa.Table) -> pa.Table:
    """Prefix with an apostrophe every text cell a spreadsheet would read as a formula."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.match_substring_regex(column, FORMULA_PREFIX), False)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _pandas_metadata(table: pa.Table) -> bytes:
    """pandas metadata asking pandas to read integer columns as nullable Int64 (not float64 when one is null)."""
    columns = []
    for item in table.schema:
        if pa.types.is_integer(item.type):
            numpy_type, pandas_type = "Int64", "int64"
        elif pa.types.is_floating(item.type):
            numpy_type, pandas_type = "float64", "float64"
        elif pa.types.is_boolean(item.type):
            numpy_type, pandas_type = "boolean", "bool"
        else:
            numpy_type, pandas_type = "object", "object"
        columns.append({"name": item.name, "field_name": item.name, "pandas_type": pandas_type,
                        "numpy_type": numpy_type, "metadata": None})
    return json.dumps({"index_columns": [], "column_indexes": [], "columns": columns,
                       "creator": {"library": "sprx"}, "pandas_version": "2.2.0"}).encode()


def _write_parquet(arrow: pa.Table, path: Path, table_comment: str | None, column_comments: dict[str, str]) -> None:
    """Parquet with each column's description as field metadata and the table's as file metadata."""
    fields = []
    for item in arrow.schema:
        if pa.types.is_timestamp(item.type) and item.type.tz is not None:
            item = item.with_type(pa.timestamp(item.type.unit, tz="UTC"))  # the same instant, named UTC
        if column_comments.get(item.name):
            item = item.with_metadata({b"description": column_comments[item.name].encode()})
        fields.append(item)
    metadata = {b"pandas": _pandas_metadata(arrow)}
    if table_comment:
        metadata[b"description"] = table_comment.encode()
    arrow = arrow.cast(pa.schema(fields)).replace_schema_metadata(metadata)
    pq.write_table(arrow, path, compression="zstd")


@task(persist_result=False)
def export_release(warehouse: Path, staging: Path) -> dict[str, int]:
    """Copy the warehouse's published schema into staging/: analytics.duckdb, parquet/, csv/."""
    (staging / "parquet").mkdir(parents=True)
    (staging / "csv").mkdir()
    counts: dict[str, int] = {}
    connection = bound(duckdb.connect())  # it writes analytics.duckdb: bounded like every pipeline connection
    try:
        connection.execute(f"attach {_literal(str(warehouse))} as warehouse (read_only)")
        connection.execute(f"attach {_literal(str(staging / ANALYTICS_FILE))} as analytics "
                           f"(storage_version {_literal(STORAGE_VERSION)})")
        tables = _published_tables(connection, "warehouse", current_models(warehouse))
        if not tables:
            raise PublicationRefused(f"the warehouse has no {PUBLISHED_SCHEMA} tables: run `sprx build` first")
        connection.execute(f"create schema analytics.{PUBLISHED_SCHEMA}")
        for table in tables:
            target = f"analytics.{PUBLISHED_SCHEMA}.{_quote(table)}"
            # rows in the order of the table's grain: its leading columns are its key
            connection.execute(f"create table {target} as select * from "
                               f"warehouse.{PUBLISHED_SCHEMA}.{_quote(table)} order by all")
            _copy_comments(connection, "analytics", table)
            counts[table] = connection.execute(f"select count(*) from {target}").fetchone()[0]
            arrow = connection.sql(f"select * from {target}").to_arrow_table()
            table_comment, column_comments = _comments(connection, "analytics", table)
            _write_parquet(arrow, staging / "parquet" / f"{table}.parquet", table_comment, column_comments)
            pa_csv.write_csv(_formula_safe(arrow), staging / "csv" / f"{table}.csv")
        connection.execute("detach warehouse")
        connection.execute("checkpoint analytics")
        connection.execute("detach analytics")
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
            "select schema_name, table_name, column_name, data_type, coalesce(comment, '') from duckdb_columns() "
            "where database_name = current_database() and not internal order by schema_name, table_name, column_index"
        ).fetchall()
        names = {(schema, table, column) for schema, table, column, _, _ in columns}
        for schema, table, column, data_type, comment in columns:
            place = f"{schema}.{table}.{column}"
            relation = f"{_quote(schema)}.{_quote(table)}"
            if any(word in column.lower() for word in FORBIDDEN_COLUMN_WORDS):
                problems.append(f"{place}: a column named like an identifier")
            if data_type.upper() in INTEGER_TYPES and not comment.startswith(NOT_REDACTED_PREFIXES):
                broken = connection.execute(
                    f"select count(*) from {relation} where {_quote(column)} between 1 and {threshold} "
                    f"or {_quote(column)} % {rounding} != 0").fetchone()[0]
                if broken:
                    problems.append(f"{place}: {broken} count(s) from 1 to {threshold} or not a multiple of {rounding}")
            if column.endswith("_status") and (schema, table, column.removesuffix("_status")) in names:
                figure = _quote(column.removesuffix("_status"))
                wrong = connection.execute(
                    f"select count(*) from {relation} where {_quote(column)} is null "
                    f"or {_quote(column)} not in ('shown', 'redacted', 'not_applicable') "
                    f"or ({_quote(column)} = 'shown') != ({figure} is not null)").fetchone()[0]
                if wrong:
                    problems.append(f"{place}: {wrong} status(es) that disagree with the figure")
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


@task(persist_result=False)
def write_report(staging: Path) -> list[str]:
    """The report (report/index.html and report/report.pdf) from the release's own tables."""
    from flows.report import build_report

    return build_report(staging / ANALYTICS_FILE, staging / "report")


def last_build(warehouse: Path) -> dict[str, str | None]:
    """The last completed build recorded in the warehouse (run id, finish time), for the manifest."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        present = connection.execute(
            "select count(*) from duckdb_tables() where schema_name = 'audit' and table_name = 'pipeline_runs'"
        ).fetchone()[0]
        row = connection.execute(
            "select run_id, finished_at from audit.pipeline_runs where stage = 'build' and status = 'completed' "
            "order by finished_at desc limit 1").fetchone() if present else None
    if not row:
        return {"run_id": None, "finished_at": None}
    return {"run_id": row[0], "finished_at": row[1].replace(tzinfo=dt.UTC).isoformat() if row[1] else None}


def data_end_dates(analytics: Path) -> dict[str, dict[str, str | None]]:
    """Per source: the first and last date its data covers and its newest extract (published.data_coverage)."""
    with duckdb.connect(str(analytics), read_only=True) as connection:
        present = connection.execute(
            "select count(*) from duckdb_tables() where schema_name = ? and table_name = 'data_coverage'",
            [PUBLISHED_SCHEMA]).fetchone()[0]
        if not present:
            return {}
        rows = connection.execute(
            f"select source, first_date_covered, last_date_covered, last_extract_date "
            f"from {PUBLISHED_SCHEMA}.data_coverage order by source").fetchall()
    return {source: {"first_date_covered": first and first.isoformat(), "last_date_covered": last and last.isoformat(),
                     "last_extract_date": extract and extract.isoformat()} for source, first, last, extract in rows}


def _sha256(path: Path) -> str:
    """The file's SHA-256 in base64 (not hex: a long hex run is what the release checks treat as a token)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under root to disk, so that a crash after the swap loses nothing."""
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_manifest(staging: Path, summary: PublishSummary, build: dict, coverage: dict) -> None:
    """manifest.json inside the release: what it is, where it came from, its data's end dates, its files."""
    threshold, rounding = disclosure_rule()
    files = {str(path.relative_to(staging)): {"bytes": path.stat().st_size, "sha256_base64": _sha256(path)}
             for path in sorted(staging.rglob("*")) if path.is_file()}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "release": summary.release,
        "published_at": summary.published_at,
        "build": build,
        "data_end_dates": coverage,
        "duckdb_storage_version": STORAGE_VERSION,
        "tables": summary.tables,
        "disclosure": {
            "threshold": threshold,
            "rounding": rounding,
            "rule": f"counts of people and of events about people from 1 to {threshold} are redacted (empty, "
                    f"status 'redacted'); other such counts are rounded to the nearest {rounding}; a count is also "
                    f"redacted where a published total minus visible parts would give a redacted count back; "
                    f"rates and averages are computed from unrounded values and redacted when their denominator "
                    f"is {threshold} or fewer (a rate also when its numerator is a redacted count); organisational "
                    f"counts (files, rows of a file, sessions) are published as they are",
        },
        "files": files,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _point(link: Path, target: str) -> None:
    """Make link a symlink to target, atomically (a new symlink renamed over the old entry)."""
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_dir() and not link.is_symlink():  # a folder of the pre-release layout: moved aside first
        link.rename(link.with_name(f".previous-{link.name}-{uuid.uuid4().hex[:8]}"))
    temporary = link.with_name(f".link-{link.name}-{uuid.uuid4().hex[:8]}")
    os.symlink(target, temporary)
    os.replace(temporary, link)


@task(persist_result=False)
def swap_release(staging: Path, published: Path, summary: PublishSummary, build: dict) -> None:
    """Write the manifest inside the release, then make it current by one rename of published/current."""
    write_manifest(staging, summary, build, data_end_dates(staging / ANALYTICS_FILE))
    release = published / "releases" / summary.release
    staging.rename(release)
    _fsync_tree(release)
    # The fixed entries already point through `current` after the first publish (a no-op then); made
    # first, so that even the first swap (or one from the pre-release layout) never mixes two copies.
    for entry in RELEASE_ENTRIES:
        _point(published / entry, f"current/{entry}")
    current = published / "current"
    previous = os.readlink(current) if current.is_symlink() else None
    _point(current, f"releases/{summary.release}")  # the swap: one rename
    clear_leftovers(published, previous)


def clear_leftovers(published: Path, previous: str | None = None) -> None:
    """Remove what a killed publish left (half-written releases, old-layout files) and every release but the
    current one and `previous`, the one the swap just replaced.

    That one stays until the next publish: a reader that resolved `analytics.duckdb` through `current` an
    instant before the swap opens that release's file after it, and must still find it (the fault suite's
    reader, opening the copy afresh for each query, once did not)."""
    current = os.readlink(published / "current") if (published / "current").is_symlink() else None
    releases = published / "releases"
    if releases.is_dir():
        for path in releases.iterdir():
            if f"releases/{path.name}" not in (current, previous):
                shutil.rmtree(path, ignore_errors=True)
    for path in published.iterdir():
        if path.name.startswith((".release-", ".staging-", ".previous-", ".link-")):
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)


@flow(name="publish", persist_result=False)
def publish() -> PublishSummary:
    """Copy the warehouse's published schema to a new release for analysts, checked, and make it current in one rename."""
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
        (published / "releases").mkdir(parents=True, exist_ok=True)
        clear_leftovers(published)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        release = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
        staging = published / "releases" / f".staging-{release}"
        staging.mkdir()
        try:
            tables = export_release(settings.warehouse_path, staging)
            check_release(staging)
            write_report(staging)
            summary = PublishSummary(published_at=now.isoformat(), folder=str(published), tables=tables,
                                     release=release)
            build = last_build(settings.warehouse_path)
            build["run_id"] = build_run
            swap_release(staging, published, summary, build)
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
