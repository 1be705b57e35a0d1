"""The pipeline's own DuckDB warehouse: the raw zone and the audit tables.

Only the pipeline opens this file (read-write), and only its account may read it (0600, whatever the
umask: `sprx.permissions`). Analysts get a published copy. Raw tables hold
pseudonymised rows in the current state of each source:

- EMIS: the latest full-refresh snapshot of each practice (an older export never replaces it);
- SystmOne: the latest version of every RowIdentifier, deletions kept as tombstones so that a
  late-arriving older extract cannot bring a deleted row back;
- ambulance: the latest version of every incident;
- VCSE: one row per service, session, activity and attendee; a corrected sheet replaces every
  session (service, session date, activity) it restates, whole, whether its rows link to a person
  or not; sheets received at the same moment merge person by person.

Every version decision compares extract dates (or, for VCSE, the time the sheet was received), so
loading the same files in any order gives the same warehouse.

``audit.pipeline_runs`` has one row per stage of a run (ingest, build, publish): when it started
and finished, how it ended and its counts. ``sprx status`` reads it with ``audit.file_loads``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from pathlib import Path

import duckdb

from sprx.permissions import private_dir, private_file, private_umask
from sprx.settings import Settings, get_settings

DDL = """
create schema if not exists audit;
create schema if not exists raw;
create sequence if not exists audit.file_id_sequence;

create table if not exists audit.file_loads (
    file_id bigint primary key,          -- one row per delivered file (a SystmOne folder or .zip is one file)
    source varchar not null,             -- emis, systmone, ambulance or vcse
    path varchar not null,               -- relative to landing/
    sha256 varchar not null,             -- of the file's bytes (of a folder: of its files' names and bytes)
    organisation_code varchar,           -- practice ODS code, trust ODS code, or VCSE service id
    extract_date date,                   -- from the file name (VCSE: the date received)
    received_at timestamp not null,      -- when the file arrived in landing/ (UTC)
    loaded_at timestamp,                 -- when its load was recorded, in its transaction (UTC)
    rows_received bigint not null,       -- data rows taken in (header, title, blank and totals rows excluded)
    rows_loaded bigint not null,         -- rows that passed their contract
    rows_rejected bigint not null,       -- rows quarantined in audit.rejected_rows
    status varchar not null,             -- loaded, rejected, held, duplicate or superseded
    message varchar                      -- what happened, in plain English; never an identifier
);
-- Added after the first release: ALTER keeps an existing warehouse's rows (and gives a new one the same
-- column order).
alter table audit.file_loads add column if not exists run_id varchar;         -- the ingest run that recorded it
alter table audit.file_loads add column if not exists archived_path varchar;  -- relative to archive/, once kept there

create table if not exists audit.pipeline_runs (
    run_id varchar not null,             -- the Prefect flow run id (any unique text outside Prefect)
    stage varchar not null,              -- ingest, build or publish
    started_at timestamp not null,       -- UTC
    finished_at timestamp,               -- UTC; null while the stage is running
    status varchar not null,             -- running, completed, failed or abandoned (its process died)
    detail varchar,                      -- JSON object of counts and flags; never an identifier
    primary key (run_id, stage)
);

create table if not exists audit.duckdb_settings (
    stage varchar primary key,           -- ingest or build: the last one to run records what DuckDB reported in it
    memory_limit varchar not null,       -- DuckDB's memory_limit as it reports it (e.g. 5.8 GiB): SPRX_DUCKDB_MEMORY_LIMIT
    threads integer not null,            -- DuckDB's threads: SPRX_DUCKDB_THREADS
    temp_directory varchar not null,     -- where DuckDB spills: $SPRX_HOME/tmp/duckdb
    recorded_at timestamp not null       -- UTC
);

create table if not exists audit.pseudonymisation_key (
    fingerprint varchar not null,        -- HMAC-SHA256 of a fixed label under the key: tells keys apart, reveals nothing
    recorded_at timestamp not null       -- when this warehouse first loaded under it (UTC)
);

create table if not exists audit.rejected_rows (
    file_id bigint not null,             -- audit.file_loads.file_id
    path varchar not null,               -- the file (for a SystmOne delivery, the table inside it)
    row_number bigint not null,          -- the row as a person sees it in a spreadsheet
    field varchar not null,              -- the column at fault, or "row"
    reason varchar not null,             -- plain English: what is wrong and how to fix it
    value varchar                        -- the offending value, only when it is not an identifier
);

