"""Fault injection: kill -9 anywhere, a full disk, a half-written file, two runs at once, a reader throughout.

Every case starts from a copy of one home with a slice of the sample feeds in landing/ (or, for a fault
after the ingest, of one home that has ingested it), breaks a `sprx run` on it, then lets a normal `sprx run`
finish; the raw zone, the audit trail of files, the
files kept (landing/ + archive/), the marts and the published copy must then equal those of one
clean `sprx run` of the same slice made the same day (nothing lost, nothing doubled). The marts date what they
report by the day files came, so when the suite runs past midnight another clean run is made for the new day (a
case whose own runs straddle midnight still differs from both). Long: `make test-faults` (marker `faults`, left
out of the default run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from sprx.settings import PROJECT_ROOT, SAMPLE_FEEDS_DIR
from tests.conftest import TEST_KEY
from tests.helpers import published_readers, raw_state

pytestmark = pytest.mark.faults

# The slice of the sample feeds every case runs on: every source and shape (EMIS snapshots, SystmOne
# folders and zips, overlapping ambulance weeks, VCSE CSV and workbook sheets with a correction).
SLICE = (
    "gp/emis/emis_P91004_*",
    "gp/systmone/systmone_P91006_2024*",
    "ambulance/ambulance_RX7_202501*",
    "vcse/trafford-walking-for-health/december-2022-*",  # a register and its corrected copy
    "vcse/age-uk-trafford-lunch-club/Lunch club january 2025.xlsx",
)
# Columns whose values depend on when a run found a file or ran, not on what the files hold.
RUN_TIME_COLUMNS = ("received", "loaded_at", "days_silent", "is_late", "as_of_date", "published_at", "age_days")
# A file's id follows the order files were loaded in: a file held back by a fault (half-written) is taken after
# the others, so its id differs from the clean run's. So a mart row's file_id is compared as the file it names
# (its landing path and sha256), and a key hashed from the file id is left out (the row still carries the file,
# field and reason it was made from); any file recorded twice fails the case.
FILE_ID_COLUMN = "file_id"
FILE_ID_KEYS = ("file_rejection_reason_key",)  # mart_data_quality_reasons: md5(file_id | field | reason)
# kill -9 points (tests/faults/inject.py): the stage boundaries of `sprx run`, then points inside ingest (in a
# file's load transaction, between load and archive, in the move to archive/, before the run is recorded; in the
# slice's order, staged:7 is the fifth SystmOne delta of a batch of eleven, committed:3 that batch's commit with
# none of its files archived yet, marked:3 the archive paths of the five EMIS exports recorded, none of them moved),
# inside the dbt build (after its 1st, 60th and 150th node) and inside publish.
KILL_POINTS = (
    "before:ingest", "after:ingest", "before:build", "after:build", "before:publish", "after:publish",
    "staged:1", "staged:7", "committed:2", "committed:3", "committed:9", "marked:3", "archived:1", "archived:7",
    "recorded:ingest",
    "dbt-node:1", "dbt-node:60", "dbt-node:150", "recorded:build",
    "publish-task:export_release", "publish-task:check_release", "published:1", "recorded:publish",
)
# Kill points inside ingest start from the landed slice; the others (build and publish) from a copy of one home
# where `sprx ingest` already took the slice, so their killed run does not repeat the same ingest (what it
# leaves at the kill is the same: every file archived, the raw zone loaded, the ingest recorded).
INGEST_POINTS = frozenset(point for point in KILL_POINTS if point.endswith("ingest") or point.split(":")[0] in (
    "staged", "committed", "marked", "archived"))
# How many cases are run at once (each run is mostly one busy process).
WORKERS = int(os.environ.get("SPRX_FAULTS_WORKERS", "2"))
# Longest a test waits for its case, seconds (every case queues behind the ones before it).
CASE_TIMEOUT = 3 * 3600
# Largest file a process may write while the disk "fills" in each stage (RLIMIT_FSIZE), chosen from the
# reference run's own file sizes: between what the stage starts with and what it needs.
STAGES = ("ingest", "build", "publish")


def environment(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "SPRX_HOME": str(home), "SPRX_PSEUDONYMISATION_KEY": TEST_KEY, "PREFECT_API_URL": api_url,
            "SPRX_LANDING_SETTLE_SECONDS": "0", **extra}


def sprx(home: Path, api_url: str, *arguments: str, point: str | None = None, file_limit: int | None = None,
         timeout: float = 1800, **extra: str) -> subprocess.CompletedProcess:
    """Run sprx in its own process (with a fault point, or a file-size limit standing for a full disk)."""
    command = [sys.executable, "-m", "tests.faults.inject", point, "--", *arguments] if point else [
        sys.executable, "-m", "sprx", *arguments]

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(command, env=environment(home, api_url, **extra), cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit)


def land_slice(home: Path) -> None:
    """Copy the slice of the sample feeds into home/landing."""
    for pattern in SLICE:
        for path in SAMPLE_FEEDS_DIR.glob(pattern):
            target = home / "landing" / path.relative_to(SAMPLE_FEEDS_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, target)


def _kept_files(home: Path) -> list[tuple[str, int]]:
    """Every delivered file still kept, in landing/ or archive/, by its landing path and size."""
    kept = []
    for root in (home / "landing", home / "archive"):
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file() and not path.name.startswith("."):
                relative = path.relative_to(root).as_posix()
                if root.name == "archive" and relative.startswith("versions/"):
                    relative = relative.split("/", 2)[2]
                kept.append((relative, path.stat().st_size))
    return sorted(kept)


def _tables(connection: duckdb.DuckDBPyConnection, schemas: tuple[str, ...],
            files: dict[int, tuple[str, str]]) -> dict[str, list[tuple]]:
    """Rows of every table in schemas named like these (sorted), without run-time columns, a file id given as
    the file it names (files: path and sha256 by file id)."""
    found = {}
    tables = connection.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
        "order by all").fetchall()
    for schema, table in tables:
        if not schema.endswith(schemas):
            continue
        columns = [name for name, kind, *_ in connection.execute(f'describe "{schema}"."{table}"').fetchall()
                   if not any(word in name for word in RUN_TIME_COLUMNS) and "TIMESTAMP" not in kind
                   and name not in FILE_ID_KEYS]
        rows = connection.execute(f'select {", ".join(chr(34) + c + chr(34) for c in columns)} '
                                  f'from "{schema}"."{table}"').fetchall()
        at = columns.index(FILE_ID_COLUMN) if FILE_ID_COLUMN in columns else None
        found[f"{schema.rsplit('_', 1)[-1]}.{table}"] = sorted(
            (tuple(files.get(value, ("unknown file id", value)) if index == at else _steady(value)
                   for index, value in enumerate(row)) for row in rows), key=repr)
    return found


def _steady(value):
    """A float to 10 significant digits: DuckDB sums in parallel, so the last digits vary from run to run."""
    return float(f"{value:.10g}") if isinstance(value, float) else value


def snapshot(home: Path) -> dict:
    """What a finished run leaves, without what depends on when it ran."""
    warehouse = home / "warehouse.duckdb"
    state: dict = {"raw": raw_state(warehouse), "kept": _kept_files(home)}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        state["file_loads"] = sorted(connection.execute(
            "select path, sha256, status, rows_received, rows_loaded, rows_rejected, message, archived_path "
            "from audit.file_loads").fetchall(), key=repr)
        state["rejected_rows"] = sorted(connection.execute(
            "select f.path, f.sha256, r.path, r.row_number, r.field, r.reason, r.value "
            "from audit.rejected_rows r join audit.file_loads f using (file_id)").fetchall(), key=repr)
        files = {file_id: (path, sha256) for file_id, path, sha256 in connection.execute(
            "select file_id, path, sha256 from audit.file_loads").fetchall()}
        state["marts"] = _tables(connection, ("marts", "published"), files)
    with duckdb.connect(str(home / "published" / "analytics.duckdb"), read_only=True) as connection:
        state["published"] = _tables(connection, ("published",), files)  # built from this warehouse: same ids
    published = home / "published"
    # the files of the current release (published/current; its folder's name differs from run to run)
    current = (published / "current").resolve()
    state["published_files"] = sorted(p.relative_to(current).as_posix() for p in current.rglob("*")
                                      if p.is_file())
    manifest = json.loads((published / "manifest.json").read_text(encoding="utf-8"))
    state["manifest_tables"] = manifest["tables"]
    return state


def differences(state: dict, reference: dict) -> list[str]:
    """Which parts of a snapshot differ from the reference (empty when equal)."""
    found = []
    for part, expected in reference.items():
        actual = state.get(part)
        if isinstance(expected, dict) and isinstance(actual, dict):
            found.extend(f"{part}.{name}" for name in sorted(set(expected) | set(actual))
                         if expected.get(name) != actual.get(name))
        elif actual != expected:
            found.append(part)
    return found


@pytest.fixture(scope="module")
def api_url(prefect_harness) -> str:
    from prefect.settings import get_current_settings

    return str(get_current_settings().api.url)


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Path:
    """A home with the slice in landing/ and nothing else (copy it before use)."""
    home = tmp_path_factory.mktemp("landed") / "home"
    land_slice(home)
    return home


def fresh(landed: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(landed, home)
    return home


def doubled_files(home: Path) -> list[tuple]:
    """Files (path and content) the audit trail records more than once."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute("select path, sha256, count(*) from audit.file_loads "
                                  "group by all having count(*) > 1").fetchall()


