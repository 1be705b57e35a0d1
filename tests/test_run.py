"""`sprx run` as production runs it: the analysts' copy stays readable through runs, kills and failures.

One home is run twice with a slice of the committed sample feeds (every source and shape, a few senders
of each) split in two (up to 31 October 2025, then the rest) while reader processes query
published/analytics.duckdb; the later tests start from the published copy that leaves and check that a
killed run, a failed build and a busy warehouse never touch it. What is published from the whole sample
is checked on the session's demo home (`sample_home`).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from flows.lock import lock_path, warehouse_lock
from flows.publish import release_problems
from flows.warehouse import connect, load_watermark, outstanding_work, record_stage
from sprx.settings import SAMPLE_FEEDS_DIR
from tests.conftest import TEST_KEY
from tests.helpers import published_readers

pytestmark = pytest.mark.slow

# The sample is split at this delivery date: files dated up to it land before the first run.
SPLIT = "20251031"
# The senders whose deliveries the runs take: two EMIS practices, a SystmOne practice (folders and zips), the
# ambulance service, and two VCSE services (a CSV one and a workbook one).
SENDERS = ("emis_P91004_", "emis_P91007_", "systmone_P91003_", "ambulance_RX7_", "trafford-walking-for-health/",
           "age-uk-trafford-lunch-club/")
# A reader's query: one row per delivered file, so the count grows when a run loads new files.
READER_QUERY = "select count(*) from published.pub_data_quality"



MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")


def _delivery_date(path: Path) -> str:
    """YYYYMMDD of a sample delivery from its name (a sheet named by month counts as its first day)."""
    name = path.name.lower()
    if found := re.search(r"(\d{8})", name):
        return found.group(1)
    if found := re.search(r"(\d{4})[_-](\d{2})", name):
        return f"{found.group(1)}{found.group(2)}01"
    if found := re.search(rf"({'|'.join(MONTHS)})[ _-](\d{{4}})", name):
        return f"{found.group(2)}{MONTHS.index(found.group(1)) + 1:02d}01"
    raise AssertionError(f"no date in {path.name}")


def deliveries() -> list[Path]:
    """The slice's deliveries: a file, or a SystmOne folder or zip; sheets under their service."""
    found = [path for family in ("gp/emis", "gp/systmone", "ambulance")
             for path in sorted((SAMPLE_FEEDS_DIR / family).iterdir())]
    found += sorted((SAMPLE_FEEDS_DIR / "vcse").glob("*/*"))
    return [path for path in found if any(sender in path.relative_to(SAMPLE_FEEDS_DIR).as_posix()
                                          for sender in SENDERS)]


