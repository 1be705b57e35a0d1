"""Prefect flows that take landing/ into the raw zone: `ingest`, with a task per source family, and `reprocess`.

    ingest ─► discover_files ─► ingest_gp (emis, systmone) ─► ingest_ambulance ─► ingest_vcse ─► report
    reprocess ─► rebuild_raw_zone (archive/ + landing/ into a new file, swapped in) ─► report

Tasks are coarse (one per source family, not per file or row): Prefect costs per task, and more per subflow (a
family as a subflow cost about 1 s more each: its own flow run, states and heartbeat). Each file still
loads in its own transaction (SystmOne deltas and ambulance files in batches of many: `flows.load`), and once
its status is final and its transaction committed moves to archive/ (`flows.archive`).
Tasks return counts and reasons only, never patient rows, and do not persist results. Each run
records itself in audit.pipeline_runs (stage "ingest") and refreshes $SPRX_HOME/status.json.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.archive import (ARCHIVED_STATUSES, ArchiveChanged, archive_dir, archive_relative, archive_roots,
                           move_into_archive)
from flows.lock import warehouse_lock
from flows.load import (READ_AHEAD_SOURCES, SOURCES, Delivery, FileChanged, FileResult, Loader, PreparedRead,
                        file_sha256, file_signature, loading_threads)
from flows.pseudonymise import load_key, verify_key
from flows.warehouse import (close_abandoned_runs, connect, is_busy_error, record_duckdb_settings, record_stage,
                             utc_now)
from sprx.output import progress_advance, progress_begin, progress_end
from sprx.permissions import private_dir, private_file, private_umask
from sprx.readers.read_ahead import read_ahead
from sprx.settings import Settings, get_settings

# Where each source's files arrive, under landing/.
SOURCE_FOLDERS = {"emis": "gp/emis", "systmone": "gp/systmone", "ambulance": "ambulance", "vcse": "vcse"}
# Source families: one flow each.
FAMILIES = {"gp": ("emis", "systmone"), "ambulance": ("ambulance",), "vcse": ("vcse",)}
# How many rejection reasons the run report lists.
TOP_REASONS = 10
# Files loaded one transaction each (EMIS exports, ambulance files, VCSE sheets) go to archive/ this many at a time,
# their archive paths recorded in one statement (each statement's commit cost about 25 ms a file); a crash before
# the move leaves a loaded file in landing/, and the next run, finding it recorded, moves it.
ARCHIVE_GROUP_FILES = 50
# Names of files still arriving: a sender writes under one of these and renames the file into place when whole
# (dot-files: rsync, the portal; the suffixes: browsers, WinSCP, FileZilla, curl and most transfer tools).
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".filepart", ".crdownload", ".download", ".swp", "~")
# A reprocess builds the new warehouse beside the old one under this name, and swaps it in when complete.
REBUILD_NAME = "warehouse.reprocess.duckdb"
# A warehouse that cannot be opened is moved aside under this prefix (+ UTC time) by a reprocess.
CORRUPT_PREFIX = "warehouse.corrupt-"
# A reprocess keeps the warehouse it replaced under this name (a hard link: no extra space) until the next one.
BACKUP_NAME = "warehouse.before-reprocess.duckdb"


@dataclass
class IngestSummary:
    """Per-file outcomes of one ingest run (counts and reasons, no identifiers)."""

    files: list[FileResult] = field(default_factory=list)
    skipped: int = 0
    arriving: list[str] = field(default_factory=list)  # landing paths still being written: left for the next run
    archived: int = 0  # deliveries moved to archive/ in this run
    reprocessed: bool = False  # the raw zone was rebuilt from archive/ (sprx ingest --reprocess)

    @property
    def rows_received(self) -> int:
        return sum(f.rows_received for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rows_rejected for f in self.files)

    def by_status(self) -> Counter:
        return Counter(f.status for f in self.files)

    def top_reasons(self, limit: int = TOP_REASONS) -> list[tuple[str, int]]:
        reasons: Counter = Counter()
        for result in self.files:
            reasons.update(result.reasons)
        return reasons.most_common(limit)

    def detail(self) -> dict[str, int | bool]:
        """Counts for audit.pipeline_runs (no file names, no identifiers)."""
        statuses = self.by_status()
        return {"files": len(self.files), "skipped": self.skipped, "archived": self.archived,
                "arriving": len(self.arriving),
                "rows_received": self.rows_received, "rows_loaded": self.rows_loaded,
                "rows_rejected": self.rows_rejected, "reprocess": self.reprocessed,
                **{f"files_{status}": statuses.get(status, 0)
                   for status in ("loaded", "rejected", "held", "duplicate", "superseded")}}


def source_of(relative: str) -> str | None:
    """The source a landing path belongs to, by its folder."""
    for source, folder in SOURCE_FOLDERS.items():
        if relative.startswith(folder + "/"):
            return source
    return None


def in_progress(name: str) -> bool:
    """True for the name of a file its sender is still writing (a dot-file, or a .part/.tmp-like name)."""
    return name.startswith(".") or name.casefold().endswith(IN_PROGRESS_SUFFIXES)


def _deliveries_in(landing: Path, source: str) -> list[Path]:
    folder = landing / SOURCE_FOLDERS[source]
    if not folder.is_dir():
        return []
    if source == "vcse":
        return sorted(p for p in folder.glob("*/*") if p.is_file() and not in_progress(p.name)
                      and not in_progress(p.parent.name))
    return sorted(p for p in folder.iterdir() if not in_progress(p.name))


def waiting_in_landing(landing: Path, sources: tuple[str, ...] = SOURCES) -> bool:
    """True when landing/ holds at least one file (settled or not) that an ingest of these sources would look at."""
    return any(_deliveries_in(landing, source) for source in sources)


def _delivery(landing: Path, path: Path, source: str, received_at: dt.datetime | None = None) -> Delivery:
    """A delivery under a landing-like root, received at `received_at` (UTC, naive; default now).

    Its signature is taken before its sha256, so that a change while it is hashed or read is noticed."""
    signature = file_signature(path)
    return Delivery(path=path, relative=path.relative_to(landing).as_posix(), source=source,
                    sha256=file_sha256(path), received_at=received_at or discovered_now(), signature=signature)


def discovered_now() -> dt.datetime:
    """The time received of files found now: UTC, naive, to the microsecond (two runs never share one)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def landing_deliveries(landing: Path, sources: tuple[str, ...] = SOURCES,
                       received_at: dt.datetime | None = None) -> list[Delivery]:
    """Every delivery waiting in landing/ for the chosen sources (received now, unless told otherwise)."""
    received_at = received_at or discovered_now()
    return [_delivery(landing, path, source, received_at)
            for source in sources for path in _deliveries_in(landing, source)]


