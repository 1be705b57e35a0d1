"""Prefect flows that take landing/ into the raw zone: one per source family, and a parent `ingest`.

    ingest ─► discover_files ─► ingest_gp (emis, systmone) ─► ingest_ambulance ─► ingest_vcse ─► report
    reprocess ─► rebuild_raw_zone (archive/ + landing/ into a new file, swapped in) ─► report

Tasks are coarse (one per source, not per file or row): Prefect costs per task. Each file still
loads in its own transaction, and once its status is final moves to archive/ (`flows.archive`).
Tasks return counts and reasons only, never patient rows, and do not persist results. Each run
records itself in audit.pipeline_runs (stage "ingest") and refreshes $SPRX_HOME/status.json.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.archive import ARCHIVED_STATUSES, archive_dir, archive_relative, archive_roots, move_into_archive
from flows.lock import warehouse_lock
from flows.load import SOURCES, Delivery, FileResult, Loader, file_sha256
from flows.pseudonymise import load_key
from flows.warehouse import connect, record_stage, utc_now
from sprx.settings import Settings, get_settings

# Where each source's files arrive, under landing/.
SOURCE_FOLDERS = {"emis": "gp/emis", "systmone": "gp/systmone", "ambulance": "ambulance", "vcse": "vcse"}
# Source families: one flow each.
FAMILIES = {"gp": ("emis", "systmone"), "ambulance": ("ambulance",), "vcse": ("vcse",)}
# How many rejection reasons the run report lists.
TOP_REASONS = 10
# A reprocess builds the new warehouse beside the old one under this name, and swaps it in when complete.
REBUILD_NAME = "warehouse.reprocess.duckdb"
# A reprocess keeps the warehouse it replaced under this name (a hard link: no extra space) until the next one.
BACKUP_NAME = "warehouse.before-reprocess.duckdb"


@dataclass
class IngestSummary:
    """Per-file outcomes of one ingest run (counts and reasons, no identifiers)."""

    files: list[FileResult] = field(default_factory=list)
    skipped: int = 0
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


def _deliveries_in(landing: Path, source: str) -> list[Path]:
    folder = landing / SOURCE_FOLDERS[source]
    if not folder.is_dir():
        return []
    if source == "vcse":
        return sorted(p for p in folder.glob("*/*") if p.is_file() and not p.name.startswith("."))
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _delivery(landing: Path, path: Path, source: str) -> Delivery:
    """A delivery under a landing-like root; received is the file's modification time (UTC, to the second)."""
    received = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None, microsecond=0)
    return Delivery(path=path, relative=path.relative_to(landing).as_posix(), source=source,
                    sha256=file_sha256(path), received_at=received)


def landing_deliveries(landing: Path, sources: tuple[str, ...] = SOURCES) -> list[Delivery]:
    """Every delivery waiting in landing/ for the chosen sources."""
    return [_delivery(landing, path, source) for source in sources for path in _deliveries_in(landing, source)]


def archived_deliveries(archive: Path) -> list[Delivery]:
    """Every delivery kept in archive/, with its landing path and the time it was first received."""
    found = []
    for root in archive_roots(archive):
        for source in SOURCES:
            found.extend(replace(_delivery(root, path, source), archived=path.relative_to(archive).as_posix())
                         for path in _deliveries_in(root, source))
    return found


@task(retries=2, retry_delay_seconds=[5, 30], persist_result=False)
def discover_files(landing: Path, sources: tuple[str, ...], paths: tuple[Path, ...]) -> list[Delivery]:
    """Find deliveries: the given paths, or every file under landing/ for the chosen sources."""
    found: list[Delivery] = []
    if paths:
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
            if source in sources:
                found.append(_delivery(landing, path, source))
        return found
    return landing_deliveries(landing, tuple(sources))


def _order(delivery: Delivery) -> tuple:
    """Oldest first: extract date in the name (GP, ambulance) or time received (VCSE); then the landing
    path; then the time received (two versions of one path, met only in a reprocess)."""
    digits = [part for part in delivery.path.stem.split("_") if part.isdigit() and len(part) == 8]
    return (digits[-1] if digits else delivery.received_at.strftime("%Y%m%d%H%M%S"), delivery.relative,
            delivery.received_at.isoformat())


def archive_delivery(loader: Loader, delivery: Delivery, archive: Path) -> bool:
    """Move a delivery whose recorded status is final to archive/; True when it moved.

    The archive path is recorded first: a crash before the move leaves the file in landing/, and the
    next run (finding it recorded) moves it. A move that fails leaves it in landing/ with a warning."""
    archived = archive_relative(archive, delivery.relative, delivery.sha256)
    loader.mark_archived(delivery, archived)
    try:
        move_into_archive(delivery.path, archive, archived, delivery.sha256, delivery.received_at)
    except OSError as error:
        loader.connection.execute("update audit.file_loads set archived_path = null where path = ? and sha256 = ?",
                                  [delivery.relative, delivery.sha256])
        get_run_logger().warning("%s stays in landing/: it could not be archived (%s)", delivery.relative,
                                 error.strerror or type(error).__name__)
        return False
    return True