def land(home: Path, *, after: str | None = None, until: str | None = None) -> int:
    """Copy the sample deliveries dated in (after, until] into home/landing; returns how many."""
    landed = 0
    for path in deliveries():
        date = _delivery_date(path)
        if (after and date <= after) or (until and date > until):
            continue
        target = home / "landing" / path.relative_to(SAMPLE_FEEDS_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            shutil.copy2(path, target)
        landed += 1
    return landed


def sprx(home: Path, api_url: str, *arguments: str, **popen) -> subprocess.Popen:
    """Start the real `sprx` command against home, talking to the test session's Prefect server."""
    environment = {**os.environ, "SPRX_HOME": str(home), "SPRX_PSEUDONYMISATION_KEY": TEST_KEY,
                   "PREFECT_API_URL": api_url, "SPRX_LOCK_WAIT_SECONDS": "60"}
    environment.update(popen.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "sprx", *arguments], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def published_count(home: Path) -> int:
    with duckdb.connect(str(home / "published" / "analytics.duckdb"), read_only=True) as connection:
        return connection.execute(READER_QUERY).fetchone()[0]


@pytest.fixture(scope="module")
def api_url(prefect_harness) -> str:
    from prefect.settings import get_current_settings

    return str(get_current_settings().api.url)


@pytest.fixture(scope="module")
def published_home(tmp_path_factory, api_url):
    """A home run twice by `sprx run` while readers query its published copy; yields (home, reports)."""
    home = tmp_path_factory.mktemp("run") / "home"
    assert land(home, until=SPLIT) > 50
    code, out, err = finish(sprx(home, api_url, "run", env={"PREFECT_LOGGING_LEVEL": "INFO"}))
    assert code == 0, err[-3000:]
    first = published_count(home)
    (home.parent / "first-run.out").write_text(out)
    (home.parent / "first-run.err").write_text(err)

    with published_readers(home / "published" / "analytics.duckdb", home.parent, READER_QUERY) as reports:
        time.sleep(1)
        assert land(home, after=SPLIT) > 50
        # new files; then a scheduled-style run that finds nothing new (no build: the published copy stands)
        runs = [finish(sprx(home, api_url, "run")), finish(sprx(home, api_url, "run", "--if-loaded"))]
        time.sleep(1)
    return home, first, runs, reports


def test_readers_see_no_errors_and_the_new_data_after_each_publish(published_home):
    home, first, runs, reports = published_home
    assert [code for code, _, _ in runs] == [0, 0], [err[-2000:] for _, _, err in runs]
    assert "Published" in runs[0][1]
    assert "Nothing new was loaded" in runs[1][1] and "Published" not in runs[1][1]
    for mode, report in reports.items():
        assert report["queries"] > 20 and report["errors"] == [], mode
    # the second run published the new files, and a reader opening new connections saw them
    assert published_count(home) > first
    assert reports["loop"]["seen"] == [first, published_count(home)]
    # the analyst whose session stayed open all along kept working, on the copy it had opened
    assert reports["kept"]["seen"] == [first]


def test_a_run_prints_progress_and_a_summary_and_keeps_prefects_log_in_a_file(published_home):
    home = published_home[0]
    out = (home.parent / "first-run.out").read_text()
    err = (home.parent / "first-run.err").read_text()
    delivered = int(re.search(r"Ingest: (\d+) new deliveries", out).group(1))
    # progress: n of N deliveries (not a terminal: a few lines, the last one complete)
    counts = re.findall(r"ingest: (\d+) of (\d+) deliveries", err)
    assert counts and counts[-1] == (str(delivered), str(delivered)) and len(counts) <= 5
    assert "Build: dbt build passed" in out and "Published " in out
    # Prefect's own lines (and dbt's) went to the log files, not the console; no colour codes
    assert "Beginning flow run" not in out + err and "Running with dbt" not in out + err
    assert "Beginning flow run" in (home / "logs" / "sprx.log").read_text()
    assert "\x1b[" not in out + err
    assert len((out + err).splitlines()) < 40


def test_published_folder_holds_the_published_schema_only(published_home):
    home = published_home[0]
    published = home / "published"
    assert sorted(p.name for p in published.iterdir()) == ["analytics.duckdb", "csv", "current", "manifest.json",
                                                           "parquet", "releases", "report"]
    manifest = json.loads((published / "manifest.json").read_text())
    with duckdb.connect(str(published / "analytics.duckdb"), read_only=True) as connection:
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables order by all").fetchall()
    assert {schema for schema, _ in tables} == {"published"}
    names = sorted(name for _, name in tables)
    assert names == sorted(manifest["tables"]) and all(name.startswith("pub_") or name == "data_coverage"
                                                       for name in names)
    assert sorted(p.stem for p in (published / "parquet").iterdir()) == names
    assert sorted(p.stem for p in (published / "csv").iterdir()) == names
    # `sprx status` reports the last build and publish of the run
    status = subprocess.run([sys.executable, "-m", "sprx", "status", "--json"], capture_output=True, text=True,
                            env={**os.environ, "SPRX_HOME": str(home)}, check=True)
    runs = json.loads(status.stdout)["runs"]
    assert runs["build"]["status"] == runs["publish"]["status"] == "completed"
    assert runs["build"]["detail"]["tests_failed"] == 0 and runs["publish"]["detail"]["tables"] == len(names)


def test_a_run_killed_during_the_build_leaves_the_previous_copy(published_home, api_url):
    home = published_home[0]
    before = (home / "published" / "manifest.json").read_text()
    count = published_count(home)
    process = sprx(home, api_url, "run", start_new_session=True)
    deadline = time.monotonic() + 300
    while "build" not in (lock_path(home).read_text() if lock_path(home).exists() else ""):
        assert process.poll() is None and time.monotonic() < deadline, "the run never reached the build"
        time.sleep(0.2)
    time.sleep(3)  # well into dbt
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert (home / "published" / "manifest.json").read_text() == before
    assert published_count(home) == count
    assert not list((home / "published").glob(".release-*"))
    # the operating system released the lock with the process: the next run is not blocked
    with warehouse_lock(home, "test", wait_seconds=0):
        pass


def test_finding_3_publish_refuses_a_half_built_warehouse_and_closes_the_dead_build(published_home, api_url):
    """Issue 13, finding 3: after a run killed mid-build, `sprx publish` copied the half-built published
    schema and the dead build stayed `running` in audit.pipeline_runs."""
    home = published_home[0]
    before = (home / "published" / "manifest.json").read_text()
    status = json.loads(subprocess.run([sys.executable, "-m", "sprx", "status", "--json"], capture_output=True,
                                       text=True, env={**os.environ, "SPRX_HOME": str(home)}, check=True).stdout)
    assert status["runs"]["build"]["status"] == "abandoned"  # the killed build: recorded, and seen to be dead
    code, out, err = finish(sprx(home, api_url, "publish"))
    assert code == 1, out
    assert len(err.strip().splitlines()) == 1 and "did not complete (abandoned)" in err, err
    assert (home / "published" / "manifest.json").read_text() == before
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        builds = connection.execute("select status from audit.pipeline_runs where stage = 'build' "
                                    "order by started_at desc limit 1").fetchall()
        running = connection.execute("select count(*) from audit.pipeline_runs where status = 'running'").fetchone()
    assert builds == [("abandoned",)] and running == (0,)  # closed for good by the publish that refused
    check = subprocess.run([sys.executable, "-m", "sprx", "status", "--check"], capture_output=True, text=True,
                           env={**os.environ, "SPRX_HOME": str(home)})
    assert check.returncode == 1 and "last run failed or abandoned: build, publish" in check.stdout


def test_a_scheduled_run_with_nothing_new_finishes_what_a_killed_build_left(published_home, api_url):
    """After the killed build above (nothing new in landing), `sprx run --if-loaded`, as the schedules run it,
    builds and publishes; the one after it has nothing to do."""
    home = published_home[0]
    before = (home / "published" / "manifest.json").read_text()
    code, out, err = finish(sprx(home, api_url, "run", "--if-loaded"))
    assert code == 0, err[-3000:]
    assert "Build: dbt build passed" in out and "Published" in out, out
    assert (home / "published" / "manifest.json").read_text() != before
    # with landing/ empty and nothing outstanding, the next finds that without Prefect (none is reachable here)
    code, out, err = finish(sprx(home, api_url, "run", "--if-loaded", env={"PREFECT_API_URL": "http://127.0.0.1:9/api"}))
    assert code == 0, err[-3000:]
    assert "Nothing new was loaded: no build" in out and "no flow run was started" in out, out
    assert "Published" not in out
    # a file in landing/ (the same bytes again: a duplicate) goes through the run as usual, and builds nothing
    again = next(path for path in deliveries() if path.is_file() and path.parent.name == "ambulance")
    shutil.copy2(again, home / "landing" / "ambulance" / "again.csv")
    code, out, err = finish(sprx(home, api_url, "run", "--if-loaded"))
    assert code == 0, err[-3000:]
    assert "Nothing new was loaded: no build, and the published copy stands." in out.splitlines(), out


def _warehouse_with_one_load(path: Path) -> duckdb.DuckDBPyConnection:
    connection = connect(path)
    _load_file(connection, 1)
    return connection


def _load_file(connection: duckdb.DuckDBPyConnection, file_id: int, loaded_at: str = "2026-01-01 10:00:00") -> None:
    connection.execute(
        "insert into audit.file_loads (file_id, source, path, sha256, received_at, loaded_at, rows_received, "
        "rows_loaded, rows_rejected, status) values (?, 'vcse', ?, ?, ?, ?, 1, 1, 0, 'loaded')",
        [file_id, f"vcse/{file_id}.csv", f"{file_id:064d}", loaded_at, loaded_at])


def _stage(connection, run_id: str, stage: str, at: str, status: str = "completed", watermark: bool = True) -> None:
    moment = dt.datetime.fromisoformat(at)
    detail = load_watermark(connection) if watermark else {}
    record_stage(connection, run_id, stage, moment, moment + dt.timedelta(minutes=1), status, detail)


def test_what_a_scheduled_run_finds_outstanding(tmp_path):
    """`--if-loaded` builds when the marts are behind the raw zone and publishes when analysts are behind the marts."""
    connection = _warehouse_with_one_load(tmp_path / "warehouse.duckdb")
    assert outstanding_work(connection) == (True, False)  # loaded, never built
    _stage(connection, "r1", "build", "2026-01-01 11:00:00")
    assert outstanding_work(connection) == (False, True)  # built, never published
    _stage(connection, "r1", "publish", "2026-01-01 11:05:00")
    assert outstanding_work(connection) == (False, False)  # nothing to do
    _stage(connection, "r2", "build", "2026-01-01 12:00:00", status="abandoned")
    assert outstanding_work(connection) == (True, False)  # a killed build is built again
    _stage(connection, "r3", "build", "2026-01-01 13:00:00")
    _stage(connection, "r3", "publish", "2026-01-01 13:05:00")
    _stage(connection, "r4", "build", "2026-01-01 14:00:00", watermark=False)  # `sprx build --select`: partial
    assert outstanding_work(connection)[0] is False  # the last full build saw every load
    _load_file(connection, 2, "2026-01-01 15:00:00")  # loaded by a run that died before its build
    assert outstanding_work(connection)[0] is True
    _stage(connection, "r5", "build", "2026-01-01 16:00:00")
    _stage(connection, "r5", "publish", "2026-01-01 16:05:00")
    assert outstanding_work(connection) == (False, False)
    # a reprocess reloads the same files later (same count, newer commit times): built again
    connection.execute("update audit.file_loads set loaded_at = loaded_at + interval 1 day")
    assert outstanding_work(connection) == (True, False)
    connection.close()


def test_a_failed_build_exits_1_naming_the_stage_and_never_publishes(published_home, api_url):
    home = published_home[0]
    before = (home / "published" / "manifest.json").read_text()
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:  # a duplicated raw row breaks a key test
        connection.execute("insert into raw.emis_events select * from raw.emis_events limit 1")
    try:
        code, out, err = finish(sprx(home, api_url, "run"))
    finally:
        with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
            connection.execute("""
                delete from raw.emis_events where rowid in (
                    select rowid from (select rowid, row_number() over (
                        partition by practice_code, extract_date, row_number order by rowid) as copy
                        from raw.emis_events) where copy > 1)""")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("sprx run: failed at build: dbt build FAILED"), last
    assert "stg_emis__events" in last
    assert (home / "published" / "manifest.json").read_text() == before


def test_a_run_waits_for_the_lock_then_gives_up_with_a_clear_message(published_home, api_url):
    home = published_home[0]
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from flows.lock import warehouse_lock
        with warehouse_lock(Path({str(home)!r}), "held by a test", 0):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = finish(sprx(home, api_url, "run", env={"SPRX_LOCK_WAIT_SECONDS": "1"}))
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert f"another sprx process holds {home} (pid {holder.pid}: held by a test" in err.strip().splitlines()[-1]


def sample_identifiers() -> set[str]:
    """Every NHS number, name and postcode in the sample feeds' GP and ambulance files, as written there."""
    found: set[str] = set()
    columns = {"NHS Number", "Family Name", "Calling Name", "Postcode",  # EMIS
               "NHSNumber", "FirstName", "Surname",  # SystmOne SRPatient
               "nhs_number", "postcode"}  # ambulance
    for path in sorted(SAMPLE_FEEDS_DIR.glob("gp/emis/*.csv")) + sorted(SAMPLE_FEEDS_DIR.glob(
            "gp/systmone/*/SRPatient.csv")) + sorted(SAMPLE_FEEDS_DIR.glob("ambulance/*.csv")):
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if "NHS" in line or "nhs_number" in line)
        for row in csv.DictReader(lines[start:]):
            found.update(value.strip() for key, value in row.items() if key in columns and value and value.strip())
    return found


