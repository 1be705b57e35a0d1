"""Prefect flow `build`: the dbt project (seeds, models, data and unit tests) on the pipeline's warehouse.

    build ─► prepare_warehouse ─► dbt_build ─► publish_build_report

dbt runs in this process through its programmatic runner (``dbtRunner``), with the project and
its profile in ``dbt_project/``; the profile reads ``SPRX_HOME`` and opens
``$SPRX_HOME/warehouse.duckdb``, bounded by the same DuckDB memory limit, threads and spill folder as
every pipeline connection (``flows.warehouse.duckdb_settings``). dbt's run artefacts (``target/``: manifest, run results) and logs
go to ``$SPRX_HOME/dbt/``, beside the warehouse they describe, so two homes never share them.
Tasks return counts and node names only, never data rows. A build with any failed model or test
fails the flow, after the report is published.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.lock import warehouse_lock
from flows.warehouse import connect, duckdb_settings, load_watermark, utc_now
from sprx.permissions import private_umask
from sprx.settings import DBT_PROJECT_DIR, get_settings

# Node statuses that fail a build (dbt's NodeStatus values): a model or seed error, a failing test, and
# a node skipped because something it depends on failed.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "skipped"})
# How much of a failure's message the summary keeps (dbt's messages name the node and the count).
MESSAGE_LENGTH = 300
# How many failures the one-paragraph description lists (the summary keeps them all).
LISTED_FAILURES = 20


class DbtBuildError(RuntimeError):
    """dbt build failed: a model did not build or a test failed. Carries the build's summary."""

    def __init__(self, summary: BuildSummary) -> None:
        super().__init__(summary.describe())
        self.summary = summary


@dataclass
class BuildSummary:
    """What one `dbt build` did: counts per resource type and status, and what failed (no data rows)."""

    success: bool
    seconds: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def count(self, resource_type: str, *statuses: str) -> int:
        """How many nodes of this type ended in any of these statuses."""
        return sum(self.counts.get(resource_type, {}).get(status, 0) for status in statuses)

    @property
    def models_built(self) -> int:
        return self.count("model", "success")

    @property
    def models_failed(self) -> int:
        return self.count("model", "error", "skipped")

    @property
    def seeds_loaded(self) -> int:
        return self.count("seed", "success")

    @property
    def tests_passed(self) -> int:
        """Data tests and unit tests that passed."""
        return self.count("test", "pass") + self.count("unit_test", "pass")

    @property
    def tests_warned(self) -> int:
        return self.count("test", "warn") + self.count("unit_test", "warn")

    @property
    def tests_failed(self) -> int:
        """Data tests and unit tests that failed, errored or were skipped because something upstream failed."""
        return sum(self.count(kind, "fail", "error", "skipped") for kind in ("test", "unit_test"))

    def describe(self) -> str:
        """One line for people: what was built and tested, and how long it took."""
        line = (f"dbt build {'passed' if self.success else 'FAILED'} in {self.seconds:.1f}s: "
                f"{self.seeds_loaded} seeds, {self.models_built} models built ({self.models_failed} failed), "
                f"{self.tests_passed} tests passed, {self.tests_warned} warned, {self.tests_failed} failed")
        listed = self.failures[:LISTED_FAILURES]
        if len(self.failures) > len(listed):
            listed.append(f"... and {len(self.failures) - len(listed)} more")
        return "\n  ".join([line, *listed])


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a dbt call, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_arguments(command: str, home: Path, *extra: str) -> list[str]:
    """A dbt command line ("build", "source freshness", ...) for this project, artefacts and logs under home/dbt."""
    return [
        *command.split(),
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(home / "dbt" / "target"),
        "--log-path", str(home / "dbt" / "logs"),
        *extra,
    ]


def invoke_dbt(arguments: list[str], home: Path):
    """Run one dbt command in-process against home's warehouse; returns dbt's own result object."""
    from dbt.cli.main import dbtRunner  # imported here: dbt's import is slow and sets up its logging

    from sprx import spark_session

    spark_session.enable()  # Python models on a local Spark session (a no-op without dbt-spark)
    bounds = duckdb_settings(get_settings())  # the profile reads them: dbt's connection is bounded like the others
    with _environment(SPRX_HOME=str(home), SPRX_DUCKDB_MEMORY_LIMIT=bounds["memory_limit"],
                      SPRX_DUCKDB_THREADS=bounds["threads"], SPRX_DUCKDB_TEMP_DIRECTORY=bounds["temp_directory"]), \
            private_umask():  # the warehouse's log, dbt's files: owner-only
        try:
            return dbtRunner().invoke(arguments)
        finally:
            close_warehouse_handle()


