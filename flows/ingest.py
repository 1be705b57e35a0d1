"""Prefect flows that take landing/ into the raw zone: one per source family, and a parent `ingest`.

    ingest ─► discover_files ─► ingest_gp (emis, systmone) ─► ingest_ambulance ─► ingest_vcse ─► report

Tasks are coarse (one per source, not per file or row): Prefect costs per task. Each file still
loads in its own transaction. Tasks return counts and reasons only, never patient rows, and do
not persist results.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.load import SOURCES, Delivery, FileResult, Loader, file_sha256
from flows.pseudonymise import load_key
from flows.warehouse import connect
from sprx.settings import get_settings

# Where each source's files arrive, under landing/.
SOURCE_FOLDERS = {"emis": "gp/emis", "systmone": "gp/systmone", "ambulance": "ambulance", "vcse": "vcse"}
# Source families: one flow each.
FAMILIES = {"gp": ("emis", "systmone"), "ambulance": ("ambulance",), "vcse": ("vcse",)}
# How many rejection reasons the run report lists.
TOP_REASONS = 10


@dataclass
class IngestSummary:
    """Per-file outcomes of one ingest run (counts and reasons, no identifiers)."""

    files: list[FileResult] = field(default_factory=list)
    skipped: int = 0

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
    received = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None, microsecond=0)
    return Delivery(path=path, relative=path.relative_to(landing).as_posix(), source=source,
                    sha256=file_sha256(path), received_at=received)


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
            if source in sources:
                found.append(_delivery(landing, path, source))
        return found
    for source in sources:
        found.extend(_delivery(landing, path, source) for path in _deliveries_in(landing, source))
    return found


def _order(delivery: Delivery) -> tuple:
    """Oldest first: extract date in the name (GP, ambulance) or time received (VCSE)."""
    digits = [part for part in delivery.path.stem.split("_") if part.isdigit() and len(part) == 8]
    return (digits[-1] if digits else delivery.received_at.strftime("%Y%m%d%H%M%S"), delivery.relative)


@task(retries=1, retry_delay_seconds=10, persist_result=False)
def load_files(deliveries: list[Delivery], accept: tuple[str, ...]) -> list[FileResult]:
    """Load each new delivery in its own transaction; return what happened to each.

    The key is read here from the environment, never passed as a parameter: Prefect records
    parameters, and the key must stay outside the run records."""
    logger = get_run_logger()
    settings = get_settings()
    key = load_key(settings)
    results = []
    connection = connect(settings.warehouse_path)
    try:
        loader = Loader(connection, key)
        for delivery in sorted(deliveries, key=_order):
            accepted = delivery.relative in accept
            if loader.already_loaded(delivery) and not accepted:
                continue
            result = loader.load(delivery, accept=accepted)
            logger.info("%s %s: %s received, %s loaded, %s rejected", result.status, result.relative,
                        result.rows_received, result.rows_loaded, result.rows_rejected)
            results.append(result)
    finally:
        connection.close()
    return results


def _family_flow(family: str):
    @flow(name=f"ingest-{family}", log_prints=False, persist_result=False)
    def family_flow(deliveries: list[Delivery], accept: tuple[str, ...] = ()) -> list[FileResult]:
        return load_files(deliveries, accept)

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

    Settings (home folder, key) come from the SPRX_* environment; a missing key stops the run."""
    settings = get_settings()
    load_key(settings)  # fail before touching anything
    landing = settings.landing_dir
    deliveries = discover_files(landing, tuple(sources), tuple(Path(p) for p in paths) + tuple(
        landing / a for a in accept))
    summary = IngestSummary()
    for family, members in FAMILIES.items():
        chosen = [d for d in deliveries if d.source in members]
        if chosen:
            summary.files.extend(FAMILY_FLOWS[family](chosen, tuple(accept)))
    summary.skipped = len(deliveries) - len(summary.files)
    publish_run_report(summary)
    return summary