def test_nothing_under_published_holds_a_small_count_or_an_identifier(sample_home):
    home = sample_home  # the whole sample, published by the session's demo
    identifiers = sample_identifiers()
    assert len(identifiers) > 5000  # NHS numbers, names and postcodes of thousands of people
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        tokens = {token for (token,) in connection.execute(
            "select nhs_number_token from raw.emis_patients union select name_dob_token from raw.vcse_attendances"
        ).fetchall() if token}
    assert len(tokens) > 1000
    hex_run = re.compile(r"[0-9a-f]{32,}")
    published = home / "published"
    assert release_problems(published / "analytics.duckdb") == []
    with duckdb.connect(str(published / "analytics.duckdb"), read_only=True) as connection:
        # integer columns described as organisational counts (files, rows, sessions) or not counts are not redacted
        exempt = set(connection.execute(
            "select table_name, column_name from duckdb_columns() where schema_name = 'published' and "
            "(starts_with(comment, 'Organisational count (not redacted)') or starts_with(comment, 'Not a count'))"
        ).fetchall())
    with duckdb.connect() as connection:
        for parquet in sorted((published / "parquet").glob("*.parquet")):
            relation = connection.execute("select * from read_parquet(?)", [str(parquet)])
            names = [column[0] for column in relation.description]
            for row in relation.fetchall():
                for name, value in zip(names, row, strict=True):
                    if isinstance(value, int) and not isinstance(value, bool) and (parquet.stem, name) not in exempt:
                        assert value == 0 or (value > 7 and value % 5 == 0), (parquet.name, name)
                    if isinstance(value, str):
                        assert value not in identifiers and value not in tokens, (parquet.name, name)
                        assert not hex_run.search(value), (parquet.name, name)
    for path in sorted(published.rglob("*")):
        if path.is_file() and path.suffix in (".csv", ".json"):
            text = path.read_text(encoding="utf-8")
            assert not hex_run.search(text), path.name
            cells = {cell for row in csv.reader(io.StringIO(text)) for cell in row} if path.suffix == ".csv" else set()
            assert not cells & identifiers, path.name
            assert not re.search(r"(?<![0-9])[0-9]{10}(?![0-9])", text), path.name


