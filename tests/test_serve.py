"""`sprx serve`: its schedules fire, against `prefect server start` and against the local server it starts.

Each test starts the real `sprx serve` with the VCSE schedule set to every minute, drops VCSE sheets in
landing once the deployments are registered, and waits (bounded) until a run the scheduler created has
completed and `sprx status --json` shows the publish. Nothing is triggered by hand except the
operations guide's `prefect deployment run run/full`, which must work in both modes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.serve import free_port
from sprx.settings import SAMPLE_FEEDS_DIR
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.slow

# What `sprx serve` registers: deployment name -> (cron, sources, build_when), the VCSE one set by the test.
EVERY_MINUTE = "* * * * *"
EXPECTED = {
    "gp-nightly": ("30 2 * * *", ["emis", "systmone"], "if-loaded"),
    "ambulance-weekly": ("0 6 * * 1", ["ambulance"], "if-loaded"),
    "vcse-frequent": (EVERY_MINUTE, ["vcse"], "if-loaded"),
    "full": (None, None, "always"),
}
SERVICE = "partington-men-in-sheds"
# Bounds: a server starting on a loaded machine, and a scheduled run (up to a minute's wait, ingest, dbt build, publish).
STARTUP_SECONDS = 240
RUN_SECONDS = 600


def _environment(home: Path, **extra: str) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    environment.update({"SPRX_HOME": str(home), "SPRX_PSEUDONYMISATION_KEY": TEST_KEY,
                        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return environment


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Stop a process group started with start_new_session; return its output (kept in a file)."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    output = getattr(process, "output_path", None)
    return output.read_text(errors="replace") if output else ""


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> Iterator[str]:
    """A real `prefect server start` (with its scheduler), as the operations guide runs it; yields its API URL."""
    folder = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    environment = _environment(folder, PREFECT_HOME=str(folder / "prefect"))
    output = folder / "server.log"
    with open(output, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                    "--port", str(port)], env=environment, start_new_session=True,
                                   stdout=log, stderr=subprocess.STDOUT)
    process.output_path = output
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(api_url):
            assert process.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server start did not answer"
            time.sleep(1)
        yield api_url
    finally:
        _stop(process, signal.SIGTERM)


def _start_serve(tmp_path: Path, home: Path, **extra: str) -> subprocess.Popen:
    """Start `sprx serve` with its output in a file (a pipe nobody reads would stall it)."""
    output = tmp_path / "serve.out"
    with open(output, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "sprx", "serve", "--vcse-cron", EVERY_MINUTE],
                                   env=_environment(home, **extra), cwd=tmp_path, start_new_session=True,
                                   stdout=log, stderr=subprocess.STDOUT)
    process.output_path = output
    return process


def _read_line(process: subprocess.Popen, pattern: str, seconds: float) -> tuple[re.Match, list[str]]:
    """Wait until a line of serve's output matches; returns the match and the lines so far."""
    deadline = time.monotonic() + seconds
    while True:
        lines = process.output_path.read_text(errors="replace").splitlines()
        for line in lines:
            if found := re.search(pattern, line):
                return found, lines
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"sprx serve never printed {pattern!r}:\n" + "\n".join(lines[-40:]))
        time.sleep(0.5)


def _registered(api_url: str) -> dict:
    """The sprx deployments registered with the server at api_url, once all four are there."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + STARTUP_SECONDS
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            deployments = {d.name: d for d in client.read_deployments() if "sprx" in (d.tags or [])}
            if set(EXPECTED) <= set(deployments):
                return deployments
            assert time.monotonic() < deadline, "sprx serve did not register its deployments"
            time.sleep(1)


def _status(home: Path) -> dict | None:
    result = subprocess.run([sys.executable, "-m", "sprx", "status", "--json"], capture_output=True, text=True,
                            env=_environment(home))
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return None


def _wait_for_scheduled_publish(home: Path, serve: subprocess.Popen, api_url: str) -> dict:
    """Wait until a scheduled vcse-frequent run completed and `sprx status --json` shows its publish."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + RUN_SECONDS
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            assert serve.poll() is None, _stop(serve)[-3000:]
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=["vcse-frequent"])))
            failed = [run for run in runs if run.state and run.state.is_final() and not run.state.is_completed()]
            assert not failed, [(run.name, run.state.message) for run in failed]
            done = [run for run in runs if run.state and run.state.is_completed()]
            status = _status(home) if done else None
            if status and (status["runs"]["publish"] or {}).get("status") == "completed":
                assert all(run.auto_scheduled for run in done), "a run was not made by the scheduler"
                return status
            assert time.monotonic() < deadline, f"no scheduled run completed and published in {RUN_SECONDS} s"
            time.sleep(3)