create table if not exists raw.emis_patients (
    practice_code varchar not null,
    emis_number varchar not null,
    extract_date date not null,
    file_id bigint not null,
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    gender varchar,
    extract_age smallint,
    extract_age_band varchar
);

create table if not exists raw.emis_events (
    practice_code varchar not null,
    emis_number varchar not null,
    extract_date date not null,
    file_id bigint not null,
    row_number bigint not null,
    event_date date not null,
    snomed_code varchar,
    code_term varchar,
    consultation_type varchar,
    appointment_status varchar,
    event_age smallint,
    event_age_band varchar
);

-- The SystmOne tables hold one row per (practice_code, row_identifier), the latest version (DROPPED_KEYS).
create table if not exists raw.systmone_patients (
    practice_code varchar not null,
    row_identifier varchar not null,
    extract_date date not null,
    file_id bigint not null,
    is_removed boolean not null,
    patient_id varchar,
    registered_practice_code varchar,
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    gender varchar,
    extract_age smallint,
    extract_age_band varchar
);

create table if not exists raw.systmone_codes (
    practice_code varchar not null,
    row_identifier varchar not null,
    extract_date date not null,
    file_id bigint not null,
    is_removed boolean not null,
    patient_id varchar,
    event_date date,
    snomed_code varchar,
    ctv3_code varchar,
    ctv3_text varchar,
    organisation_code varchar
);

create table if not exists raw.systmone_appointments (
    practice_code varchar not null,
    row_identifier varchar not null,
    extract_date date not null,
    file_id bigint not null,
    is_removed boolean not null,
    patient_id varchar,
    appointment_start_at timestamp,      -- UTC
    status varchar,
    clinician_type varchar,
    organisation_code varchar
);

create table if not exists raw.ambulance_incidents (
    trust_code varchar not null,
    incident_id varchar not null,
    extract_date date not null,
    file_id bigint not null,
    call_received_at timestamp not null, -- UTC
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    sex varchar,
    call_age smallint,
    call_age_band varchar,
    arp_category varchar not null,
    call_outcome varchar not null,
    conveyed_to varchar,
    is_communal_address boolean not null,
    trust_frequent_caller_flag boolean,
    primary key (trust_code, incident_id)
);