def recover(home: Path, api_url: str) -> tuple[subprocess.CompletedProcess, dict | None, list]:
    """A normal `sprx run` after a fault: its result, the snapshot it leaves and any file recorded twice."""
    done = sprx(home, api_url, "run")
    if done.returncode != 0:
        return done, None, []
    return done, snapshot(home), doubled_files(home)


def recover_and_compare(home: Path, api_url: str, homes: Homes) -> None:
    """A normal `sprx run` after the fault finishes the work; everything equals the clean run's."""
    done, state, doubled = recover(home, api_url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert homes.differences(state) == [] and doubled == []


def today() -> tuple[dt.date, dt.date]:
    """The date in UTC and in the UK: the marts date what they report as of the day files were received (in the UK)
    and the audit trail keeps UTC, so a clean run compared with a case must have run on the same dates."""
    now = dt.datetime.now(dt.UTC)
    return now.date(), now.astimezone(ZoneInfo("Europe/London")).date()


class Homes:
    """The starting points the cases copy: the landed slice, one home that ingested it, one clean run of it (and
    another for each later day the cases run into: a suite that runs past midnight)."""

    def __init__(self, landed: Path, ingested: Future | None, reference: Future, folder, api_url: str) -> None:
        self.landed, self._ingested, self._reference = landed, ingested, reference
        self._folder, self._api_url = folder, api_url
        self._later: dict[tuple[dt.date, dt.date], tuple[Path, dict]] = {}
        self._lock = threading.Lock()

    @property
    def ingested(self) -> Path:
        return self._ingested.result()

    @property
    def reference(self) -> tuple[Path, dict]:
        """The clean run's home and snapshot (submitted first, so a case waiting for it never waits on itself)."""
        return self._reference.result()[1:]

    def differences(self, state: dict) -> list[str]:
        """What of a recovered home's snapshot differs from a clean run's made on the same day: the first clean
        run's, or (when the day has changed since it ran and they differ) one made now, once a day."""
        day, _, reference = self._reference.result()
        found = differences(state, reference)
        if found and today() != day:
            with self._lock:
                day = today()
                if day not in self._later:
                    day, *made = make_reference(self.landed, self._api_url, self._folder("reference"))
                    self._later[day] = tuple(made)
                later = self._later[day]
            found = differences(state, later[1])
        return found


def make_ingested(landed: Path, api_url: str, folder: Path) -> Path:
    """A home where `sprx ingest` took the slice, nothing built yet (copy it before use)."""
    home = fresh(landed, folder)
    done = sprx(home, api_url, "ingest")
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def make_reference(landed: Path, api_url: str, folder: Path) -> tuple[tuple[dt.date, dt.date], Path, dict]:
    """One clean `sprx run` of the slice, on one day (run again when the day changed during it): the day, its home
    and its snapshot."""
    while True:
        day = today()
        home = fresh(landed, folder / "-".join(date.isoformat() for date in day))
        done = sprx(home, api_url, "run")
        assert done.returncode == 0, done.stderr[-3000:]
        if today() == day:
            return day, home, snapshot(home)


def kill_case(point: str, homes: Homes, api_url: str, folder: Path):
    """Kill a `sprx run` at point, then a normal run: both results, how the snapshot left differs from a clean
    run's and files recorded twice."""
    home = fresh(homes.landed if point in INGEST_POINTS else homes.ingested, folder)
    killed = sprx(home, api_url, "run", point=point)
    done, state, doubled = recover(home, api_url)
    return killed, done, None if state is None else homes.differences(state), doubled


def case_of(item: pytest.Item) -> str:
    """The name of the case a collected test waits for (a kill point, full-disk:STAGE, or the test's own)."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    if "point" in params:
        return params["point"]
    if "stage" in params:
        return f"full-disk:{params['stage']}"
    return {"test_a_file_appearing_half_written_is_taken_whole": "half-written",
            "test_two_runs_at_once_take_everything_once": "two-runs",
            "test_a_reader_holding_the_published_copy_throughout": "reader"}[item.originalname]


@pytest.fixture(scope="module")
def cases(request, landed: Path, api_url: str, tmp_path_factory):
    """The cases of the tests selected in this module, run in the background WORKERS at a time from the start of
    the module (the clean reference run and the ingested home first, as the others start from or compare with
    them); each test waits for its own case's result (a case's failed assertion is raised in its test)."""
    chosen = {case_of(item) for item in request.session.items if item.module is request.module}
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    folder = tmp_path_factory.mktemp
    # the ingested home only when a chosen case starts from it (a build or publish kill point, a full disk after ingest)
    needs_ingested = any(case in KILL_POINTS and case not in INGEST_POINTS
                         or case in ("full-disk:build", "full-disk:publish") for case in chosen)
    homes = Homes(landed, pool.submit(make_ingested, landed, api_url, folder("ingested")) if needs_ingested else None,
                  pool.submit(make_reference, landed, api_url, folder("reference")), folder, api_url)
    futures: dict[str, Future] = {}
    for point in (point for point in KILL_POINTS if point in chosen):
        futures[point] = pool.submit(kill_case, point, homes, api_url, folder(point.replace(":", "-")))
    for stage in (stage for stage in STAGES if f"full-disk:{stage}" in chosen):
        futures[f"full-disk:{stage}"] = pool.submit(full_disk_case, stage, homes, api_url, folder(f"full-{stage}"))
    for name, case in (("half-written", half_written_case), ("two-runs", two_runs_case), ("reader", reader_case)):
        if name in chosen:
            futures[name] = pool.submit(case, homes, api_url, folder(name))
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_then_a_normal_run_equals_a_clean_run(point: str, cases) -> None:
    killed, done, found, doubled = cases[point].result(timeout=CASE_TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, f"{point} was not reached: {killed.stderr[-2000:]}"
    assert done.returncode == 0, done.stderr[-3000:]
    assert found == [] and doubled == []


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.mark.parametrize("stage", STAGES)
def test_a_full_disk_during_each_stage_fails_cleanly_then_a_normal_run_equals_a_clean_run(stage: str, cases) -> None:
    cases[f"full-disk:{stage}"].result(timeout=CASE_TIMEOUT)


def full_disk_case(stage: str, homes: Homes, api_url: str, tmp_path: Path) -> None:
    """The largest file a stage writes is cut off part way (EFBIG, as ENOSPC): the stage fails with a message,
    and nothing is lost or left half done."""
    home = fresh(homes.landed if stage == "ingest" else homes.ingested, tmp_path)  # reach it with room to spare
    if stage == "publish":
        assert sprx(home, api_url, "build").returncode == 0
    if stage == "ingest":
        limit = 1024 * 1024  # the raw zone of the slice takes several times this
    elif stage == "build":
        limit = _size(home / "warehouse.duckdb") + 256 * 1024
    else:  # half the clean run's analysts' copy (the only case that waits for the reference before its fault)
        limit = _size(homes.reference[0] / "published" / "analytics.duckdb") // 2
    full = sprx(home, api_url, "publish" if stage == "publish" else "run", file_limit=limit)
    assert full.returncode != 0, f"the disk did not fill during {stage}"
    last = (full.stderr.strip().splitlines() or [""])[-1]
    assert stage in full.stderr and "Traceback" not in last, full.stderr[-2000:]
    recover_and_compare(home, api_url, homes)


def test_a_file_appearing_half_written_is_taken_whole(cases) -> None:
    cases["half-written"].result(timeout=CASE_TIMEOUT)


def half_written_case(homes: Homes, api_url: str, tmp_path: Path) -> None:
    """A sender writes an ambulance file slowly all through a run: the run leaves it in landing/ (it never
    settles), and the next run, once the sender has finished, takes it whole."""
    home = fresh(homes.landed, tmp_path)
    name = next(p for p in sorted((home / "landing" / "ambulance").iterdir()))
    content = name.read_bytes()
    name.unlink()
    stop, written = threading.Event(), [0]

    def write_slowly() -> None:
        """4 bytes every 0.2 s: the file grows for longer than a run may take (900 s), until the run is over."""
        with open(name, "wb") as handle:
            while written[0] < len(content) - 1 and not stop.wait(0.2):
                end = min(written[0] + 4, len(content) - 1)  # never the last byte: the sender is not done
                handle.write(content[written[0]:end])
                handle.flush()
                written[0] = end

    writer = threading.Thread(target=write_slowly)
    writer.start()
    try:
        # a settle interval well above the writer's pauses, even on a busy machine
        during = sprx(home, api_url, "run", SPRX_LANDING_SETTLE_SECONDS="5")
    finally:
        stop.set()
        writer.join()
    assert during.returncode == 0, during.stderr[-3000:]
    assert 0 < written[0] < len(content) and name.exists(), "the run took a file that was still being written"
    name.write_bytes(content)  # the sender finishes the file
    recover_and_compare(home, api_url, homes)


def test_two_runs_at_once_take_everything_once(cases) -> None:
    cases["two-runs"].result(timeout=CASE_TIMEOUT)


def two_runs_case(homes: Homes, api_url: str, tmp_path: Path) -> None:
    """Two `sprx run` started together on one home: both succeed, and every file is taken once."""
    home = fresh(homes.landed, tmp_path)
    command = [sys.executable, "-m", "sprx", "run"]
    runs = [subprocess.Popen(command, env=environment(home, api_url), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=1800) for run in runs]
    # the second waits for the first's lock (SPRX_LOCK_WAIT_SECONDS, 30 minutes), then finds nothing new
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in results]
    assert homes.differences(snapshot(home)) == [] and doubled_files(home) == []




# How many tables a reader finds in the published copy: the same number before and after every run.
PUBLISHED_TABLES_QUERY = "select count(*) from information_schema.tables where table_schema = 'published'"


def test_a_reader_holding_the_published_copy_throughout(cases) -> None:
    cases["reader"].result(timeout=CASE_TIMEOUT)


def reader_case(homes: Homes, api_url: str, tmp_path: Path) -> None:
    """Readers keep querying while runs are killed and run again: never an error, never half a copy."""
    reference = homes.reference
    home = tmp_path / "home"
    shutil.copytree(reference[0], home, symlinks=True)  # published/ as a publish leaves it: symlinks
    extra = SAMPLE_FEEDS_DIR / "ambulance" / "ambulance_RX7_20250204.csv"
    shutil.copy2(extra, home / "landing" / "ambulance" / extra.name)
    # a reader that holds the published copy open all along, and one that opens it afresh for each query
    with published_readers(home / "published" / "analytics.duckdb", tmp_path, PUBLISHED_TABLES_QUERY) as reports:
        time.sleep(1)
        assert sprx(home, api_url, "run", point="published:1").returncode == -signal.SIGKILL
        done = sprx(home, api_url, "run")
        assert done.returncode == 0, done.stderr[-3000:]
        time.sleep(1)
    tables = len(reference[1]["published"])
    for mode, report in reports.items():
        assert report["queries"] > 10 and report["errors"] == [] and report["seen"] == [tables], (mode, report)