def _archived_at(path: Path) -> dt.datetime:
    """The time an archived delivery was received: its archive copy's modification time, which the archive sets."""
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)


def archived_deliveries(archive: Path) -> list[Delivery]:
    """Every delivery kept in archive/, with its landing path and the time it was first received."""
    found = []
    for root in archive_roots(archive):
        for source in SOURCES:
            found.extend(replace(_delivery(root, path, source, _archived_at(path)),
                                 archived=path.relative_to(archive).as_posix())
                         for path in _deliveries_in(root, source))
    return found


def _last_change(path: Path) -> float:
    """The latest modification time of a file, or of a folder and the files in it (seconds since the epoch)."""
    times = [path.stat().st_mtime]
    if path.is_dir():
        times.extend(member.stat().st_mtime for member in path.iterdir())
    return max(times)


def settled(candidates: list[tuple[Path, str]], settle_seconds: float) -> tuple[list[tuple[Path, str]], list[Path]]:
    """Split files into those whose size and modification time have not changed for `settle_seconds` and those
    still being written.

    A file last changed longer ago than that is settled at once. Any other (just written, or stamped in the
    future) is watched for the interval, once per run: unchanged at the end, it is settled; changed, it is left
    in landing/ for the next run. So a run waits at most `settle_seconds`, and only when something is new."""
    now = time.time()
    ready, watched = [], []
    for path, source in candidates:
        try:
            if now - _last_change(path) >= settle_seconds:
                ready.append((path, source))
            else:
                watched.append((path, source, file_signature(path)))
        except FileNotFoundError:  # renamed or removed by its sender meanwhile
            continue
    if not watched:
        return ready, []
    time.sleep(settle_seconds)
    arriving = []
    for path, source, signature in watched:
        try:
            unchanged = file_signature(path) == signature
        except FileNotFoundError:
            continue
        if unchanged:
            ready.append((path, source))
        else:
            arriving.append(path)
    return sorted(ready), arriving