create table if not exists raw.vcse_attendances (
    service_id varchar not null,
    session_date date not null,
    activity_key varchar not null,       -- the activity, normalised
    attendee_key varchar not null,       -- keyed pseudonym of what the sheet says about the person
    received_at timestamp not null,
    file_id bigint not null,
    row_number bigint not null,
    activity varchar,
    attended boolean not null,
    is_linkable boolean not null,
    linkage_basis varchar,
    nhs_number_token varchar,
    name_dob_token varchar,
    surname_dob_postcode_token varchar,
    postcode_token varchar,
    lsoa21_code varchar,
    imd_decile tinyint,
    session_age smallint,
    session_age_band varchar,
    wellbeing_score tinyint,             -- ONS4 life satisfaction, 0-10
    primary key (service_id, session_date, activity_key, attendee_key)
);
-- The other ONS4 personal wellbeing answers (0-10), added after the first release.
alter table raw.vcse_attendances add column if not exists wellbeing_worthwhile tinyint;
alter table raw.vcse_attendances add column if not exists wellbeing_happiness tinyint;
alter table raw.vcse_attendances add column if not exists wellbeing_anxiety tinyint;   -- lower is better
"""

RAW_TABLES = (
    "raw.emis_patients", "raw.emis_events", "raw.systmone_patients", "raw.systmone_codes",
    "raw.systmone_appointments", "raw.ambulance_incidents", "raw.vcse_attendances",
)


# How long opening the warehouse read-write waits for a reader (such as `sprx status`) to let go, seconds.
BUSY_WAIT_SECONDS = 15.0
# How often it tries again meanwhile, seconds.
BUSY_POLL_SECONDS = 0.25
# The stages of a run that audit.pipeline_runs records.
STAGES = ("ingest", "build", "publish")
# How a stage ended (or that it has not yet); "abandoned": its process died while it was running (killed,
# power cut), found and closed by the next stage to start.
STAGE_STATUSES = ("running", "completed", "failed", "abandoned")


class WarehouseInUse(RuntimeError):
    """Another process has the DuckDB file open read-write (DuckDB allows one writer or many readers)."""


def is_busy_error(error: BaseException) -> bool:
    """True when DuckDB refused to open the file because another connection holds it: a lock held by
    another process, or (in this process) an open connection with a different configuration."""
    text = str(error)
    return isinstance(error, duckdb.Error) and ("Could not set lock" in text or "different configuration" in text)


def duckdb_settings(settings: Settings) -> dict[str, str]:
    """DuckDB's memory_limit, threads and temp_directory for a pipeline connection, as SET takes them; the
    spill folder is created owner-only (0700), because what DuckDB spills there is pieces of raw rows."""
    temp = private_dir(settings.duckdb_temp_dir)
    return {"memory_limit": settings.duckdb_memory_limit, "threads": str(settings.duckdb_threads),
            "temp_directory": str(temp)}


def bound(connection: duckdb.DuckDBPyConnection, settings: Settings | None = None, *, threads: int | None = None
          ) -> duckdb.DuckDBPyConnection:
    """Apply the memory limit, threads and spill folder of the settings (default: in force now) to a connection;
    `threads`, when given, in place of the settings' (the ingest's: `flows.load.loading_threads`)."""
    values = duckdb_settings(settings or get_settings())
    if threads is not None:
        values["threads"] = str(threads)
    for name, value in values.items():
        # DuckDB refuses to set temp_directory again (even to the same folder) once it has spilled there
        if connection.execute("select current_setting(?)", [name]).fetchone()[0] != value:
            connection.execute(f"set {name} = '{value.replace(chr(39), chr(39) * 2)}'")
    return connection


def record_duckdb_settings(connection: duckdb.DuckDBPyConnection, stage: str) -> None:
    """Record in audit.duckdb_settings the memory limit, threads and spill folder DuckDB reports for a stage's
    connection (the build records its own from dbt's connection: macros/record_duckdb_settings.sql)."""
    connection.execute("insert or replace into audit.duckdb_settings select ?, current_setting('memory_limit'), "
                       "current_setting('threads'), current_setting('temp_directory'), ?", [stage, utc_now()])


def connect(path: Path, busy_wait_seconds: float = BUSY_WAIT_SECONDS, *,
            drop_old_keys: bool = True, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """Open the pipeline's warehouse read-write, bounded by the DuckDB settings (``bound``; `threads`, when given,
    in place of the settings' threads), creating its schemas
    and tables if needed and (unless `drop_old_keys` is false: a warehouse only read before it is replaced)
    rebuilding old raw tables without the keys they no longer carry (``_drop_old_keys``).

    A reader (`sprx status`) holds the file for a moment: wait up to `busy_wait_seconds` for it, then
    raise WarehouseInUse (one line, no process details)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + busy_wait_seconds
    while True:
        try:
            with private_umask():  # a new warehouse file is the owner's alone, whatever the umask
                connection = duckdb.connect(str(path))
            break
        except duckdb.Error as error:
            if not is_busy_error(error):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseInUse(f"{path.name} is in use by another process; try again when it has finished"
                                     ) from None
            time.sleep(BUSY_POLL_SECONDS)
    for member in (path, path.with_name(path.name + ".wal")):
        private_file(member)  # and so is one made before, and its write-ahead log
    try:
        bound(connection, threads=threads)
    except BaseException:
        connection.close()
        raise
    try:
        with private_umask():  # the write-ahead log DuckDB starts on a first write
            connection.execute(DDL)
            if drop_old_keys:
                _drop_old_keys(connection)
    except BaseException:
        connection.close()
        raise
    return connection


# Primary keys no longer kept as an index, which warehouses made before 2026-11-27 (raw.emis_patients) and
# 2026-11-28 (the SystmOne tables) carry. One row per key holds by construction: an EMIS snapshot is replaced whole
# in one transaction, and a SystmOne batch deletes the rows it replaces and inserts one row per key
# (`Loader.commit_batch`); tests/test_load_semantics.py checks both, and dbt tests the SystmOne sources. The indexes cost about 4 s a practice each
# night for EMIS, and for SystmOne about half of each batch's apply and commit (benchmarks/README.md, "EMIS exports
# read ahead" and "SystmOne tables without keys").
DROPPED_KEYS = ("emis_patients", "systmone_patients", "systmone_codes", "systmone_appointments")


def _drop_old_keys(connection: duckdb.DuckDBPyConnection) -> None:
    """Rebuild each table of DROPPED_KEYS that still carries its primary key without it, rows and NOT NULLs kept,
    each in one transaction (DuckDB cannot drop a key in place)."""
    keyed = [row[0] for row in connection.execute(
        "select table_name from duckdb_constraints() where schema_name = 'raw' and constraint_type = 'PRIMARY KEY' "
        f"and table_name in ({', '.join('?' for _ in DROPPED_KEYS)}) order by table_name", list(DROPPED_KEYS)
    ).fetchall()]
    for table in keyed:
        connection.execute("begin")
        try:
            connection.execute(f"alter table raw.{table} rename to {table}_keyed")
            connection.execute(DDL)  # creates raw.<table> as it is now, without the key
            connection.execute(f"insert into raw.{table} by name select * from raw.{table}_keyed")
            connection.execute(f"drop table raw.{table}_keyed")
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise


def utc_now() -> dt.datetime:
    """Now in UTC, naive (the warehouse stores UTC timestamps without a zone), to the second."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def record_stage(connection: duckdb.DuckDBPyConnection, run_id: str, stage: str, started_at: dt.datetime,
                 finished_at: dt.datetime | None, status: str,
                 detail: Mapping[str, int | float | bool | None] | None = None) -> None:
    """Record (or update) one stage of a run in audit.pipeline_runs; the row is keyed by (run_id, stage).

    Call it with status "running" and no finished_at when a stage starts, and again with "completed" or
    "failed" when it ends. Times are UTC (naive or aware). `detail` holds counts and flags only: any other
    value is refused, so that no identifier can reach the audit trail."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)} (got {stage!r})")
    if status not in STAGE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(STAGE_STATUSES)} (got {status!r})")
    detail = dict(detail or {})
    for name, value in detail.items():
        if not isinstance(name, str) or not (value is None or isinstance(value, (int, float, bool))):
            raise TypeError(f"detail holds counts and flags only; {name!r} is {type(value).__name__}")

    def naive(moment: dt.datetime | None) -> dt.datetime | None:
        return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment and moment.tzinfo else moment

    with private_umask():  # a write-ahead log started by this write is owner-only
        _upsert_stage(connection, [run_id, stage, naive(started_at), naive(finished_at), status,
                                   json.dumps(detail, sort_keys=True)])


def _upsert_stage(connection: duckdb.DuckDBPyConnection, values: list) -> None:
    connection.execute(
        """
        insert into audit.pipeline_runs values (?, ?, ?, ?, ?, ?)
        on conflict (run_id, stage) do update set
            started_at = excluded.started_at, finished_at = excluded.finished_at,
            status = excluded.status, detail = excluded.detail
        """,
        values,
    )


def close_abandoned_runs(connection: duckdb.DuckDBPyConnection, current_run_id: str) -> int:
    """Close as "abandoned" every stage still marked running by another run; returns how many.

    Call it only while holding the warehouse lock (flows/lock.py) at the start of a stage: the lock
    means no other process is running a stage, and this process runs one stage at a time, so any
    other row still "running" belongs to a process that died."""
    return connection.execute(
        "update audit.pipeline_runs set status = 'abandoned', finished_at = ? "
        "where status = 'running' and run_id != ? returning run_id",
        [utc_now(), current_run_id]).fetchall().__len__()


def load_watermark(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """What the raw zone holds, as two numbers a build records: how many files have loaded, and when the newest
    load was recorded (microseconds since 1970, UTC). Any load changes both; a reprocess reloads every file later."""
    files, newest = connection.execute(
        "select count(*), coalesce(epoch_us(max(loaded_at)), 0) from audit.file_loads where status = 'loaded'"
    ).fetchone()
    return {"loaded_files": int(files), "newest_load_us": int(newest)}


def outstanding_work(connection: duckdb.DuckDBPyConnection) -> tuple[bool, bool]:
    """(build due, publish due): whether the marts are behind the raw zone, and the published copy behind the marts.

    A build is due when the last build did not complete (failed, killed) or the last complete full build
    (recorded with its `load_watermark`) saw other loads than the raw zone holds now, whichever run loaded
    them. A publish is due when a build completed after the last completed publish started."""
    last = connection.execute("select status from audit.pipeline_runs where stage = 'build' "
                              "order by started_at desc, run_id desc limit 1").fetchone()
    built = connection.execute(
        "select detail from audit.pipeline_runs where stage = 'build' and status = 'completed' "
        "and json_extract(detail, '$.loaded_files') is not null order by started_at desc, run_id desc limit 1"
    ).fetchone()
    now = load_watermark(connection)
    seen = json.loads(built[0]) if built else {}
    build_due = last is None or last[0] != "completed" or {key: seen.get(key) for key in now} != now
    built_at, published_at = connection.execute(
        "select max(finished_at) filter (where stage = 'build'), max(started_at) filter (where stage = 'publish') "
        "from audit.pipeline_runs where status = 'completed'").fetchone()
    publish_due = built_at is not None and (published_at is None or built_at > published_at)
    return build_due, publish_due