def _drop_sheets(home: Path) -> int:
    target = home / "landing" / "vcse" / SERVICE
    shutil.copytree(SAMPLE_FEEDS_DIR / "vcse" / SERVICE, target)
    return len(list(target.iterdir()))


def _check_published(home: Path, status: dict, sheets: int) -> None:
    import duckdb

    vcse = [feed for feed in status["feeds"] if feed["source"] == "vcse"]
    assert [feed["organisation"] for feed in vcse] == [SERVICE]
    assert status["runs"]["build"]["status"] == "completed"
    # every sheet loaded once (by the first scheduled run; the status may already show a later one, which found
    # nothing new), read once serve has stopped and nothing holds the warehouse
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from audit.file_loads where source = 'vcse' "
                                  "and status = 'loaded'").fetchone()[0] == sheets
    with duckdb.connect(str(home / "published" / "analytics.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from published.pub_vcse_activity").fetchone()[0] > 0


def _trigger_full(api_url: str) -> None:
    """The operations guide's trigger command, against the server serve uses."""
    result = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "run/full"],
                            capture_output=True, text=True, env={**os.environ, "PREFECT_API_URL": api_url})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Created flow run" in result.stdout


@pytest.fixture(scope="module")
def serving(tmp_path_factory, prefect_server) -> Iterator[dict[str, tuple[Path, Path, int, subprocess.Popen]]]:
    """`sprx serve` both ways at once, each on its own home with VCSE sheets already landed: against
    `prefect server start` ("server"), and with no PREFECT_API_URL ("local"). Started together, their first
    scheduled runs wait for the same minute. Yields mode -> (folder, home, sheets landed, serve process)."""
    started = {}
    try:
        for mode, extra in (("server", {"PREFECT_API_URL": prefect_server}), ("local", {})):
            folder = tmp_path_factory.mktemp(f"serve-{mode}")
            home = folder / "home"
            sheets = _drop_sheets(home)
            started[mode] = (folder, home, sheets, _start_serve(folder, home, **extra))
        yield started
    finally:
        for _, _, _, process in started.values():
            _stop(process)


def test_a_schedule_fires_and_publishes_against_prefect_server_start(serving, prefect_server):
    _, home, sheets, serve = serving["server"]
    try:
        _read_line(serve, r"using the Prefect server at " + re.escape(prefect_server), STARTUP_SECONDS)
        deployments = _registered(prefect_server)
        for name, (cron, sources, build_when) in EXPECTED.items():
            deployment = deployments[name]
            crons = [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]
            assert crons == ([(cron, "Europe/London")] if cron else []), name
            assert deployment.parameters == {"sources": sources, "build_when": build_when}, name
            assert deployment.global_concurrency_limit.limit == 1, name
        status = _wait_for_scheduled_publish(home, serve, prefect_server)
        _trigger_full(prefect_server)
    finally:
        output = _stop(serve)
    _check_published(home, status, sheets)
    assert "\x1b[" not in output  # no colour codes when the output is not a terminal


def test_a_schedule_fires_and_publishes_on_the_local_server_serve_starts(serving):
    _, home, sheets, serve = serving["local"]
    try:
        found, lines = _read_line(serve, r"started a local Prefect server .*PREFECT_API_URL=(\S+) prefect "
                                         r"deployment run run/full", STARTUP_SECONDS)
        api_url = found.group(1)
        assert _healthy(api_url)
        # it says what it serves, and on which schedules
        _, more = _read_line(serve, r"run/full\s+on demand", 60)
        assert any(re.search(r"run/vcse-frequent\s+cron '\* \* \* \* \*' Europe/London", line) for line in more)
        assert set(EXPECTED) <= set(_registered(api_url))
        status = _wait_for_scheduled_publish(home, serve, api_url)
        _trigger_full(api_url)
    finally:
        _stop(serve)
    _check_published(home, status, sheets)
    # the server lived under the home and went with serve
    assert (home / "prefect").is_dir() and (home / "logs" / "prefect-server.log").is_file()
    deadline = time.monotonic() + 30
    while _healthy(api_url):
        assert time.monotonic() < deadline, "the local Prefect server outlived sprx serve"
        time.sleep(1)