def test_every_example_in_the_analysts_guide_runs_and_every_published_column_is_described(sample_home,
                                                                                            monkeypatch):
    from sprx.settings import PROJECT_ROOT

    home = sample_home  # the whole sample, published by the session's demo
    guide = (PROJECT_ROOT / "docs" / "analysts.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(sql|python)\n(.*?)```", guide, flags=re.DOTALL)
    assert sum(kind == "sql" for kind, _ in blocks) >= 7 and sum(kind == "python" for kind, _ in blocks) >= 7
    monkeypatch.chdir(home)  # the guide's paths start at $SPRX_HOME
    with duckdb.connect("published/analytics.duckdb", read_only=True) as connection:
        for kind, code in blocks:
            if kind == "sql":
                assert connection.execute(code).fetchall(), code
        columns = connection.execute(
            "select table_name, column_name from information_schema.columns where table_schema = 'published'"
        ).fetchall()
    for kind, code in blocks:
        if kind == "python":
            exec(compile(code, "docs/analysts.md", "exec"), {})  # noqa: S102 - our own documentation's examples
    for table, column in columns:
        assert f"### `{table}`" in guide, table
        section = guide.split(f"### `{table}`", 1)[1].split("\n### ", 1)[0]
        assert f"| `{column}` |" in section, (table, column)