def close_warehouse_handle() -> None:
    """Close the DuckDB database dbt-duckdb kept open for the build (profile: keep_open), checkpointing it.

    Keeping one handle open through a build instead of reopening the file for each of its ~700 nodes
    more than halves its time; closing it when dbt returns frees the warehouse for the publish step
    and the next ingest in this long-lived process."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = getattr(DuckDBConnectionManager, "_ENV", None)
    DuckDBConnectionManager.close_all_connections()
    if environment is not None:
        environment.close()


def summarise(result, seconds: float) -> BuildSummary:
    """Counts per resource type and status from a dbtRunnerResult, and the failed nodes' messages."""
    counts: dict[str, Counter] = {}
    failures: list[str] = []
    for node_result in getattr(result.result, "results", None) or []:
        kind = str(node_result.node.resource_type)
        status = str(node_result.status)
        counts.setdefault(kind, Counter())[status] += 1
        if status in FAILED_STATUSES:
            message = " ".join(str(node_result.message or "").split())[:MESSAGE_LENGTH]
            failures.append(f"{kind} {node_result.node.name}: {status}" + (f" ({message})" if message else ""))
    if result.exception is not None:
        failures.append(f"dbt stopped: {' '.join(str(result.exception).split())[:MESSAGE_LENGTH]}")
    return BuildSummary(
        success=bool(result.success) and not failures,
        seconds=seconds,
        counts={kind: dict(statuses) for kind, statuses in counts.items()},
        failures=failures,
    )


@task(persist_result=False)
def prepare_warehouse(warehouse: Path) -> dict[str, int]:
    """Make sure the raw and audit schemas exist, so that a home with nothing ingested builds empty models; return
    the raw zone's `load_watermark`, read under the build's lock before dbt opens the warehouse."""
    connection = connect(warehouse)
    try:
        return load_watermark(connection)
    finally:
        connection.close()


@task(persist_result=False)
def dbt_build(home: Path, select: tuple[str, ...] = (), full_refresh: bool = False) -> BuildSummary:
    """`dbt build` (seeds, models, data tests and unit tests, in dependency order); counts, never rows.

    `full_refresh` passes --full-refresh (incremental models and seeds rebuilt from scratch). No retries:
    a failed model or test fails again until the data or the code changes."""
    verbose = get_settings().verbose
    # a partial build runs the tests whose models it builds or reads (dbt's "buildable"), not dbt's default
    # "eager" set, which takes a test of a selected model and an unselected one that may not exist yet
    narrowed = ("--select", *select, "--indirect-selection", "buildable") if select else ()
    arguments = dbt_arguments("build", home, *narrowed,
                              *(("--full-refresh",) if full_refresh else ()),
                              # dbt's console: warnings and errors only unless verbose; its full log is in home/dbt/logs
                              "--log-level", "info" if verbose else "warn",
                              *(() if verbose and sys.stdout.isatty() else ("--no-use-colors",)))
    started = time.perf_counter()
    result = invoke_dbt(arguments, home)
    summary = summarise(result, time.perf_counter() - started)
    get_run_logger().info(summary.describe())
    return summary


@task(persist_result=False)
def publish_build_report(summary: BuildSummary) -> None:
    """A Prefect table artifact: nodes per resource type and status, and what failed."""
    rows = [{"resource type": kind, "status": status, "nodes": count}
            for kind, statuses in sorted(summary.counts.items()) for status, count in sorted(statuses.items())]
    rows += [{"resource type": "failed", "status": failure, "nodes": 1} for failure in summary.failures]
    create_table_artifact(key="dbt-build", table=rows or [{"resource type": "(nothing run)"}],
                          description=summary.describe().splitlines()[0])


@flow(name="build", persist_result=False)
def build(select: tuple[str, ...] = (), full_refresh: bool = False) -> BuildSummary:
    """raw → staging → intermediate → marts: `dbt build` on $SPRX_HOME/warehouse.duckdb; fails when dbt fails.

    `select` narrows the build with dbt's selection syntax (default: everything); `full_refresh` rebuilds
    incremental models and seeds from scratch (after `sprx ingest --reprocess`)."""
    from flows.ingest import record_run, run_id_now

    settings = get_settings()
    run_id, started = run_id_now(), utc_now()
    with warehouse_lock(settings.home, "build", settings.lock_wait_seconds):
        # recorded as running first: a build that is killed stays "running" until the next stage closes it
        # as abandoned, and publish refuses to copy what it left
        record_run(settings, run_id, started, "running", stage="build")
        try:
            # what the raw zone held as a full build began: `sprx run --if-loaded` builds again only when it changes
            watermark = prepare_warehouse(settings.warehouse_path)
            if select:
                watermark = {}  # a partial build does not bring every mart up to the raw zone
            summary = dbt_build(settings.home, tuple(select), full_refresh)
        except BaseException:
            record_run(settings, run_id, started, "failed", quiet=True, stage="build")
            raise
        record_run(settings, run_id, started, "completed" if summary.success else "failed", {
            "models_built": summary.models_built, "models_failed": summary.models_failed,
            "tests_passed": summary.tests_passed, "tests_failed": summary.tests_failed,
            "seconds": round(summary.seconds, 1), **watermark}, quiet=not summary.success, stage="build")
    publish_build_report(summary)
    if not summary.success:
        raise DbtBuildError(summary)
    return summary
