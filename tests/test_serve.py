"""`sprx serve`: the deployments are registered on their schedules, and a triggered run completes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from sprx.settings import SAMPLE_FEEDS_DIR
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.slow

# What `sprx serve` registers: deployment name -> (cron, sources, build_when), with one schedule overridden.
EXPECTED = {
    "gp-nightly": ("30 2 * * *", ["emis", "systmone"], "if-loaded"),
    "ambulance-weekly": ("0 6 * * 1", ["ambulance"], "if-loaded"),
    "vcse-frequent": ("*/5 * * * *", ["vcse"], "if-loaded"),  # set by --vcse-cron below
    "full": (None, None, "always"),
}


@pytest.fixture
def api_url(prefect_harness) -> str:
    from prefect.settings import get_current_settings

    return str(get_current_settings().api.url)


def test_serve_registers_its_deployments_and_a_triggered_run_completes(tmp_path, api_url):
    from prefect import get_client
    from prefect.deployments import run_deployment

    home = tmp_path / "home"
    service = "partington-men-in-sheds"
    shutil.copytree(SAMPLE_FEEDS_DIR / "vcse" / service, home / "landing" / "vcse" / service)
    environment = {**os.environ, "SPRX_HOME": str(home), "SPRX_PSEUDONYMISATION_KEY": TEST_KEY,
                   "PREFECT_API_URL": api_url}
    server = subprocess.Popen([sys.executable, "-m", "sprx", "serve", "--vcse-cron", "*/5 * * * *"],
                              env=environment, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 120
            while True:
                deployments = {d.name: d for d in client.read_deployments() if "sprx" in (d.tags or [])}
                if set(EXPECTED) <= set(deployments):
                    break
                assert server.poll() is None, server.communicate()[0][-3000:]
                assert time.monotonic() < deadline, "sprx serve did not register its deployments"
                time.sleep(1)
            for name, (cron, sources, build_when) in EXPECTED.items():
                deployment = deployments[name]
                crons = [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]
                assert crons == ([(cron, "Europe/London")] if cron else []), name
                assert deployment.parameters == {"sources": sources, "build_when": build_when}, name
                assert deployment.global_concurrency_limit.limit == 1, name

        flow_run = run_deployment("run/vcse-frequent", timeout=300, poll_interval=1)
        assert flow_run.state.is_completed(), flow_run.state
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    sheets = len(list((SAMPLE_FEEDS_DIR / "vcse" / service).iterdir()))
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        loaded = connection.execute(
            "select count(*) from audit.file_loads where source = 'vcse' and status = 'loaded'").fetchone()[0]
    assert loaded == sheets
    with duckdb.connect(str(home / "published" / "analytics.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from published.pub_vcse_activity").fetchone()[0] > 0