@task(retries=1, retry_delay_seconds=10, persist_result=False)
def load_files(deliveries: list[Delivery], accept: tuple[str, ...], run_id: str | None = None
               ) -> tuple[list[FileResult], int]:
    """Load each new delivery in its own transaction and archive the ones whose status is final; return
    what happened to each and how many moved to archive/.

    A delivery already recorded is not read again (a held one waits for `accept`); when its status is
    final it is archived now (a crash after its load, or a copy put back in landing/). The key is read
    here from the environment, never passed as a parameter: Prefect records parameters, and the key
    must stay outside the run records."""
    logger = get_run_logger()
    settings = get_settings()
    key = load_key(settings)
    archive = archive_dir(settings.home)
    results, archived = [], 0
    connection = connect(settings.warehouse_path)
    try:
        loader = Loader(connection, key, run_id=run_id, home=settings.home)
        for delivery in sorted(deliveries, key=_order):
            accepted = delivery.relative in accept
            recorded = loader.recorded_status(delivery)
            if recorded is not None and not (accepted and recorded == "held"):
                if recorded in ARCHIVED_STATUSES:
                    archived += archive_delivery(loader, delivery, archive)
                continue
            result = loader.load(delivery, accept=accepted)
            logger.info("%s %s: %s received, %s loaded, %s rejected", result.status, result.relative,
                        result.rows_received, result.rows_loaded, result.rows_rejected)
            results.append(result)
            if result.status in ARCHIVED_STATUSES:
                archived += archive_delivery(loader, delivery, archive)
    finally:
        connection.close()
    return results, archived


def _family_flow(family: str):
    @flow(name=f"ingest-{family}", log_prints=False, persist_result=False)
    def family_flow(deliveries: list[Delivery], accept: tuple[str, ...] = (), run_id: str | None = None
                    ) -> tuple[list[FileResult], int]:
        return load_files(deliveries, accept, run_id)

    family_flow.__doc__ = f"Load the {family} feeds ({', '.join(FAMILIES[family])})."
    return family_flow


ingest_gp = _family_flow("gp")
ingest_ambulance = _family_flow("ambulance")
ingest_vcse = _family_flow("vcse")
FAMILY_FLOWS = {"gp": ingest_gp, "ambulance": ingest_ambulance, "vcse": ingest_vcse}


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
    load_key(settings)  # fail before touching anything
    with warehouse_lock(settings.home, "ingest", settings.lock_wait_seconds):
        run_id, started = run_id_now(), utc_now()
        record_run(settings, run_id, started, "running")
        summary = IngestSummary()
        try:
            landing = settings.landing_dir
            deliveries = discover_files(landing, tuple(sources), tuple(Path(p) for p in paths) + tuple(
                landing / a for a in accept))
            for family, members in FAMILIES.items():
                chosen = [d for d in deliveries if d.source in members]
                if chosen:
                    results, archived = FAMILY_FLOWS[family](chosen, tuple(accept), run_id)
                    summary.files.extend(results)
                    summary.archived += archived
            summary.skipped = len(deliveries) - len(summary.files)
            publish_run_report(summary)
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
    a failed run) logs a problem instead of raising it, so that the run's own error is what is seen."""
    from sprx.status import refresh_snapshot

    try:
        connection = connect(settings.warehouse_path)
        try:
            record_stage(connection, run_id, stage, started, None if status == "running" else utc_now(), status,
                         detail)
            if status != "running":
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
    os.replace(fresh, warehouse)
    directory = os.open(warehouse.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@task(persist_result=False)
def rebuild_raw_zone(run_id: str) -> tuple[list[FileResult], int]:
    """Load every archived delivery (and every delivery waiting in landing/) into a new warehouse file,
    then swap it in; return what happened to each file and how many copies were skipped.

    The old warehouse stays open read-write until the swap, so no other run can start meanwhile; any
    failure before the swap deletes the new file and leaves the old warehouse as it was. Archived
    deliveries load as accepted (they were taken once: a released EMIS export is not held again)."""
    logger = get_run_logger()
    settings = get_settings()
    key = load_key(settings)
    warehouse = settings.warehouse_path
    fresh = warehouse.with_name(REBUILD_NAME)
    _discard(fresh)
    old = connect(warehouse)
    try:
        history = {(path, sha256): first for path, sha256, first in old.execute(
            "select path, sha256, min(file_id) from audit.file_loads group by path, sha256").fetchall()}
        runs = old.execute("select * from audit.pipeline_runs").fetchall()  # fetched whole: nothing left open
        deliveries = archived_deliveries(archive_dir(settings.home)) + landing_deliveries(settings.landing_dir)
        deliveries.sort(key=lambda delivery: _replay_order(delivery, history))
        results, skipped = [], 0
        connection = connect(fresh)
        try:
            loader = Loader(connection, key, run_id=run_id, home=settings.home)
            for delivery in deliveries:
                if loader.already_loaded(delivery):
                    skipped += 1
                    continue
                result = loader.load(delivery, accept=delivery.archived is not None)
                logger.info("%s %s: %s received, %s loaded, %s rejected", result.status, result.relative,
                            result.rows_received, result.rows_loaded, result.rows_rejected)
                results.append(result)
            if runs:
                connection.executemany("insert into audit.pipeline_runs values (?, ?, ?, ?, ?, ?)", runs)
            connection.execute("checkpoint")
        finally:
            connection.close()
        old.execute("checkpoint")
    except BaseException:
        old.close()
        _discard(fresh)
        raise
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
    with warehouse_lock(settings.home, "reprocess", settings.lock_wait_seconds):
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
