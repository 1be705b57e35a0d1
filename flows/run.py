"""Prefect flow `run`: the whole pipeline, as scheduled and as `sprx run` runs it.

    run ─► ingest ─► build ─► publish          (holding the warehouse lock throughout)

Each stage is its own flow (a subflow here), so the Prefect UI shows where a run spent its time and
where it stopped. A stage that fails stops the run: a failed build never publishes, so analysts keep
the previous copy. Quarantined rows and held files do not fail a run; they are reported.
With ``build="if-loaded"`` (what the schedules use) the build runs only when the raw zone holds loads the
last complete build did not see (from this run, or from an earlier one that stopped before its build),
or when the last build failed or was killed; the publish runs after a build, or alone when the last
completed build was never published. A quiet 15-minute VCSE check so costs an ingest, not a dbt build,
and a run that died part-way is finished by the next scheduled one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger

from flows.build import BuildSummary, build
from flows.ingest import IngestSummary, ingest, waiting_in_landing
from flows.load import SOURCES
from flows.lock import warehouse_lock
from flows.publish import PublishSummary, publish
from flows.warehouse import connect, load_watermark, outstanding_work
from sprx.settings import get_settings

# When to build after ingesting: always, or only when something is outstanding (see the module's docstring).
BuildWhen = Literal["always", "if-loaded"]


class StageFailed(RuntimeError):
    """A stage of the run failed; carries the stage's name and a one-line reason (no identifiers)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class RunSummary:
    """What each stage of one run did (counts only)."""

    ingest: IngestSummary
    build: BuildSummary | None = None
    publish: PublishSummary | None = None
    # True when the warehouse holds no loaded file at all (an empty home): nothing was built or published.
    nothing_to_publish: bool = False

    @property
    def files_loaded(self) -> int:
        return self.ingest.by_status().get("loaded", 0)


def _reason(error: BaseException) -> str:
    summary = getattr(error, "summary", None)  # DbtBuildError carries its build summary
    text = summary.describe() if summary is not None else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def _outstanding(warehouse: Path) -> tuple[bool, bool, bool]:
    """(anything ever loaded, build due, publish due) for the warehouse (called under the lock)."""
    connection = connect(warehouse)
    try:
        return (load_watermark(connection)["loaded_files"] > 0, *outstanding_work(connection))
    finally:
        connection.close()


def nothing_to_do(sources: list[str] | None = None) -> bool:
    """True only when landing/ holds no file for these sources and the warehouse, opened read-only, has no build
    or publish outstanding under the key in force: then `sprx run --if-loaded` has nothing to do and need not
    start Prefect. Any doubt (a warehouse in use or from another key, nothing recorded) says False, and the
    run goes ahead as usual."""
    import duckdb

    from flows.pseudonymise import MissingKeyError, key_fingerprint, load_key

    settings = get_settings()
    if waiting_in_landing(settings.landing_dir, tuple(sources or SOURCES)) or not settings.warehouse_path.exists():
        return False
    try:
        fingerprint = key_fingerprint(load_key(settings))
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
            recorded = connection.execute("select fingerprint from audit.pseudonymisation_key").fetchall()
            loaded = load_watermark(connection)["loaded_files"]
            due = outstanding_work(connection)
    except (duckdb.Error, MissingKeyError):  # in use by a run, from before this version, or no usable key
        return False
    return recorded == [(fingerprint,)] and loaded > 0 and due == (False, False)


@flow(name="run", persist_result=False)
def run(sources: list[str] | None = None, build_when: BuildWhen = "always") -> RunSummary:
    """Ingest what is new for these sources (default all), then build and publish; stop at the first failure."""
    settings = get_settings()
    logger = get_run_logger()
    chosen = tuple(sources or SOURCES)
    unknown = sorted(set(chosen) - set(SOURCES))
    if unknown:
        raise StageFailed("run", f"unknown source(s) {unknown}; choose from {list(SOURCES)}")
    with warehouse_lock(settings.home, "run", settings.lock_wait_seconds):
        try:
            ingested = ingest(sources=chosen)
        except Exception as error:
            raise StageFailed("ingest", _reason(error)) from error
        summary = RunSummary(ingest=ingested)
        anything_loaded, build_due, publish_due = _outstanding(settings.warehouse_path)
        if not anything_loaded:
            logger.info("no file has ever loaded into this warehouse: nothing to build or publish")
            summary.nothing_to_publish = True
            return summary
        if build_when == "always" or build_due:
            try:
                summary.build = build()
            except Exception as error:
                raise StageFailed("build", _reason(error)) from error
        elif not publish_due:
            logger.info("nothing new to build from %s: no build, the published copy stands", ", ".join(chosen))
            return summary
        else:
            logger.info("nothing new to build; the last completed build was never published: publishing it")
        try:
            summary.publish = publish()
        except Exception as error:
            raise StageFailed("publish", _reason(error)) from error
    return summary