@dataclass
class Discovery:
    """What a look at landing/ found: deliveries to take, and files still arriving (left for the next run)."""

    deliveries: list[Delivery]
    arriving: list[str] = field(default_factory=list)


@task(retries=2, retry_delay_seconds=[5, 30], persist_result=False)
def discover_files(landing: Path, sources: tuple[str, ...], paths: tuple[Path, ...],
                   settle_seconds: float = 0.0) -> Discovery:
    """Find deliveries: the given paths, or every settled file under landing/ for the chosen sources.

    The time received is now (the moment of discovery), never a file's modification time, which its sender
    sets. A path given by name is taken as complete (its sender says so: the portal renames it into place)."""
    received_at = discovered_now()
    if paths:
        found: list[Delivery] = []
        for path in paths:
            path = path.resolve()
            relative = path.relative_to(landing).as_posix() if path.is_relative_to(landing) else None
            source = source_of(relative) if relative else None
            if source is None:
                raise ValueError(f"{path} is not under a feed folder of {landing} "
                                 f"({', '.join(SOURCE_FOLDERS.values())})")
            if not path.exists():
                raise ValueError(f"{relative} is not in landing/ (only a file waiting there can be loaded or "
                                 "released)")
            if in_progress(path.name):
                raise ValueError(f"{relative} is named as a file still arriving (a dot-file, or ending "
                                 f"{', '.join(IN_PROGRESS_SUFFIXES)}); rename it into place when it is whole")
            if source in sources:
                found.append(_delivery(landing, path, source, received_at))
        return Discovery(found)
    candidates = [(path, source) for source in sources for path in _deliveries_in(landing, source)]
    ready, arriving = settled(candidates, settle_seconds)
    if arriving:
        get_run_logger().warning("%d file(s) still being written, left in landing/ for the next run: %s",
                                 len(arriving), ", ".join(p.relative_to(landing).as_posix() for p in arriving))
    deliveries = []
    for path, source in ready:
        try:
            deliveries.append(_delivery(landing, path, source, received_at))
        except FileNotFoundError:
            continue
    return Discovery(deliveries, [p.relative_to(landing).as_posix() for p in arriving])


def _order(delivery: Delivery) -> tuple:
    """Oldest first: extract date in the name (GP, ambulance) or time received (VCSE); then the landing
    path; then the time received (two versions of one path, met only in a reprocess)."""
    digits = [part for part in delivery.path.stem.split("_") if part.isdigit() and len(part) == 8]
    return (digits[-1] if digits else delivery.received_at.strftime("%Y%m%d%H%M%S"), delivery.relative,
            delivery.received_at.isoformat())


