"""Load one delivered file into the raw zone: parse, validate, pseudonymise, apply, account.

Each file is one DuckDB transaction: either all its accepted rows, its rejected rows and its
audit row commit together, or nothing does. SystmOne deltas, hundreds a year per practice and a few
thousand rows each, and ambulance files, weekly and each restating the four weeks before, are loaded in
batches: many deliveries of one source in one transaction, each file's rows staged apart and applied once per
table when the batch commits (the latest version of each row, as applying the files in turn would leave it: a
statement costs about 20 ms on a table of a million rows however few rows it carries). A file-level problem in a
batch, or a file that changes or disappears while it is read, undoes that file's own staged and quarantined rows
only; any other error rolls the whole batch back, and its files stay in landing/ for the next run.
An EMIS export, a practice's whole record (a million rows at ICS scale), is parsed, validated and pseudonymised
ahead in two threads (`read_ahead`) while its events are written, so that DuckDB and Python share the cores.
A file-level problem (unreadable, wrong name, a required column missing, the practice in the name not
matching the rows) rejects the file with one message; a row-level problem quarantines the row in
``audit.rejected_rows``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from flows.pseudonymise import (add_geography, age_columns, identity_tokens, london_to_utc, normalise_name,
                                verify_key)
from schemas.ambulance import validate_ambulance_incident
from schemas.emis import validate_emis
from schemas.identifiers import PRACTICE_CODE_PATTERN
from schemas.results import Validated
from schemas.context import ValidationContext
from schemas.engine import validate_files
from schemas.systmone import SystmOneAppointment, SystmOneCode, SystmOnePatient
from schemas.vcse import how_to_link, validate_vcse_attendance, why_unlinkable
from sprx.readers import ambulance as ambulance_source
from sprx.readers import emis as emis_source
from sprx.readers import systmone as systmone_source
from sprx.readers import vcse as vcse_source
from sprx.readers.frames import FeedFileError
from sprx.readers.read_ahead import map_ahead, read_ahead

# An EMIS export that would drop more than this share of a practice's registered patients is
# held until released with `sprx ingest --accept FILE` (a truncated export must not empty a list).
EMIS_MAX_DROP_SHARE = 0.20
SOURCES = ("emis", "systmone", "ambulance", "vcse")
# How far ahead of this machine's clock a time received may be (clock steps, a file system on another host).
CLOCK_TOLERANCE = dt.timedelta(minutes=5)
# The time zone extract dates are written in: a file dated today in the UK is not in the future at 00:30 BST.
EXTRACT_TIMEZONE = ZoneInfo("Europe/London")
# Sources whose deliveries are loaded in batches (`Loader.join_batch`; a batch holds one source's), and a batch's
# size: it commits when it holds this many rows or deliveries. Smaller batches lose less work to a crash; larger
# ones apply fewer times (an ambulance file's upsert per file was 90 ms of its 100 ms, a year of 52 files at 150,000
# people; in a batch, each incident restated by overlapping weeks is applied once).
BATCHED_SOURCES = ("systmone", "ambulance")
BATCH_MAX_ROWS = 500_000
BATCH_MAX_FILES = 250
# An ambulance batch's rows, fewer: its incidents are applied with an upsert on the table's key, whose memory grows
# with the rows applied at once (500,000 at ICS scale, 11 weekly files, took the ingest's peak from 729 to 1,266 MiB).
AMBULANCE_BATCH_MAX_ROWS = 100_000
# A batch keeps staged rows in memory up to this many, then appends them to its tables in DuckDB.
BATCH_FLUSH_ROWS = 100_000
# SystmOne deltas are read and validated several at a time (`Loader.read_systmone`: the contract engine's cost is
# per pass, about 10 ms for a delta's table of a few hundred rows), up to this many files or rows read at once; a
# delta larger than SYSTMONE_GROUP_MAX_BYTES on disk (a practice's first, full extract) is read in chunks as it
# loads, so that memory stays bounded.
SYSTMONE_GROUP_MAX_FILES = 100
SYSTMONE_GROUP_MAX_ROWS = 100_000
SYSTMONE_GROUP_MAX_BYTES = 8 * 1024 * 1024
# Sources whose deliveries are read, validated and pseudonymised ahead, in a second thread (`Loader.prepared_reads`),
# and the largest EMIS export, ambulance file or VCSE sheet on disk read so, whole (`Loader.read_whole`: a practice of
# 11,000 patients sends an export of about 8 MB, an ICS-sized ambulance trust a weekly file of 4.7 MB); a larger one
# is read a chunk at a time as it loads (an EMIS export's next chunks ahead of the one being written).
READ_AHEAD_SOURCES = ("systmone", "ambulance", "emis", "vcse")
WHOLE_AHEAD_MAX_BYTES = 16 * 1024 * 1024
# Small files read at once by that thread's helpers (`map_ahead`): SystmOne deltas, ambulance files, VCSE sheets.
READ_WORKERS = 2
# An EMIS export's events go into raw.emis_events this many at a time (DuckDB writes a large append as whole
# row groups: 500,000 rows at once took 16.6 s for 11.8 M rows, 100,000 at once 21.5 s).
EMIS_APPEND_ROWS = 500_000
# File ids taken from the sequence at once (`Loader._next_file_id`).
FILE_IDS_AT_ONCE = 64
# An ODS practice code (P91004), as the contracts check it: what a practice mismatch's message may quote.
PRACTICE_CODE = re.compile(PRACTICE_CODE_PATTERN)


def loading_threads(duckdb_threads: int) -> int:
    """DuckDB's threads while files load: the `duckdb_threads` allowed (SPRX_DUCKDB_THREADS) less the READ_WORKERS
    that read files ahead, at least one. Those threads parse, validate and pseudonymise the next files while DuckDB
    writes the ones before, so more DuckDB threads mostly contend with them for the CPUs (on 2 CPUs, one DuckDB
    thread saves about a seventh of the ingest's CPU time: benchmarks/README.md, "DuckDB's threads while files
    load")."""
    return max(1, duckdb_threads - READ_WORKERS)


def uk_today() -> dt.date:
    """Today's date in the UK, the latest extract date a file name may carry."""
    return dt.datetime.now(EXTRACT_TIMEZONE).date()


@dataclass(frozen=True)
class Delivery:
    """A file (or SystmOne folder) found in landing/ (or, for a reprocess, in archive/)."""

    path: Path
    relative: str  # relative to landing/, also for an archived delivery
    source: str
    sha256: str
    received_at: dt.datetime
    archived: str | None = None  # relative to archive/ when the delivery is read from there
    signature: tuple | None = None  # size and modification time when its sha256 was taken (`file_signature`)


@dataclass
class FileResult:
    """What happened to one delivery; holds counts and reasons, never an identifier."""

    relative: str
    source: str
    status: str
    rows_received: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    message: str = ""
    reasons: Counter = field(default_factory=Counter)


# One chunk of a SystmOne table as the load applies it: the table, the member it came from (for the quarantine's
# path), the rows read, their validation and the valid rows shaped as the raw table's.
SystmoneChunk = tuple[str, str, int, Validated, pl.DataFrame]
# The contract and the raw table's shape of each SystmOne table, in the order a delta's tables are loaded.
SYSTMONE_CONTRACTS = {"patient": SystmOnePatient, "code": SystmOneCode, "appointment": SystmOneAppointment}


# One chunk of an EMIS export as the load writes it: the rows read, their validation, its patients (to stage) and
# its events (as raw.emis_events rows, less the file's id).
EmisChunk = tuple[int, Validated, pl.DataFrame, pl.DataFrame]
# One chunk of a VCSE sheet as the load stages it: the rows read, their validation and the valid rows shaped as the
# stage's.
VcseChunk = tuple[int, Validated, pl.DataFrame]
# One chunk of an ambulance file as the load stages it: the rows read, their validation and the valid rows shaped
# as raw.ambulance_incidents' (less the file's own columns).
AmbulanceChunk = tuple[int, Validated, pl.DataFrame]


@dataclass
class PreparedRead:
    """A delivery read, checked, validated and pseudonymised before its turn to load, in the read-ahead thread
    (`Loader.prepared_reads`): a SystmOne delta's chunks (`SystmoneChunk`), an EMIS export's (`EmisChunk`), an
    ambulance file's (`AmbulanceChunk`) or a VCSE sheet's (`VcseChunk`).

    `chunks` hold what was read, in order; `error` is the problem that stopped the reading, raised when the load
    reaches it, after the chunks before it: what reading the file as it loads would meet. `notes`: a SystmOne
    delta's, None when it could not be opened (`error` says why); a VCSE sheet's, set once it has been read to
    its end. `headings`: the headings the VCSE service had confirmed when its sheet was read (the load reads the
    sheet again if they have changed since)."""

    relative: str
    notes: list[str] | None = None
    chunks: list | Iterator = field(default_factory=list)
    error: Exception | None = None
    headings: Mapping[str, str | None] | None = None

    def replay(self) -> Iterator:
        yield from self.chunks
        if self.error is not None:
            raise self.error


class HeldFile(Exception):
    """A file that would change too much is held, not loaded."""


class Superseded(Exception):
    """A file older than what the warehouse already holds."""


class FileChanged(Exception):
    """The file changed while it was read (its sender is still writing it): nothing of it was recorded."""


def file_signature(path: Path) -> tuple:
    """Size, modification time and inode of a file, or of a folder and each file in it: what changes when
    anything writes to it."""
    def one(member: Path) -> tuple:
        status = member.stat()
        return member.name, status.st_size, status.st_mtime_ns, status.st_ino

    if path.is_dir():
        return (one(path), *sorted(one(member) for member in path.iterdir()))
    return one(path)


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's file names and bytes in name order."""
    digest = hashlib.sha256()
    paths = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for member in paths:
        if path.is_dir():
            digest.update(member.name.encode("utf-8") + b"\0")
        with open(member, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# SystmOne table -> its raw table.
SYSTMONE_TABLES = {"patient": "raw.systmone_patients", "code": "raw.systmone_codes",
                   "appointment": "raw.systmone_appointments"}
# A batch's table (`batch_<name>`) -> the raw table it is applied to, and the column that holds the organisation
# in the file name (a practice, an ambulance trust).
BATCH_TABLES = {**{table: (target, "practice_code") for table, target in SYSTMONE_TABLES.items()},
                "ambulance": ("raw.ambulance_incidents", "trust_code")}
# Per file of a batch, its deletions of rows neither the raw table nor an earlier file of the batch holds.
_UNKNOWN_DELETIONS = """
with latest as (
    select file_id, ordinal, practice_code, row_identifier, is_removed from {staged}
    qualify row_number() over (partition by file_id, row_identifier order by row_number desc) = 1),
first_seen as (
    select practice_code, row_identifier, min(ordinal) as first_ordinal from {staged} group by all)
select latest.file_id, count(*) from latest join first_seen using (practice_code, row_identifier)
where latest.is_removed and latest.ordinal = first_seen.first_ordinal
  and not exists (select 1 from {target} as held
                  where held.practice_code = latest.practice_code and held.row_identifier = latest.row_identifier)
group by latest.file_id
"""


# Per row identifier of a practice, the row a batch applies (`Loader.commit_batch`): the latest extract date, then
# the latest file in the batch, then the last row in its file; kept only where the table holds no later extract.
_BATCH_WINNERS = """
create or replace temp table batch_winners as
with latest as (
    select * from {staged}
    qualify row_number() over (partition by practice_code, row_identifier
                               order by extract_date desc, ordinal desc, row_number desc) = 1)
select * from latest
where not exists (select 1 from {target} as held
                  where held.practice_code = latest.practice_code and held.row_identifier = latest.row_identifier
                    and held.extract_date > latest.extract_date)
"""


# Per trust and incident, the row a batch of ambulance files applies (`Loader.commit_batch`): the latest extract date,
# then the latest file in the batch, then the last row in its file; an incident already held is replaced unless it
# came from a later file.
_AMBULANCE_UPSERT = """
insert into raw.ambulance_incidents
select trust_code, incident_id, extract_date, file_id, call_received_at, nhs_number_token, name_dob_token,
       surname_dob_postcode_token, postcode_token, lsoa21_code, imd_decile, sex, call_age, call_age_band,
       arp_category, call_outcome, conveyed_to, is_communal_address, trust_frequent_caller_flag
from batch_ambulance
qualify row_number() over (partition by trust_code, incident_id
                           order by extract_date desc, ordinal desc, row_number desc) = 1
on conflict (trust_code, incident_id) do update set
    extract_date = excluded.extract_date, file_id = excluded.file_id, call_received_at = excluded.call_received_at,
    nhs_number_token = excluded.nhs_number_token, name_dob_token = excluded.name_dob_token,
    surname_dob_postcode_token = excluded.surname_dob_postcode_token, postcode_token = excluded.postcode_token,
    lsoa21_code = excluded.lsoa21_code, imd_decile = excluded.imd_decile, sex = excluded.sex,
    call_age = excluded.call_age, call_age_band = excluded.call_age_band, arp_category = excluded.arp_category,
    call_outcome = excluded.call_outcome, conveyed_to = excluded.conveyed_to,
    is_communal_address = excluded.is_communal_address,
    trust_frequent_caller_flag = excluded.trust_frequent_caller_flag
where excluded.extract_date >= ambulance_incidents.extract_date
"""


# audit.file_loads's columns, as a batch's records are written (`Loader._insert_records`).
_FILE_LOADS_SCHEMA = {
    "file_id": pl.Int64, "source": pl.String, "path": pl.String, "sha256": pl.String,
    "organisation_code": pl.String, "extract_date": pl.Date, "received_at": pl.Datetime("us"),
    "loaded_at": pl.Datetime("us"), "rows_received": pl.Int64, "rows_loaded": pl.Int64, "rows_rejected": pl.Int64,
    "status": pl.String, "message": pl.String, "run_id": pl.String, "archived_path": pl.String,
}


class _Staged(NamedTuple):
    """One file's staged rows for a batch's table, waiting in the batch; its bookkeeping columns are added when the
    batch's rows are appended (`Loader._flush`), in one pass for all its files."""

    frame: pl.DataFrame
    file_id: int
    organisation: str | None
    extract_date: dt.date | None
    ordinal: int


@dataclass
class _Batch:
    """Deliveries of one source (SystmOne deltas, or ambulance files) loaded in one open transaction, not yet
    applied to the raw tables.

    Staged rows carry their file's id, organisation, extract date and place in the batch (`ordinal`); rows wait
    in memory (`pending`) and are appended to a temporary table per table (`batch_<table>`, BATCH_TABLES) in
    bounded chunks. Quarantined rows wait the same way before audit.rejected_rows."""

    source: str
    ordinal: int = 0
    rows: int = 0
    pending: dict[str, list[_Staged]] = field(default_factory=dict)
    pending_rejected: list[pl.DataFrame] = field(default_factory=list)
    pending_rows: int = 0
    created: set[str] = field(default_factory=set)  # tables whose batch table exists
    removals: set[str] = field(default_factory=set)  # SystmOne tables with a deletion in the batch
    flushed: set[int] = field(default_factory=set)  # files with rows already appended in DuckDB
    files: dict[int, tuple[list[str], FileResult]] = field(default_factory=dict)  # file id: its notes, result
    records: dict[int, dict] = field(default_factory=dict)  # file id: its audit.file_loads row, written at commit

    @property
    def full(self) -> bool:
        max_rows = AMBULANCE_BATCH_MAX_ROWS if self.source == "ambulance" else BATCH_MAX_ROWS
        return self.rows >= max_rows or len(self.files) >= BATCH_MAX_FILES


def _with_bookkeeping(staged_files: Sequence[_Staged], organisation_column: str) -> pl.DataFrame:
    """Files' staged rows as one frame, each row with its file's organisation (in `organisation_column`), extract
    date, file id and place in the batch (one pass for the batch: a polars expression per file cost about 1 ms
    each, 2,000 a year per practice)."""
    rows = pl.concat([one.frame for one in staged_files], how="vertical_relaxed")
    bookkeeping = pl.DataFrame(
        {organisation_column: [one.organisation for one in staged_files],
         "extract_date": [one.extract_date for one in staged_files],
         "file_id": [one.file_id for one in staged_files],
         "ordinal": [one.ordinal for one in staged_files]},
        schema={organisation_column: pl.String, "extract_date": pl.Date, "file_id": pl.Int64, "ordinal": pl.Int32})
    heights = pl.Series([one.frame.height for one in staged_files], dtype=pl.UInt32)
    return rows.with_columns(bookkeeping.select(pl.all().repeat_by(heights).explode()).get_columns())


class Loader:
    """Loads deliveries into one open warehouse connection."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, key: bytes, *,
                 emis_max_drop_share: float = EMIS_MAX_DROP_SHARE, run_id: str | None = None,
                 home: Path | None = None) -> None:
        self.connection = connection
        self.key = key
        self.emis_max_drop_share = emis_max_drop_share
        self.run_id = run_id  # recorded on every audit.file_loads row this loader writes
        self.home = home  # SPRX_HOME, where VCSE services' confirmed headings are remembered (None: none are)
        self._columns: dict[str, list[str]] = {}  # a raw table's columns, read once
        self._batch: _Batch | None = None  # the open batch (SystmOne deltas, or ambulance files), if any
        # what audit.file_loads holds, read once and kept up to date by `_record` (a query a file cost 1 to 2 ms
        # each, 800 files a year at 150,000 people); forgotten at a rollback (`_forget_recorded`)
        self._loaded_by_sha256: dict[str, str] | None = None  # the first path loaded with each sha256
        self._held_paths: set[str] | None = None  # paths with a held record
        self._file_ids: list[int] = []  # file ids taken from the sequence, not yet used
        verify_key(connection, key)  # tokens under another key would link no one: KeyMismatchError

    # --- bookkeeping -----------------------------------------------------------------------

    def _one(self, sql: str, parameters: list | None = None) -> tuple:
        """The first row of a query, consuming the whole result (DuckDB 2 needs it finished)."""
        rows = self.connection.execute(sql, parameters or []).fetchall()
        return rows[0] if rows else None

    def already_loaded(self, delivery: Delivery) -> bool:
        """True when this path with these bytes has been recorded before, or in the open batch (rerunning changes
        nothing; a held file waits for `--accept`)."""
        if self._batch is not None and any(record["path"] == delivery.relative and record["sha256"] == delivery.sha256
                                           for record in self._batch.records.values()):
            return True
        return self._one(
            "select count(*) from audit.file_loads where path = ? and sha256 = ?",
            [delivery.relative, delivery.sha256],
        )[0] > 0

    def recorded_status(self, delivery: Delivery) -> str | None:
        """The status recorded for this path with these bytes (the latest), or None when never seen."""
        row = self._one(
            "select status from audit.file_loads where path = ? and sha256 = ? order by file_id desc limit 1",
            [delivery.relative, delivery.sha256],
        )
        return row[0] if row else None

    def recorded_statuses(self, deliveries: Sequence[Delivery]) -> list[str | None]:
        """`recorded_status` of each delivery, in one query."""
        wanted = pl.DataFrame({"path": [delivery.relative for delivery in deliveries],
                               "sha256": [delivery.sha256 for delivery in deliveries]},
                              schema={"path": pl.String, "sha256": pl.String})
        self.connection.register("wanted_files", wanted.to_arrow())
        try:
            latest = {(path, sha256): status for path, sha256, status in self.connection.execute(
                "select path, sha256, arg_max(status, file_id) from audit.file_loads "
                "join wanted_files using (path, sha256) group by path, sha256").fetchall()}
        finally:
            self.connection.unregister("wanted_files")
        return [latest.get((delivery.relative, delivery.sha256)) for delivery in deliveries]

    def mark_archived(self, archived: Sequence[tuple[Delivery, str | None]]) -> None:
        """Record where in archive/ each delivery (this path with these bytes) is kept (None: nowhere), in one
        statement (an update a file cost about 3 ms each)."""
        if not archived:
            return
        marks = pl.DataFrame({"path": [delivery.relative for delivery, _ in archived],
                              "sha256": [delivery.sha256 for delivery, _ in archived],
                              "archived_path": [path for _, path in archived]},
                             schema={"path": pl.String, "sha256": pl.String, "archived_path": pl.String})
        self.connection.register("archive_marks", marks.to_arrow())
        try:
            self.connection.execute(
                "update audit.file_loads set archived_path = archive_marks.archived_path from archive_marks "
                "where file_loads.path = archive_marks.path and file_loads.sha256 = archive_marks.sha256 "
                "and file_loads.status <> 'held'")
        finally:
            self.connection.unregister("archive_marks")

    def _duplicate_of(self, delivery: Delivery) -> str | None:
        """The first path loaded with these bytes, if any: read from audit.file_loads (and the open batch's records)
        once, then kept up to date by `_record` (a query a file cost about 2 ms, 800 files a year at 150,000
        people), forgotten at a rollback."""
        if self._loaded_by_sha256 is None:
            self._loaded_by_sha256 = dict(self.connection.execute(
                "select sha256, arg_min(path, file_id) from audit.file_loads where status = 'loaded' "
                "group by sha256").fetchall())
            for record in (self._batch.records.values() if self._batch is not None else ()):
                if record["status"] == "loaded":  # later file ids than any committed
                    self._loaded_by_sha256.setdefault(record["sha256"], record["path"])
        return self._loaded_by_sha256.get(delivery.sha256)

    def _record(self, delivery: Delivery, result: FileResult, *, organisation: str | None,
                extract_date: dt.date | None, file_id: int | None = None) -> int:
        """Record what happened to a delivery in audit.file_loads, in its transaction; in a batch, kept with the
        batch and written when it commits, all in one statement (a statement a file cost about 1.5 ms)."""
        if file_id is None:
            file_id = self._next_file_id()
        record = {"file_id": file_id, "source": delivery.source, "path": delivery.relative,
                  "sha256": delivery.sha256, "organisation_code": organisation, "extract_date": extract_date,
                  "received_at": delivery.received_at, "loaded_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                  "rows_received": result.rows_received, "rows_loaded": result.rows_loaded,
                  "rows_rejected": result.rows_rejected, "status": result.status, "message": result.message,
                  "run_id": self.run_id, "archived_path": delivery.archived}
        if self._batch is not None:
            self._batch.records[file_id] = record
        else:  # one row: its values as parameters (a frame registered for one row cost several times more)
            self.connection.execute(f"insert into audit.file_loads ({', '.join(record)}) "
                                    f"values ({', '.join('?' * len(record))})", list(record.values()))
        if result.status == "loaded" and self._loaded_by_sha256 is not None:
            self._loaded_by_sha256.setdefault(delivery.sha256, delivery.relative)
        if result.status == "held" and self._held_paths is not None:
            self._held_paths.add(delivery.relative)
        return file_id

    def _insert_records(self, records: Sequence[dict]) -> None:
        """Write a batch's audit.file_loads rows, in one statement."""
        frame = pl.DataFrame(list(records), schema=_FILE_LOADS_SCHEMA)
        self.connection.register("file_records", frame.to_arrow())
        try:
            self.connection.execute(f"insert into audit.file_loads ({', '.join(_FILE_LOADS_SCHEMA)}) "
                                    f"select {', '.join(_FILE_LOADS_SCHEMA)} from file_records")
        finally:
            self.connection.unregister("file_records")

    def _next_file_id(self) -> int:
        """The next file id from audit.file_id_sequence, taken FILE_IDS_AT_ONCE at a time (unused ones are gaps)."""
        if not self._file_ids:
            self._file_ids = sorted(row[0] for row in self.connection.execute(
                f"select nextval('audit.file_id_sequence') from range({FILE_IDS_AT_ONCE})").fetchall())
        return self._file_ids.pop(0)

    def _held(self) -> set[str]:
        if self._held_paths is None:
            self._held_paths = {row[0] for row in self.connection.execute(
                "select distinct path from audit.file_loads where status = 'held'").fetchall()}
        return self._held_paths

    def _forget_recorded(self) -> None:
        """After a rollback: what was read of audit.file_loads is read again, and file ids are taken afresh (the ones
        held were taken in a transaction that may be the one undone; unused ones are gaps)."""
        self._loaded_by_sha256 = None
        self._held_paths = None
        self._file_ids = []

    # --- entry point -----------------------------------------------------------------------

    def load(self, delivery: Delivery, *, accept: bool = False, read: PreparedRead | None = None) -> FileResult:
        """Load one delivery in one transaction (or in the open batch) and record what happened.

        A SystmOne delta or an ambulance file loaded outside a batch is a batch of one. `read`: the delivery as
        `prepared_reads` read it (None: it is read now)."""
        batched = delivery.source in BATCHED_SOURCES
        if read is not None and read.relative != delivery.relative:
            raise RuntimeError(f"{read.relative} was read for the load of {delivery.relative}")
        if batched and self._batch is None:
            self.begin_batch(delivery.source)
            try:
                result = self.load(delivery, accept=accept, read=read)
            except BaseException:
                self.rollback_batch()
                raise
            self.commit_batch()
            return result
        if self._batch is not None and self._batch.source != delivery.source:
            raise RuntimeError(f"a {delivery.source} file cannot join a batch of {self._batch.source} files: "
                               "commit it first")
        original = self._duplicate_of(delivery)
        if original is not None and original != delivery.relative:
            result = FileResult(delivery.relative, delivery.source, "duplicate",
                                message=f"the same bytes were already loaded from {original}; nothing changed")
            try:  # who sent it still counts for `sprx status`
                organisation, extract_date = self._identify(delivery)
            except FeedFileError:
                organisation, extract_date = None, None
            self._begin()
            self._record(delivery, result, organisation=organisation, extract_date=extract_date)
            self._commit()
            return result
        organisation, extract_date = None, None
        self._begin()
        file_id = None
        try:
            file_id = self._next_file_id()
            organisation, extract_date = self._identify(delivery)
            if delivery.source == "systmone":
                result = self._load_systmone(delivery, file_id, extract_date, organisation, read)
            elif delivery.source == "ambulance":
                result = self._load_ambulance(delivery, file_id, extract_date, organisation, read)
            elif delivery.source == "emis":
                result = self._load_emis(delivery, file_id, extract_date, organisation, accept, read)
            else:
                result = self._load_vcse(delivery, file_id, extract_date, organisation, read)
            if delivery.relative in self._held():
                self.connection.execute("delete from audit.file_loads where path = ? and status = 'held'",
                                        [delivery.relative])
                self._held_paths.discard(delivery.relative)
            self._check_unchanged(delivery)
            self._record(delivery, result, organisation=organisation, extract_date=extract_date, file_id=file_id)
            self._commit()
            return result
        except (FeedFileError, HeldFile, Superseded) as problem:
            self._rollback(file_id)
            self._check_unchanged(delivery)  # a verdict on half a file is no verdict
            # by kind, subclasses included (the VCSE reader's HeaderProblem is a FeedFileError)
            status = "held" if isinstance(problem, HeldFile) else (
                "superseded" if isinstance(problem, Superseded) else "rejected")
            result = FileResult(delivery.relative, delivery.source, status, message=str(problem))
            if status == "rejected":
                result.reasons[str(problem)] += 1
            self._begin()
            self._record(delivery, result, organisation=organisation, extract_date=extract_date)
            self._commit()
            return result
        except (FileChanged, FileNotFoundError):
            self._rollback(file_id)  # in a batch, this file alone: the others go on
            raise
        except BaseException:
            if self._batch is not None:
                self.rollback_batch()
            else:
                self._forget_recorded()
                self.connection.execute("rollback")
            raise

    # --- transactions: one per file, or one per batch (SystmOne deltas, ambulance files) -------

    def commit(self) -> None:
        """Commit the open load transaction (a file's, or a batch's)."""
        self.connection.execute("commit")

    def _begin(self) -> None:
        if self._batch is None:
            self.connection.execute("begin")

    def _commit(self) -> None:
        if self._batch is None:
            self.commit()

    def _rollback(self, file_id: int | None) -> None:
        """Undo a file's work: its transaction, or in a batch only what it staged and quarantined."""
        self._forget_recorded()  # read again: nothing of this file is recorded
        if self._batch is None:
            self.connection.execute("rollback")
            return
        batch = self._batch
        batch.files.pop(file_id, None)
        for table, staged in batch.pending.items():
            batch.pending[table] = [one for one in staged if one.file_id != file_id]
        batch.pending_rejected = [frame for frame in batch.pending_rejected if frame.item(0, "file_id") != file_id]
        batch.pending_rows = (sum(one.frame.height for staged in batch.pending.values() for one in staged)
                              + sum(frame.height for frame in batch.pending_rejected))
        if file_id in batch.flushed:
            for table in batch.created:
                self.connection.execute(f"delete from batch_{table} where file_id = ?", [file_id])
            self.connection.execute("delete from audit.rejected_rows where file_id = ?", [file_id])

    @property
    def in_batch(self) -> bool:
        return self._batch is not None

    def join_batch(self, delivery: Delivery, after_commit: Callable[[], None] | None = None) -> None:
        """Get ready to load `delivery`: commit the open batch when the delivery cannot join it (another source,
        or the batch is full), then call `after_commit` (outside any transaction: archive what the batch took),
        and open a batch for a SystmOne delta or an ambulance file."""
        batched = delivery.source in BATCHED_SOURCES
        if self._batch is not None and (self._batch.source != delivery.source or self._batch.full):
            self.commit_batch()
            if after_commit is not None:
                after_commit()
        if batched and self._batch is None:
            self.begin_batch(delivery.source)

    def begin_batch(self, source: str) -> None:
        """Open a batch: the `source` files (SystmOne deltas, or ambulance files) loaded until `commit_batch` share
        one transaction."""
        if source not in BATCHED_SOURCES:
            raise ValueError(f"{source} files are not loaded in batches")
        if self._batch is not None:
            raise RuntimeError("a batch is already open")
        self.connection.execute("begin")
        self._batch = _Batch(source)

    def rollback_batch(self) -> None:
        """Drop the open batch and everything it loaded (its files stay unrecorded)."""
        if self._batch is not None:
            self._batch = None
            self._forget_recorded()
            self.connection.execute("rollback")

    def commit_batch(self) -> None:
        """Apply the open batch's staged rows to the raw tables and commit it (nothing when none is open).

        Per table and row (a practice's SystmOne row identifier, a trust's ambulance incident) the row applied is
        the one with the latest extract date, then the latest file in the batch, then the last row in its file,
        and only where no later extract is held: what applying each file in turn would leave (a delta never
        overrides a later one; an ambulance file replaces the incidents it restates, unless a later file has)."""
        batch = self._batch
        if batch is None:
            return
        try:
            self._flush(batch)
            unknown: Counter = Counter()
            for table in sorted(batch.created):
                if table == "ambulance":
                    self.connection.execute(_AMBULANCE_UPSERT)
                else:
                    unknown.update(self._apply_systmone(table, deletions=table in batch.removals))
                self.connection.execute(f"drop table batch_{table}")
            for file_id, count in sorted(unknown.items()):
                notes, result = batch.files[file_id]
                notes.append(f"{count} deletion(s) of rows the warehouse has not seen; kept so that they stay "
                             "deleted")
                result.message = batch.records[file_id]["message"] = "; ".join(notes)
            if batch.records:
                self._insert_records(list(batch.records.values()))
            self.commit()
        except BaseException:
            self.rollback_batch()
            raise
        self._batch = None

    def _apply_systmone(self, table: str, *, deletions: bool) -> dict[int, int]:
        """Apply a batch's staged rows of a SystmOne table (`commit_batch`); per file with a deletion (`deletions`:
        the batch has one), how many deleted rows the warehouse has not seen."""
        target = SYSTMONE_TABLES[table]
        unknown = dict(self.connection.execute(_UNKNOWN_DELETIONS.format(
            staged=f"batch_{table}", target=target)).fetchall()) if deletions else {}
        if target not in self._columns:
            self._columns[target] = [row[0] for row in self.connection.execute(f"describe {target}").fetchall()]
        # no key index (warehouse.DROPPED_KEYS): the rows replaced are deleted, then the winners inserted
        self.connection.execute(_BATCH_WINNERS.format(staged=f"batch_{table}", target=target))
        self.connection.execute(f"delete from {target} as held using batch_winners as winner "
                                "where held.practice_code = winner.practice_code "
                                "and held.row_identifier = winner.row_identifier")
        self.connection.execute(f"insert into {target} select {', '.join(self._columns[target])} from batch_winners")
        self.connection.execute("drop table batch_winners")
        return unknown

    def _add_to_batch(self, table: str | None, rows: _Staged | pl.DataFrame) -> None:
        """Queue one file's staged rows for a batch's table, or (table None) its quarantined rows."""
        batch = self._batch
        if table is None:
            batch.pending_rejected.append(rows)
            batch.pending_rows += rows.height
        else:
            batch.pending.setdefault(table, []).append(rows)
            batch.rows += rows.frame.height
            batch.pending_rows += rows.frame.height
        if batch.pending_rows >= BATCH_FLUSH_ROWS:
            self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        """Append the batch's rows waiting in memory to its tables in DuckDB."""
        for table, staged_files in batch.pending.items():
            if not staged_files:
                continue
            staged = f"batch_{table}"
            target, organisation_column = BATCH_TABLES[table]
            if table not in batch.created:  # the raw table's columns and types, and the order of the rows
                self.connection.execute(f"create or replace temp table {staged} as select *, "
                                        f"0::bigint as row_number, 0::integer as ordinal from {target} limit 0")
                batch.created.add(table)
            self._stage(staged, _with_bookkeeping(staged_files, organisation_column), first=False)
            batch.flushed.update(one.file_id for one in staged_files)
        batch.pending = {}
        if batch.pending_rejected:
            self._insert_rejected(pl.concat(batch.pending_rejected))
            batch.flushed.update(frame.item(0, "file_id") for frame in batch.pending_rejected)
            batch.pending_rejected = []
        batch.pending_rows = 0

    @staticmethod
    def _check_unchanged(delivery: Delivery) -> None:
        """Refuse to commit rows read from a file that changed since its sha256 was taken."""
        if delivery.signature is not None and file_signature(delivery.path) != delivery.signature:
            raise FileChanged(f"{delivery.relative} changed while it was read (its sender is still writing it); "
                              "nothing was recorded and it stays in landing/ for the next run")

    def _identify(self, delivery: Delivery) -> tuple[str | None, dt.date | None]:
        """Organisation and extract date from the file name (a wrong name rejects the file).

        The dates that decide which version wins (the extract date in a GP or ambulance file name, the time a
        VCSE sheet was received) are checked against the clock: one in the future would win over every later
        file, so the file is rejected."""
        if delivery.source == "vcse":
            service = vcse_source.parse_file_name(delivery.path)
            if delivery.received_at > dt.datetime.now(dt.UTC).replace(tzinfo=None) + CLOCK_TOLERANCE:
                raise FeedFileError(
                    f"its time received ({delivery.received_at:%Y-%m-%d %H:%M} UTC) is in the future; a sheet "
                    "dated ahead would replace every later correction. Put it back in landing/ to be received now")
            return service, delivery.received_at.date()
        module = {"emis": emis_source, "systmone": systmone_source, "ambulance": ambulance_source}[delivery.source]
        name = module.parse_file_name(delivery.path)
        today = uk_today()
        if name.extract_date > today:
            raise FeedFileError(
                f"the date in the file name ({name.extract_date.isoformat()}) is in the future (today is "
                f"{today.isoformat()}); a file dated ahead would win over every later one. Expected the date the "
                "extract was taken: correct the name and send it again")
        return name.organisation_code, name.extract_date

    # --- shared steps ----------------------------------------------------------------------

    def _stage(self, table: str, frame: pl.DataFrame, first: bool) -> None:
        """Put a chunk's rows in a temporary table of this transaction (the first chunk creates it)."""
        if not first:
            self._append(table, frame)
            return
        self.connection.register("batch", frame.to_arrow())
        try:
            self.connection.execute(f"create or replace temp table {table} as select * from batch")
        finally:
            self.connection.unregister("batch")

    def _append(self, table: str, frame: pl.DataFrame) -> None:
        """Insert a chunk's rows into a table (temporary, or of the warehouse), by column name."""
        self.connection.register("batch", frame.to_arrow())
        try:
            self.connection.execute(f"insert into {table} by name select * from batch")
        finally:
            self.connection.unregister("batch")

    def _quarantine(self, validated: Validated, file_id: int, path: str, result: FileResult) -> None:
        rejected = validated.rejected
        if rejected.height == 0:
            return
        result.rows_rejected += rejected.get_column("row_number").n_unique()
        for reason, count in rejected.group_by("reason").len().iter_rows():
            result.reasons[reason] += count
        frame = rejected.select(
            pl.lit(file_id, dtype=pl.Int64).alias("file_id"), pl.lit(path).alias("path"),
            "row_number", "field", "reason", pl.col("value").cast(pl.String),
        )
        if self._batch is not None:
            self._add_to_batch(None, frame)
        else:
            self._insert_rejected(frame)

    def _insert_rejected(self, frame: pl.DataFrame) -> None:
        self.connection.register("rejected_batch", frame.to_arrow())
        try:
            self.connection.execute("insert into audit.rejected_rows select * from rejected_batch")
        finally:
            self.connection.unregister("rejected_batch")

    def _check_practice(self, frame: pl.DataFrame, column: str, practice: str, label: str) -> None:
        """The practice in a GP file name must be the practice inside the file."""
        wrong = frame.filter(pl.col(column).is_not_null() & (pl.col(column) != practice))
        if wrong.height:
            first = wrong.row(0, named=True)
            # quoted only when it has a practice code's shape: a row whose values slid into the wrong columns
            # could put an identifier here, and this message is kept in audit.file_loads
            value = first[column].strip()
            said = f"says {value}" if PRACTICE_CODE.match(value) else "holds a value that is not a practice code"
            raise FeedFileError(
                f"the file name says practice {practice} but {label} on row {first['row_number']} {said}; "
                f"expected every row to belong to {practice}"
            )

    # --- EMIS: full-refresh snapshot per practice ------------------------------------------

    def _load_emis(self, delivery, file_id, extract_date, practice, accept, read: PreparedRead | None) -> FileResult:
        """Replace the practice's snapshot with this export, in this file's transaction.

        Unless the export is older than the snapshot already loaded, that snapshot is deleted first and each
        chunk's events go straight into raw.emis_events: as `read_whole` read them (`read`), or read now while the
        next chunks are read ahead (`read_ahead`); a held or rejected export rolls all of it back. An older export
        is read and checked to the end, and not applied (superseded)."""
        result = FileResult(delivery.relative, "emis", "loaded")
        current = self._one(
            "select count(*), max(extract_date) from raw.emis_patients where practice_code = ?", [practice]
        )
        superseded = current[1] is not None and current[1] > extract_date
        if not superseded:
            self.connection.execute("delete from raw.emis_patients where practice_code = ?", [practice])
            self.connection.execute("delete from raw.emis_events where practice_code = ?", [practice])
        first = True
        events_waiting: list[pl.DataFrame] = []
        prepared = read.replay() if read is not None else read_ahead(
            self._emis_chunks(delivery.path, extract_date, practice), depth=1)
        try:
            for received, validated, patients, events in prepared:
                result.rows_received += received
                self._quarantine(validated, file_id, delivery.relative, result)
                if not superseded:
                    self._stage("stage_emis_patients", patients, first)
                    events_waiting.append(events)
                    if sum(frame.height for frame in events_waiting) >= EMIS_APPEND_ROWS:
                        self._append_emis_events(events_waiting, file_id)
                        events_waiting.clear()
                first = False
        finally:
            prepared.close()  # the reading threads stop, and the file is closed, before the load goes on or fails
        if events_waiting:
            self._append_emis_events(events_waiting, file_id)
        if first:
            raise FeedFileError("the export has a header but no patients; expected every registered patient")
        if superseded:
            raise Superseded(f"an export of {current[1]} is already loaded for {practice}; this older one "
                             "was checked and not used")
        incoming = self._one("select count(distinct emis_number) from stage_emis_patients")[0]
        if current[0] and incoming < current[0] * (1 - self.emis_max_drop_share) and not accept:
            raise HeldFile(
                f"held: this export lists {incoming} patients where the warehouse has {current[0]} for {practice} "
                f"(a drop of more than {self.emis_max_drop_share:.0%}); it may be truncated. Nothing changed. "
                f"If it is right, release it with: sprx ingest --accept {delivery.relative}"
            )
        self.connection.execute(
            """
            insert into raw.emis_patients
            select practice_code, emis_number, ?, ?, nhs_number_token, name_dob_token, surname_dob_postcode_token,
                   postcode_token, lsoa21_code, imd_decile, gender, extract_age, extract_age_band
            from stage_emis_patients
            qualify row_number() over (partition by emis_number order by row_number) = 1
            """,
            [extract_date, file_id],
        ).fetchall()
        # one row per patient, and only this export's: the table has no key to refuse a second row (a bug here,
        # never data), so the practice's snapshot is counted as it will be committed
        rows, patients, exports = self._one(
            "select count(*), count(distinct emis_number), count(distinct file_id) from raw.emis_patients "
            "where practice_code = ?", [practice])
        if (rows, patients, exports) != (incoming, incoming, 1):
            raise RuntimeError(f"the snapshot of {practice} would hold {rows} patient rows for {patients} patients "
                               f"from {exports} export(s) where this export lists {incoming}; nothing was changed")
        result.rows_loaded = result.rows_received - result.rows_rejected
        result.message = f"snapshot of {incoming} registered patients replaces the previous one"
        return result

    def _append_emis_events(self, events: list[pl.DataFrame], file_id: int) -> None:
        frame = pl.concat(events).with_columns(pl.lit(file_id, dtype=pl.Int64).alias("file_id"))
        self._append("raw.emis_events", frame)

    def _emis_chunks(self, path: Path, extract_date: dt.date, practice: str) -> Iterator[EmisChunk]:
        """Each chunk of an export read, checked, validated and pseudonymised: its row count, its validation,
        its patients (to stage) and its events (as raw.emis_events rows, less the file's id, which the load
        gives). Touches no DuckDB connection, so that it can run ahead in another thread."""
        parsed = read_ahead(emis_source.read_emis(path), depth=1)  # parsing, in a third thread
        try:
            for chunk in parsed:
                self._check_practice(chunk, "organisation_code", practice, "Organisation Code")
                validated = validate_emis(chunk, extract_date=extract_date, practice_code=practice)
                valid = validated.valid
                # patient columns are the same on every row of a patient (filled down): pseudonymise once
                first_rows = valid.unique(subset="emis_number", keep="first", maintain_order=True)
                patients = age_columns(add_geography(identity_tokens(
                    first_rows, self.key, first_name="calling_name", last_name="family_name")),
                    "date_of_birth", pl.lit(extract_date), "extract")
                events = valid.select(
                    "emis_number", "row_number", "date_of_birth", "event_date", "code", "code_term",
                    "consultation_type", "appointment_status",
                ).filter(pl.col("event_date").is_not_null())
                events = age_columns(events, "date_of_birth", pl.col("event_date"), "event")
                yield chunk.height, validated, patients.select(
                    pl.lit(practice).alias("practice_code"), "emis_number", "row_number",
                    "nhs_number_token", "name_dob_token", "surname_dob_postcode_token", "postcode_token",
                    "lsoa21_code", "imd_decile", "gender", "extract_age", "extract_age_band",
                ), events.select(
                    pl.lit(practice).alias("practice_code"), "emis_number",
                    pl.lit(extract_date, dtype=pl.Date).alias("extract_date"), "row_number", "event_date",
                    pl.col("code").alias("snomed_code"), "code_term", "consultation_type", "appointment_status",
                    "event_age", "event_age_band",
                )
        finally:
            parsed.close()  # stops the parsing thread and closes the file, however this generator ends

    # --- SystmOne: deltas keyed by RowIdentifier -------------------------------------------

    def _load_systmone(self, delivery, file_id, extract_date, practice, read: PreparedRead | None) -> FileResult:
        """Stage a delta's three tables in the open batch; they are applied when it commits (`commit_batch`)."""
        result = FileResult(delivery.relative, "systmone", "loaded")
        if read is None:  # read now, a chunk at a time as it loads, so a first full extract never sits in memory whole
            extract = systmone_source.read_systmone(delivery.path)
            read = PreparedRead(delivery.relative, list(extract.notices), self._systmone_chunks(
                extract, delivery.relative, ValidationContext(extract_date=extract_date, practice_code=practice)))
        if read.notes is None:
            raise read.error  # it could not be opened
        notes = list(read.notes)
        batch = self._batch
        batch.ordinal += 1
        for table, member, received, validated, staged in read.replay():
            result.rows_received += received
            self._quarantine(validated, file_id, member, result)
            if staged.height:
                if staged.get_column("is_removed").any():
                    batch.removals.add(table)
                self._add_to_batch(table, _Staged(staged, file_id, practice, extract_date, batch.ordinal))
        result.rows_loaded = result.rows_received - result.rows_rejected
        result.message = "; ".join(notes) if notes else "delta applied"
        batch.files[file_id] = (notes, result)
        return result

    def read_systmone(self, deliveries: Sequence[Delivery]) -> dict[str, PreparedRead | None]:
        """SystmOne deltas read, checked, validated and pseudonymised before their turn to load (`load(..., read=)`),
        by relative path; several deltas' tables are validated in one pass each (`validate_files`).

        The first of `deliveries`, then those after it while the group stays within SYSTMONE_GROUP_MAX_FILES and
        SYSTMONE_GROUP_MAX_ROWS; a delta over SYSTMONE_GROUP_MAX_BYTES on disk, or whose name is wrong, is given as
        None (its load reads it as it loads, and says what is wrong). A problem met while reading a delta is kept,
        to be raised where its load reaches it. Touches no DuckDB connection."""
        for delivery in deliveries:
            if delivery.source != "systmone":
                raise ValueError(f"{delivery.relative} is not a SystmOne delta")
        reads: dict[str, PreparedRead | None] = {}
        raw: list[tuple[PreparedRead, ValidationContext, list[tuple[str, str, pl.DataFrame]]]] = []
        rows = 0
        # two deltas read at once (a delta's three small CSVs cost more in calls than in bytes); the one begun past
        # the group's end is dropped
        with closing(map_ahead(self._read_delta, deliveries, workers=READ_WORKERS)) as deltas:
            for delivery, (read, context, chunks) in zip(deliveries, deltas):
                reads[delivery.relative] = read
                if read is None:
                    continue
                raw.append((read, context, chunks))
                rows += sum(chunk.height for _, _, chunk in chunks)
                if len(raw) >= SYSTMONE_GROUP_MAX_FILES or rows >= SYSTMONE_GROUP_MAX_ROWS:
                    break
        for table, contract in SYSTMONE_CONTRACTS.items():
            frames = [(read, member, chunk, context) for read, context, chunks in raw
                      for chunk_table, member, chunk in chunks if chunk_table == table]
            if not frames:
                continue
            validated = validate_files(contract, [(chunk, context) for _, _, chunk, context in frames],
                                       reader_schema=systmone_source.SCHEMAS[table])
            staged = self._systmone_shape(table, [(checked.valid, context.extract_date)
                                                  for checked, (_, _, _, context) in zip(validated, frames)])
            for (read, member, chunk, _), checked, shaped in zip(frames, validated, staged, strict=True):
                read.chunks.append((table, member, chunk.height, checked, shaped))
        return reads

    def _read_delta(self, delivery: Delivery) -> tuple[PreparedRead | None, ValidationContext | None,
                                                       list[tuple[str, str, pl.DataFrame]]]:
        """A delta's tables read and checked for `read_systmone` (not yet validated), with its validation context;
        None when it is over SYSTMONE_GROUP_MAX_BYTES on disk or its name is wrong."""
        try:
            if _size_on_disk(delivery.path) > SYSTMONE_GROUP_MAX_BYTES:
                return None, None, []
            practice, extract_date = self._identify(delivery)
        except (OSError, FeedFileError):
            return None, None, []  # its load meets the problem again, and says so
        read = PreparedRead(delivery.relative)
        chunks: list[tuple[str, str, pl.DataFrame]] = []
        try:
            extract = systmone_source.read_systmone(delivery.path)
            read.notes = list(extract.notices)
            chunks.extend(self._systmone_raw(extract, delivery.relative, practice))
        except Exception as problem:  # noqa: BLE001 - raised again, unchanged, when its load reaches it
            read.error = problem
        return read, ValidationContext(extract_date=extract_date, practice_code=practice), chunks

    def prepared_reads(self, deliveries: Sequence[Delivery]) -> Iterator[dict[str, PreparedRead | None]]:
        """The SystmOne deltas, EMIS exports, ambulance files and VCSE sheets among `deliveries` (in load order) read
        before their turn to load, as {relative path: its read}, in the order the loads reach them: each group of
        deltas (`read_systmone`) where its first delta comes, each other file (`read_whole`) where it comes.
        Touches no DuckDB connection, so that it can run ahead in another thread (`read_ahead`) while the loader
        writes the files before. Ambulance files and VCSE sheets in a row are read two at a time (`map_ahead`); an
        EMIS export, large, alone."""
        reading = [delivery for delivery in deliveries if delivery.source in READ_AHEAD_SOURCES]
        systmone = [delivery for delivery in reading if delivery.source == "systmone"]
        next_delta = 0  # the first delta of systmone not yet read
        index = 0
        while index < len(reading):
            delivery = reading[index]
            if delivery.source in ("ambulance", "vcse"):
                run = list(itertools.takewhile(lambda one: one.source in ("ambulance", "vcse"), reading[index:]))
                with closing(map_ahead(self.read_whole, run, workers=READ_WORKERS)) as whole:
                    for one, read in zip(run, whole):
                        yield {one.relative: read}
                index += len(run)
                continue
            if delivery.source == "emis":
                yield {delivery.relative: self.read_whole(delivery)}
            elif next_delta < len(systmone) and systmone[next_delta] is delivery:  # the first of a group
                reads = self.read_systmone(systmone[next_delta:])
                next_delta += len(reads)  # every delta read or passed over has its entry
                yield reads
            index += 1

    def _systmone_raw(self, extract: systmone_source.SystmOneExtract, relative: str, practice: str
                      ) -> Iterator[tuple[str, str, pl.DataFrame]]:
        """A delta's tables' chunks as read, in load order, each checked for the practice in the file name."""
        for table in SYSTMONE_CONTRACTS:
            member = f"{relative}/{systmone_source.TABLES[table][0]}"
            for chunk in extract.read(table):
                self._check_practice(chunk.filter(pl.col("removed_data") != "1"), "organisation_code", practice,
                                     "IDOrganisation")
                yield table, member, chunk

    def _systmone_chunks(self, extract: systmone_source.SystmOneExtract, relative: str, context: ValidationContext
                         ) -> Iterator[SystmoneChunk]:
        """A delta's chunks read, checked, validated and shaped one at a time, as they are iterated."""
        for table, member, chunk in self._systmone_raw(extract, relative, context.practice_code):
            (checked,) = validate_files(SYSTMONE_CONTRACTS[table], [(chunk, context)],
                                        reader_schema=systmone_source.SCHEMAS[table])
            (shaped,) = self._systmone_shape(table, [(checked.valid, context.extract_date)])
            yield table, member, chunk.height, checked, shaped

    def _systmone_shape(self, table: str, valids: list[tuple[pl.DataFrame, dt.date]]) -> list[pl.DataFrame]:
        """Valid rows of a SystmOne table (from one delta or several, each with its extract date) shaped as the
        raw table's rows: the patient table pseudonymised, in one pass for them all."""
        if len(valids) == 1:
            valid, extract_date = valids[0]
            return [self._systmone_rows(table, valid, pl.lit(extract_date, dtype=pl.Date))]
        together = pl.concat([
            valid.with_columns(pl.lit(index, pl.UInt32).alias("__delta"),
                               pl.lit(extract_date, pl.Date).alias("__extract_date"))
            for index, (valid, extract_date) in enumerate(valids)
        ])
        shaped = self._systmone_rows(table, together, pl.col("__extract_date"), keep=["__delta"])
        parts = shaped.partition_by("__delta", as_dict=True, maintain_order=True, include_key=False)
        empty = shaped.clear().drop("__delta")
        return [parts.get((index,), empty) for index in range(len(valids))]

    def _systmone_rows(self, table: str, valid: pl.DataFrame, extract_date: pl.Expr, keep: Sequence[str] = ()
                       ) -> pl.DataFrame:
        """A SystmOne table's valid rows as the raw table's (ages on `extract_date`), with the columns in `keep`."""
        if table == "patient":
            frame = age_columns(add_geography(identity_tokens(valid, self.key, first_name="first_name",
                                                              last_name="surname")),
                                "date_of_birth", extract_date, "extract")
            return frame.select(
                "row_identifier", "row_number", _removed(frame).alias("is_removed"), "patient_id",
                pl.col("organisation_code").alias("registered_practice_code"), "nhs_number_token",
                "name_dob_token", "surname_dob_postcode_token", "postcode_token", "lsoa21_code", "imd_decile",
                "gender", "extract_age", "extract_age_band", *keep,
            )
        if table == "code":
            return valid.select("row_identifier", "row_number", _removed(valid).alias("is_removed"), "patient_id",
                                "event_date", "snomed_code", "ctv3_code", "ctv3_text", "organisation_code", *keep)
        return valid.select(
            "row_identifier", "row_number", _removed(valid).alias("is_removed"), "patient_id",
            london_to_utc("appointment_start").alias("appointment_start_at"), "status", "clinician_type",
            "organisation_code", *keep,
        )

    # --- ambulance: weekly files overlapping by 28 days ------------------------------------

    def read_whole(self, delivery: Delivery) -> PreparedRead | None:
        """An EMIS export, an ambulance file or a VCSE sheet read, checked, validated and pseudonymised whole
        before its turn to load, or None when it is larger than WHOLE_AHEAD_MAX_BYTES, its name is wrong or (a
        sheet) its service's remembered headings cannot be read: its load reads it as it loads, and says what is
        wrong. A problem met while reading is kept, to be raised where its load reaches it. Touches no DuckDB
        connection. Each chunk keeps its rejected rows but not its valid ones (`_kept`): the load needs only what
        is shaped from them, so at most three files' shaped rows are held (one loading, one waiting, one read)."""
        try:
            if _size_on_disk(delivery.path) > WHOLE_AHEAD_MAX_BYTES:
                return None
            organisation, extract_date = self._identify(delivery)
        except (OSError, FeedFileError):
            return None
        if delivery.source == "vcse":
            return self._read_vcse_whole(delivery, extract_date, organisation)
        read = PreparedRead(delivery.relative, notes=[])
        chunks = None
        try:
            chunks = self._emis_chunks(delivery.path, extract_date, organisation) if delivery.source == "emis" else (
                self._ambulance_chunk(chunk, extract_date) for chunk in ambulance_source.read_ambulance(delivery.path))
            read.chunks.extend(_kept(chunk) for chunk in chunks)
        except Exception as problem:  # noqa: BLE001 - raised again, unchanged, when its load reaches it
            read.error = problem
        finally:
            if chunks is not None:
                chunks.close()  # the EMIS reader's parsing thread stops, and the file is closed
        return read

    def _read_vcse_whole(self, delivery: Delivery, received_date: dt.date, service: str) -> PreparedRead | None:
        """`read_whole` of a VCSE sheet, with the headings its service has confirmed now (`PreparedRead.headings`), or
        None when those cannot be read (its load says so)."""
        try:
            headings = vcse_source.remembered_headings(self.home, service)
        except FeedFileError:
            return None
        read = PreparedRead(delivery.relative, headings=headings)
        try:
            sheet = vcse_source.read_vcse(delivery.path, remembered=headings)
            read.chunks.extend(_kept(chunk) for chunk in self._vcse_chunks(sheet, received_date, service))
            read.notes = _vcse_notes(sheet)
        except Exception as problem:  # noqa: BLE001 - raised again, unchanged, when its load reaches it
            read.error = problem
        return read

    def _ambulance_chunk(self, chunk: pl.DataFrame, extract_date: dt.date) -> AmbulanceChunk:
        """A chunk of an ambulance file validated, and its valid rows shaped as the raw table's."""
        validated = validate_ambulance_incident(chunk, extract_date=extract_date)
        valid = validated.valid.with_columns(london_to_utc("call_received").alias("call_received_at"))
        frame = age_columns(add_geography(identity_tokens(valid, self.key)), "date_of_birth",
                            pl.col("call_received"), "call")
        return chunk.height, validated, frame.select(
            "incident_id", "row_number", "call_received_at", "nhs_number_token", "name_dob_token",
            "surname_dob_postcode_token", "postcode_token", "lsoa21_code", "imd_decile", "sex", "call_age",
            "call_age_band", "arp_category", "call_outcome", "conveyed_to",
            (pl.col("communal_address") == "Y").alias("is_communal_address"),
            (pl.col("frequent_caller_flag") == "Y").alias("trust_frequent_caller_flag"))

    def _load_ambulance(self, delivery, file_id, extract_date, trust, read: PreparedRead | None) -> FileResult:
        """Stage an ambulance file's incidents in the open batch (`read`: as `read_whole` read it; None: read now, a
        chunk at a time); they are added or replaced when it commits (`commit_batch`)."""
        result = FileResult(delivery.relative, "ambulance", "loaded")
        chunks = read.replay() if read is not None else (
            self._ambulance_chunk(chunk, extract_date) for chunk in ambulance_source.read_ambulance(delivery.path))
        batch = self._batch
        batch.ordinal += 1
        for received, validated, staged in chunks:
            result.rows_received += received
            self._quarantine(validated, file_id, delivery.relative, result)
            if staged.height:
                self._add_to_batch("ambulance", _Staged(staged, file_id, trust, extract_date, batch.ordinal))
        result.rows_loaded = result.rows_received - result.rows_rejected
        result.message = "incidents added or replaced by this later version"
        batch.files[file_id] = ([result.message], result)
        return result

    # --- VCSE: attendance sheets --------------------------------------------------------------

    def _vcse_chunks(self, sheet: vcse_source.VcseSheet, received_date: dt.date, service: str
                     ) -> Iterator[VcseChunk]:
        """A sheet's chunks read, validated, pseudonymised and keyed, shaped as the stage's rows. Touches no DuckDB
        connection, so that it can run ahead in another thread."""
        in_sheet = frozenset(choice.column for choice in sheet.headings if choice.column)
        for chunk in sheet:
            validated = validate_vcse_attendance(chunk, extract_date=received_date)
            valid = validated.valid
            frame = age_columns(add_geography(identity_tokens(valid, self.key, first_name="first_name",
                                                              last_name="last_name")),
                                "date_of_birth", pl.col("session_date"), "session")
            frame = frame.with_columns(
                _keyed(frame, self.key, "vcse_activity", ["activity"], normalise=True).alias("activity_key"),
                _keyed(frame, self.key, "vcse_attendee",
                       ["nhs_number", "first_name", "last_name", "date_of_birth", "postcode"],
                       normalise=True, prefix=service).alias("attendee_key"),
            )
            yield chunk.height, validated, frame.select(
                "row_number", why_unlinkable(in_sheet).alias("unlinkable_reason"),
                "session_date", "activity_key", "attendee_key", "activity", "attended", "is_linkable",
                "linkage_basis", "nhs_number_token", "name_dob_token", "surname_dob_postcode_token", "postcode_token",
                "lsoa21_code", "imd_decile", "session_age", "session_age_band",
                *(pl.col(name).cast(pl.Int8) for name in vcse_source.WELLBEING_COLUMNS))

    def _load_vcse(self, delivery, file_id, received_date, service, read: PreparedRead | None) -> FileResult:
        """Stage a sheet's rows (`read`: as `read_whole` read them, unless the service's confirmed headings have
        changed since; None: read now, a chunk at a time), then replace the sessions it restates."""
        result = FileResult(delivery.relative, "vcse", "loaded")
        headings = vcse_source.remembered_headings(self.home, service)
        sheet = None
        if read is not None and read.headings == headings:
            chunks = read.replay()
        else:
            sheet = vcse_source.read_vcse(delivery.path, remembered=headings)
            chunks = self._vcse_chunks(sheet, received_date, service)
        first = True
        for received, validated, staged in chunks:
            result.rows_received += received
            self._stage("stage_vcse", staged, first)
            self._quarantine(validated, file_id, delivery.relative, result)
            first = False
        notes = _vcse_notes(sheet) if sheet is not None else list(read.notes)
        if not first:
            repeats = self.connection.sql(
                """
                select row_number, first_value(row_number) over (
                    partition by session_date, activity_key, attendee_key order by row_number) as first_row
                from stage_vcse qualify first_row <> row_number
                """
            ).pl()
            if repeats.height:
                self._quarantine(Validated(valid=pl.DataFrame(), rejected=repeats.select(
                    "row_number", pl.lit("row").alias("field"),
                    pl.format("the same person, session and activity are already on row {}; remove the repeat",
                              "first_row").alias("reason"),
                    pl.lit(None, dtype=pl.String).alias("value"))), file_id, delivery.relative, result)
            restated_later = self._replace_vcse_sessions(service, delivery.received_at)
            if restated_later:
                notes.append(f"{restated_later} row(s) are for sessions a later sheet from {service} already "
                             "restates; the later sheet was kept for those sessions")
            self.connection.execute(
                """
                insert into raw.vcse_attendances
                select ?, session_date, activity_key, attendee_key, ?, ?, row_number, activity, attended,
                       is_linkable, linkage_basis, nhs_number_token, name_dob_token, surname_dob_postcode_token,
                       postcode_token, lsoa21_code, imd_decile, session_age, session_age_band, wellbeing_score,
                       wellbeing_worthwhile, wellbeing_happiness, wellbeing_anxiety
                from stage_vcse_current
                qualify row_number() over (partition by session_date, activity_key, attendee_key
                                           order by row_number) = 1
                on conflict (service_id, session_date, activity_key, attendee_key) do update set
                    received_at = excluded.received_at, file_id = excluded.file_id,
                    row_number = excluded.row_number, activity = excluded.activity, attended = excluded.attended,
                    is_linkable = excluded.is_linkable, linkage_basis = excluded.linkage_basis,
                    nhs_number_token = excluded.nhs_number_token, name_dob_token = excluded.name_dob_token,
                    surname_dob_postcode_token = excluded.surname_dob_postcode_token,
                    postcode_token = excluded.postcode_token, lsoa21_code = excluded.lsoa21_code,
                    imd_decile = excluded.imd_decile, session_age = excluded.session_age,
                    session_age_band = excluded.session_age_band, wellbeing_score = excluded.wellbeing_score,
                    wellbeing_worthwhile = excluded.wellbeing_worthwhile,
                    wellbeing_happiness = excluded.wellbeing_happiness, wellbeing_anxiety = excluded.wellbeing_anxiety
                where excluded.received_at >= vcse_attendances.received_at
                """,
                [service, delivery.received_at, file_id],
            )
        result.rows_loaded = result.rows_received - result.rows_rejected
        if not first:
            unlinkable = self.connection.execute(
                """
                select unlinkable_reason, count(*) from stage_vcse_current
                where unlinkable_reason is not null
                group by unlinkable_reason order by count(*) desc, unlinkable_reason
                """).fetchall()
            for reason, count in unlinkable:
                notes.append(f"{count} row(s) cannot be linked to a person ({reason}); loaded and counted as "
                             f"activity, but not followed up. {how_to_link(reason)}")
        result.message = "; ".join(notes) if notes else "attendances loaded"
        return result


    def _replace_vcse_sessions(self, service: str, received_at: dt.datetime) -> int:
        """Apply the VCSE replacement rule to the staged sheet; how many of its rows a later sheet overrides.

        The replacement key is the session: service, session date and activity. A sheet restates every
        session it has rows for, so its rows replace all the rows of those sessions that earlier sheets
        gave, whether or not a row can be linked to a person (an unlinkable row has no stable identity to
        match, so matching person by person would count a corrected month twice). A session that a sheet
        received later already holds is left as it is, so files load to the same warehouse in any order;
        sheets received at the same moment are merged, person by person. The rows of this sheet that
        are still current go to the temporary table stage_vcse_current."""
        self.connection.execute(
            """
            create or replace temp table stage_vcse_current as
            select * from stage_vcse as staged
            where not exists (
                select 1 from raw.vcse_attendances as held
                where held.service_id = ? and held.session_date = staged.session_date
                  and held.activity_key = staged.activity_key and held.received_at > ?)
            """,
            [service, received_at],
        )
        self.connection.execute(
            """
            delete from raw.vcse_attendances as held
            where held.service_id = ? and held.received_at < ?
              and exists (select 1 from stage_vcse_current as staged
                          where staged.session_date = held.session_date and staged.activity_key = held.activity_key)
            """,
            [service, received_at],
        )
        return self._one("select (select count(*) from stage_vcse) - (select count(*) from stage_vcse_current)")[0]


def _kept(chunk: tuple) -> tuple:
    """A chunk of `read_whole` (EmisChunk, AmbulanceChunk, VcseChunk) as it waits for its load: its validation
    without the valid rows (raw identifiers included), which the load never uses once they are shaped."""
    received, validated, *shaped = chunk
    return received, replace(validated, valid=validated.valid.clear()), *shaped


def _vcse_notes(sheet: vcse_source.VcseSheet) -> list[str]:
    """What a sheet read to its end says of itself: its reader's notices, its headings, a totals row."""
    notes = list(sheet.notices) + sheet.heading_notices
    if sheet.stated_total is not None:
        notes.append(f"totals row (row {sheet.totals_row_number}) says {sheet.stated_total}; not counted as attendance")
    return notes


def _size_on_disk(path: Path) -> int:
    """A delivery's bytes: the file's, or a folder's files'."""
    if path.is_dir():
        return sum(member.stat().st_size for member in path.rglob("*") if member.is_file())
    return path.stat().st_size


def _removed(frame: pl.DataFrame) -> pl.Expr:
    column = pl.col("removed_data")
    if frame.schema.get("removed_data") == pl.Boolean:
        return column
    return column.cast(pl.String) == "1"


def _keyed(frame: pl.DataFrame, key: bytes, purpose: str, columns: list[str], *, normalise: bool,
           prefix: str = "") -> pl.Series:
    """A keyed digest of several columns (normalised), one per row; '' parts for missing values."""
    parts = []
    for column in columns:
        values = frame.get_column(column).cast(pl.String).fill_null("")
        if normalise:
            distinct = values.unique().to_list()
            mapping = {value: normalise_name(value) for value in distinct}
            values = values.replace_strict(mapping, return_dtype=pl.String)
        parts.append(values)
    joined = pl.DataFrame(parts).select(pl.concat_str(pl.all(), separator="|")).to_series() if parts else None
    distinct = joined.unique().to_list()
    digests = {value: hmac.digest(key, f"{purpose}\x1f{prefix}|{value}".encode(), "sha256").hex()
               for value in distinct}
    return joined.replace_strict(digests, return_dtype=pl.String)
