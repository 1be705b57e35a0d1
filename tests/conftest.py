"""Shared test set-up: one Prefect test harness per session, a temporary PREFECT_HOME, a test key."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

# Prefect reads its settings when first imported: point it at a throwaway home before that, removed
# when this process (the session, or one xdist worker) exits.
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="sprx-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Files the tests land are whole when written: take them at once (tests of the settle interval set their own).
os.environ.setdefault("SPRX_LANDING_SETTLE_SECONDS", "0")

TEST_KEY = "test-key-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):  # generous: CI machines can be busy
        yield


@pytest.fixture
def sprx_home(tmp_path, monkeypatch):
    """A fresh SPRX_HOME with a pseudonymisation key set."""
    home = tmp_path / "home"
    monkeypatch.setenv("SPRX_HOME", str(home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", TEST_KEY)
    return home


@dataclass(frozen=True)
class DemoRun:
    """`sprx demo` run once on a fresh home: its exit code, what it printed, and the home it left."""

    home: Path
    code: int
    out: str
    err: str

    @property
    def key(self) -> str:
        """The key the demo made for itself (in the home's key file)."""
        return (self.home / "pseudonymisation.key").read_text(encoding="utf-8").strip()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, prefect_harness) -> DemoRun:
    """`sprx demo` on a fresh home with no key set, once per session (it lands, ingests, builds and publishes
    the committed sample feeds, the same work every sample test needs): tests/test_cli.py checks what it
    printed, and its home is the session's sample warehouse (`sample_home`)."""
    from sprx.cli import main

    home = tmp_path_factory.mktemp("demo") / "home"
    saved = dict(os.environ)  # the demo sets its own key in the environment: put everything back after
    os.environ["SPRX_HOME"] = str(home)
    os.environ.pop("SPRX_PSEUDONYMISATION_KEY", None)
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["demo"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    build_results = home / "dbt" / "target" / "run_results.json"
    if build_results.exists():  # kept as the demo's build left it (later dbt commands in the home replace it)
        shutil.copy2(build_results, home.parent / "demo_run_results.json")
    return DemoRun(home=home, code=code, out=out.getvalue(), err=err.getvalue())


@pytest.fixture(scope="session")
def sample_home(demo_run: DemoRun) -> Path:
    """The committed sample feeds, landed, ingested, built and published once per test session, by the demo
    (read-mostly: tests that only add to it, such as a rerun or a dbt command, may share it; use
    `in_sample_home` to point SPRX_HOME and the key at it)."""
    if demo_run.code != 0:
        pytest.fail(f"sprx demo exited {demo_run.code}:\n{demo_run.err[-3000:]}")
    return demo_run.home


@pytest.fixture
def in_sample_home(sample_home, demo_run, monkeypatch):
    """Point SPRX_HOME (and the demo's key) at the shared sample warehouse for one test."""
    monkeypatch.setenv("SPRX_HOME", str(sample_home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", demo_run.key)
    return sample_home


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Keep tests that share an expensive fixture on one worker when the suite runs in parallel (`make test`
    runs it on two pytest-xdist workers with --dist loadgroup): every test of the session's sample warehouse
    (the demo's home) in one group, and every other test with the rest of its module (module fixtures)."""
    for item in items:
        sample = bool({"sample_home", "in_sample_home", "demo_run"} & set(item.fixturenames))
        item.add_marker(pytest.mark.xdist_group("sample" if sample else item.nodeid.split("::", 1)[0]))


def pytest_make_parametrize_id(config, val, argname):
    """A file's bytes are named by their argument, not spelled out in the test id: a workbook made at
    collection carries the time it was zipped, and pytest-xdist needs every worker to collect the same ids."""
    if isinstance(val, (bytes, bytearray)) and len(val) > 64:
        return argname
    return None