def archive_deliveries(loader: Loader, deliveries: Sequence[Delivery], archive: Path
                       ) -> tuple[int, list[ArchiveChanged]]:
    """Move deliveries whose recorded status is final to archive/; return how many moved, and the error of each
    whose bytes changed during its move (it was put back in landing/).

    Their archive paths are recorded first, in one statement: a crash before a move leaves that file in
    landing/, and the next run (finding it recorded) moves it. A delivery changed since it was read, or a move
    that fails, leaves the file in landing/ with a warning (a failed move's path is recorded as none again)."""
    logger = get_run_logger()
    planned: list[tuple[Delivery, str]] = []
    for delivery in deliveries:
        try:
            if delivery.signature is not None and file_signature(delivery.path) != delivery.signature:
                logger.warning("%s changed after it was read; it stays in landing/ for the next run",
                               delivery.relative)
                continue
        except FileNotFoundError:
            continue
        planned.append((delivery, archive_relative(archive, delivery.relative, delivery.sha256)))
    loader.mark_archived(planned)
    moved, changed = 0, []
    for delivery, archived in planned:
        try:
            move_into_archive(delivery.path, archive, archived, delivery.sha256, delivery.received_at)
        except (OSError, ArchiveChanged) as error:
            loader.mark_archived([(delivery, None)])
            if isinstance(error, ArchiveChanged):
                changed.append(error)
            else:
                logger.warning("%s stays in landing/: it could not be archived (%s)", delivery.relative,
                               error.strerror or type(error).__name__)
            continue
        moved += 1
    return moved, changed


def archive_delivery(loader: Loader, delivery: Delivery, archive: Path) -> bool:
    """`archive_deliveries` of one delivery: True when it moved; ArchiveChanged raised when its bytes changed."""
    moved, changed = archive_deliveries(loader, [delivery], archive)
    if changed:
        raise changed[0]
    return moved == 1


@dataclass
class Loaded:
    """What one family's load did: per-file results, how many moved to archive/, what was left arriving, and
    the files whose bytes changed during their move to archive/ (each one fails the run)."""

    results: list[FileResult] = field(default_factory=list)
    archived: int = 0
    arriving: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


@task(retries=1, retry_delay_seconds=10, persist_result=False)
def load_files(deliveries: list[Delivery], accept: tuple[str, ...], run_id: str | None = None) -> Loaded:
    """Load each new delivery in its own transaction (SystmOne deltas and ambulance files in batches,
    `Loader.join_batch`) and archive the ones whose status is final once their transaction has committed (a
    batch's when it commits, the others ARCHIVE_GROUP_FILES at a time, and what committed before an error before
    it is raised); return what happened to each and how many moved to archive/.

    A delivery already recorded is not read again (a held one waits for `accept`); when its status is
    final it is archived now (a crash after its load, or a copy put back in landing/). A file that changes
    while it is read is not recorded and waits for the next run. The key is read here from the environment,
    never passed as a parameter: Prefect records parameters, and the key must stay outside the run records."""
    logger = get_run_logger()
    settings = get_settings()
    key = load_key(settings)
    archive = archive_dir(settings.home)
    loaded = Loaded()
    committing: list[Delivery] = []  # final, in the open batch: archived when it commits
    committed: list[Delivery] = []  # final and committed, archived ARCHIVE_GROUP_FILES at a time

    def archive_now(deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        moved, changed = archive_deliveries(loader, deliveries, archive)
        loaded.archived += moved
        for error in changed:
            logger.error("%s", error)
            loaded.changed.append(str(error))

    def archive_one(loader: Loader, delivery: Delivery) -> None:
        if loader.in_batch:  # not before its load is committed
            committing.append(delivery)
            return
        committed.append(delivery)
        if len(committed) >= ARCHIVE_GROUP_FILES:
            archive_ready()

    def archive_ready() -> None:  # committed files, together: one statement records their archive paths
        archive_now(committed[:])
        committed.clear()

    def archive_committed() -> None:  # a batch's, together
        archive_now(committing)
        committing.clear()

    def archive_before_raising() -> None:
        """What committed before an error still goes to archive/ (a crash leaves it for the next run)."""
        try:
            loader.rollback_batch()  # first: the archive paths' statement must not join an open batch's transaction
            archive_ready()
        except Exception as error:  # noqa: BLE001 - the first error is the one to raise
            logger.warning("files loaded before the error stay in landing/ until the next run moves them (%s)",
                           type(error).__name__)

    connection = connect(settings.warehouse_path, threads=loading_threads(settings.duckdb_threads))
    try:
        record_duckdb_settings(connection, "ingest")
        loader = Loader(connection, key, run_id=run_id, home=settings.home)
        ordered = sorted(deliveries, key=_order)
        # what each was recorded as before this run (only its own load changes that, and paths are unique here);
        # never seen, or held and released now, it loads: any other recorded status is final
        statuses = loader.recorded_statuses(ordered)
        to_load = [recorded is None or (delivery.relative in accept and recorded == "held")
                   for delivery, recorded in zip(ordered, statuses, strict=True)]
        # SystmOne deltas (several at a time), EMIS exports, ambulance files and VCSE sheets read, validated and
        # pseudonymised in a second thread while the loader writes the files before (DuckDB releases the GIL); None:
        # read as it loads
        prepared = read_ahead(loader.prepared_reads([delivery for delivery, load in zip(ordered, to_load, strict=True)
                                                     if load]), depth=1)
        reads: dict[str, PreparedRead | None] = {}  # read ahead, not yet loaded
        try:
            try:
                for index, (delivery, recorded) in enumerate(zip(ordered, statuses, strict=True)):
                    loader.join_batch(delivery, after_commit=archive_committed)
                    accepted = delivery.relative in accept
                    if not to_load[index]:
                        if recorded in ARCHIVED_STATUSES:
                            archive_one(loader, delivery)
                        progress_advance()
                        continue
                    if delivery.source in READ_AHEAD_SOURCES and delivery.relative not in reads:
                        reads.update(next(prepared, {}))  # the group this delta begins, or this one file
                    try:
                        result = loader.load(delivery, accept=accepted, read=reads.pop(delivery.relative, None))
                    except (FileChanged, FileNotFoundError) as error:
                        logger.warning("%s", error if isinstance(error, FileChanged) else
                                       f"{delivery.relative} disappeared from landing/ before it was read")
                        loaded.arriving.append(delivery.relative)
                        progress_advance()
                        continue
                    logger.info("%s %s: %s received, %s loaded, %s rejected", result.status, result.relative,
                                result.rows_received, result.rows_loaded, result.rows_rejected)
                    loaded.results.append(result)
                    if result.status in ARCHIVED_STATUSES:
                        archive_one(loader, delivery)
                    progress_advance()
            finally:
                prepared.close()  # the reading thread stops before the warehouse closes
            loader.commit_batch()
            archive_committed()
        except BaseException:
            archive_before_raising()
            raise
        archive_ready()
    finally:
        connection.close()
    return loaded


def _family_task(family: str):
    @task(name=f"ingest-{family}", persist_result=False)
    def family_task(deliveries: list[Delivery], accept: tuple[str, ...] = (), run_id: str | None = None
                    ) -> Loaded:
        return load_files(deliveries, accept, run_id)

    family_task.__doc__ = f"Load the {family} feeds ({', '.join(FAMILIES[family])})."
    return family_task


ingest_gp = _family_task("gp")
ingest_ambulance = _family_task("ambulance")
ingest_vcse = _family_task("vcse")
FAMILY_TASKS = {"gp": ingest_gp, "ambulance": ingest_ambulance, "vcse": ingest_vcse}


@task(persist_result=False)
def publish_run_report(summary: IngestSummary) -> None:
    """A Prefect table artifact: per-file counts and the top rejection reasons (no identifiers)."""
    rows = [
        {"file": f.relative, "source": f.source, "status": f.status, "received": f.rows_received,
         "loaded": f.rows_loaded, "rejected": f.rows_rejected, "message": f.message[:200]}
        for f in summary.files
    ]
    create_table_artifact(key="ingest-files", table=rows or [{"file": "(no new files)"}],
                          description="Files taken from landing/ in this run")
    reasons = [{"reason": reason, "rows": count} for reason, count in summary.top_reasons()]
    create_table_artifact(key="ingest-rejections", table=reasons or [{"reason": "(none)", "rows": 0}],
                          description="Most common reasons rows were quarantined in this run")


@flow(name="ingest", persist_result=False)
def ingest(
    sources: tuple[str, ...] = SOURCES,
    paths: tuple[Path, ...] = (),
    accept: tuple[str, ...] = (),
) -> IngestSummary:
    """landing/ → raw: every new file of the chosen sources (or the given paths), with full accounting.

    Settings (home folder, key) come from the SPRX_* environment; a missing key stops the run.
    The run is recorded in audit.pipeline_runs (stage "ingest") and $SPRX_HOME/status.json."""
    settings = get_settings()
    key = load_key(settings)  # fail before touching anything
    with warehouse_lock(settings.home, "ingest", settings.lock_wait_seconds), private_umask():
        private_dir(settings.landing_dir)
        connection = connect(settings.warehouse_path)
        try:
            verify_key(connection, key)  # a changed key stops the run before anything is recorded
        finally:
            connection.close()
        run_id, started = run_id_now(), utc_now()
        record_run(settings, run_id, started, "running")
        summary = IngestSummary()
        try:
            landing = settings.landing_dir
            discovery = discover_files(landing, tuple(sources), tuple(Path(p) for p in paths) + tuple(
                landing / a for a in accept), settings.landing_settle_seconds)
            deliveries, summary.arriving = discovery.deliveries, list(discovery.arriving)
            progress_begin(len(deliveries))
            changed = []
            for family, members in FAMILIES.items():
                chosen = [d for d in deliveries if d.source in members]
                if chosen:
                    loaded = FAMILY_TASKS[family](chosen, tuple(accept), run_id)
                    summary.files.extend(loaded.results)
                    summary.archived += loaded.archived
                    summary.arriving.extend(loaded.arriving)
                    changed.extend(loaded.changed)
            progress_end()
            summary.skipped = len(deliveries) - len(summary.files) - (len(summary.arriving) - len(discovery.arriving))
            publish_run_report(summary)
            if changed:
                raise ArchiveChanged("; ".join(changed))
        except BaseException:
            record_run(settings, run_id, started, "failed", summary.detail(), quiet=True)
            raise
        record_run(settings, run_id, started, "completed", summary.detail())
    return summary


def run_id_now() -> str:
    """This flow run's Prefect id (so that a row in audit.pipeline_runs leads to the run in the UI)."""
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


def record_run(settings: Settings, run_id: str, started: dt.datetime, status: str,
               detail: dict | None = None, *, quiet: bool = False, stage: str = "ingest") -> None:
    """Record a stage (ingest, build, publish) in audit.pipeline_runs and refresh status.json; `quiet` (on the way out of
    a failed run) logs a problem instead of raising it, so that the run's own error is what is seen.

    A stage starting ("running", under the warehouse lock) first closes as abandoned any stage that a dead
    process left running."""
    from sprx.status import refresh_snapshot

    try:
        connection = connect(settings.warehouse_path)
        try:
            if status == "running" and (closed := close_abandoned_runs(connection, run_id)):
                get_run_logger().warning("%d stage(s) left running by a process that died are now recorded as "
                                         "abandoned", closed)
            record_stage(connection, run_id, stage, started, None if status == "running" else utc_now(), status,
                         detail)
            refresh_snapshot(settings.home, connection)
        finally:
            connection.close()
    except Exception as error:
        if not quiet:
            raise
        get_run_logger().warning("the run could not be recorded: %s", type(error).__name__)


# --- reprocess: rebuild the raw zone from archive/ ------------------------------------------


def _replay_order(delivery: Delivery, history: dict[tuple[str, str], int]) -> tuple:
    """The order a reprocess loads in: files the old warehouse recorded, in the order it first took them
    (so that every version decision is taken again as it was); then the rest in the ingest order. An
    archived copy comes before a landing copy of the same bytes."""
    first = history.get((delivery.relative, delivery.sha256))
    return (first is None, first or 0, delivery.archived is None, _order(delivery))


def _wal(database: Path) -> Path:
    """DuckDB's write-ahead log beside a database file."""
    return database.with_name(database.name + ".wal")


def _discard(database: Path) -> None:
    for path in (database, _wal(database)):
        path.unlink(missing_ok=True)


def _swap_in(fresh: Path, warehouse: Path) -> None:
    """Replace the warehouse with the rebuilt file in one rename; keep the old one as BACKUP_NAME."""
    for log in (_wal(fresh), _wal(warehouse)):
        if log.exists():  # both were checkpointed and closed: a log here would belong to the wrong file
            raise RuntimeError(f"{log.name} was left behind; the warehouse was not replaced")
    if warehouse.exists():
        backup = warehouse.with_name(BACKUP_NAME)
        backup.unlink(missing_ok=True)
        try:
            os.link(warehouse, backup)
        except OSError:  # a file system without hard links
            shutil.copy2(warehouse, backup)
    private_file(fresh)
    os.replace(fresh, warehouse)
    directory = os.open(warehouse.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _move_aside(warehouse: Path, error: BaseException) -> Path:
    """Rename a warehouse that cannot be opened (and its write-ahead log) out of the way; where it went."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    aside = warehouse.with_name(f"{CORRUPT_PREFIX}{stamp}.duckdb")
    for source, target in ((_wal(warehouse), _wal(aside)), (warehouse, aside)):
        if source.exists():
            private_file(source)
            os.replace(source, target)
    get_run_logger().warning("%s could not be opened (%s); moved aside to %s, and the raw zone is rebuilt from "
                             "archive/ without its history", warehouse.name, _first_line(error), aside.name)
    return aside


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


def _old_history(warehouse: Path) -> tuple[duckdb.DuckDBPyConnection | None, dict, dict, list]:
    """Open the warehouse being replaced and read what a reprocess keeps from it: the order files were first
    taken, when each was received, and audit.pipeline_runs. A file that cannot be opened or read (corrupt)
    is moved aside and (None, {}, {}, []) returned: the raw zone is rebuilt from archive/ alone."""
    if not warehouse.exists():
        return None, {}, {}, []
    old = None
    try:
        # not migrated: it is read, then replaced, and a migration that fails (a full disk) is not corruption
        old = connect(warehouse, drop_old_keys=False)
        rows = old.execute("select path, sha256, min(file_id), min(received_at) from audit.file_loads "
                           "group by path, sha256").fetchall()
        result = old.execute("select * from audit.pipeline_runs")
        names = [column[0] for column in result.description]
        runs = [dict(zip(names, row)) for row in result.fetchall()]  # fetched whole: nothing left open
    except duckdb.Error as error:
        if is_busy_error(error):
            raise
        if old is not None:
            try:
                old.close()
            except duckdb.Error:
                pass
        _move_aside(warehouse, error)
        return None, {}, {}, []
    history = {(path, sha256): first for path, sha256, first, _ in rows}
    received = {(path, sha256): at for path, sha256, _, at in rows}
    return old, history, received, runs


def _carry_runs(connection: duckdb.DuckDBPyConnection, runs: list[dict]) -> None:
    """Copy the old warehouse's audit.pipeline_runs rows into the new one, by column name."""
    if not runs:
        return
    present = {row[0] for row in connection.execute("describe audit.pipeline_runs").fetchall()}
    names = [name for name in runs[0] if name in present]
    connection.executemany(
        f"insert into audit.pipeline_runs ({', '.join(names)}) values ({', '.join('?' for _ in names)})",
        [[run[name] for name in names] for run in runs])


@task(persist_result=False)
def rebuild_raw_zone(run_id: str) -> tuple[list[FileResult], int]:
    """Load every archived delivery (and every settled delivery waiting in landing/) into a new warehouse file,
    then swap it in; return what happened to each file and how many copies were skipped.

    The old warehouse stays open read-write until the swap, so no other run can start meanwhile; any
    failure before the swap deletes the new file and leaves the old warehouse as it was. A warehouse that
    cannot be opened at all (corrupt) is first moved aside (`warehouse.corrupt-<time>.duckdb`): the archive
    holds everything it was built from. Archived deliveries load as accepted (they were taken once: a
    released EMIS export is not held again), received when the old warehouse recorded them (or when the
    archive says). The new warehouse records the fingerprint of the key in force: this is how the key is
    rotated."""
    logger = get_run_logger()
    settings = get_settings()
    key = load_key(settings)
    warehouse = settings.warehouse_path
    fresh = warehouse.with_name(REBUILD_NAME)
    _discard(fresh)
    old, history, received, runs = _old_history(warehouse)
    try:
        candidates = [(path, source) for source in SOURCES for path in _deliveries_in(settings.landing_dir, source)]
        ready, _ = settled(candidates, settings.landing_settle_seconds)
        now = discovered_now()
        found = archived_deliveries(archive_dir(settings.home)) + [
            _delivery(settings.landing_dir, path, source, now) for path, source in ready]
        deliveries = [replace(delivery, received_at=received.get((delivery.relative, delivery.sha256),
                                                                 delivery.received_at)) for delivery in found]
        deliveries.sort(key=lambda delivery: _replay_order(delivery, history))
        results, skipped = [], 0
        connection = connect(fresh, threads=loading_threads(settings.duckdb_threads))
        try:
            loader = Loader(connection, key, run_id=run_id, home=settings.home)
            for delivery in deliveries:
                loader.join_batch(delivery)
                if loader.already_loaded(delivery):
                    skipped += 1
                    continue
                try:
                    result = loader.load(delivery, accept=delivery.archived is not None)
                except (FileChanged, FileNotFoundError) as error:
                    logger.warning("%s: left for the next run", _first_line(error))
                    continue
                logger.info("%s %s: %s received, %s loaded, %s rejected", result.status, result.relative,
                            result.rows_received, result.rows_loaded, result.rows_rejected)
                results.append(result)
            loader.commit_batch()
            _carry_runs(connection, runs)
            connection.execute("checkpoint")
        finally:
            connection.close()
        if old is not None:
            old.execute("checkpoint")
    except BaseException:
        if old is not None:
            old.close()
        _discard(fresh)
        raise
    if old is not None:
        old.close()
    try:
        _swap_in(fresh, warehouse)
    except BaseException:
        _discard(fresh)
        raise
    return results, skipped


@task(persist_result=False)
def archive_landing(run_id: str) -> int:
    """After a reprocess: move the landing/ deliveries it loaded to archive/; how many moved."""
    settings = get_settings()
    archive = archive_dir(settings.home)
    moved = 0
    connection = connect(settings.warehouse_path)
    try:
        loader = Loader(connection, load_key(settings), run_id=run_id, home=settings.home)
        for delivery in landing_deliveries(settings.landing_dir):
            if loader.recorded_status(delivery) in ARCHIVED_STATUSES:
                moved += archive_delivery(loader, delivery, archive)
    finally:
        connection.close()
    return moved


@flow(name="reprocess", persist_result=False)
def reprocess() -> IngestSummary:
    """archive/ (+ landing/) → a new raw zone and audit trail, swapped in only when complete.

    The new warehouse holds the raw and audit schemas only (and audit.pipeline_runs carried over): the
    dbt-built schemas are rebuilt by `sprx build --full-refresh`. Recorded as an ingest run with
    reprocess = true."""
    settings = get_settings()
    load_key(settings)
    with warehouse_lock(settings.home, "reprocess", settings.lock_wait_seconds), private_umask():
        run_id, started = run_id_now(), utc_now()
        summary = IngestSummary(reprocessed=True)
        try:
            summary.files, summary.skipped = rebuild_raw_zone(run_id)
            summary.archived = archive_landing(run_id)
            publish_run_report(summary)
        except BaseException:
            record_run(settings, run_id, started, "failed", summary.detail(), quiet=True)
            raise
        record_run(settings, run_id, started, "completed", summary.detail())
    return summary
