"""Shared test set-up: one Prefect test harness per session, a temporary PREFECT_HOME, a test key."""

from __future__ import annotations

import os
import tempfile

import pytest

# Prefect reads its settings when first imported: point it at a throwaway home before that.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="sprx-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Files the tests land are whole when written: take them at once (tests of the settle interval set their own).
os.environ.setdefault("SPRX_LANDING_SETTLE_SECONDS", "0")

TEST_KEY = "test-key-0123456789abcdef0123456789abcdef"
SAMPLE_KEY = "sample-key-0123456789abcdef0123456789"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every test that runs a flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def sprx_home(tmp_path, monkeypatch):
    """A fresh SPRX_HOME with a pseudonymisation key set."""
    home = tmp_path / "home"
    monkeypatch.setenv("SPRX_HOME", str(home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", TEST_KEY)
    return home


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory, prefect_harness):
    """The committed sample feeds, landed and ingested once per test session (read-mostly: tests
    that only add to it, such as a rerun or a dbt build, may share it; use `in_sample_home` to
    point SPRX_HOME at it)."""
    import shutil

    from flows.ingest import ingest
    from sprx.settings import SAMPLE_FEEDS_DIR

    home = tmp_path_factory.mktemp("sample") / "home"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPRX_HOME", str(home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", SAMPLE_KEY)
    for child in SAMPLE_FEEDS_DIR.iterdir():
        if child.is_dir():
            shutil.copytree(child, home / "landing" / child.name)
    try:
        ingest()
    finally:
        monkeypatch.undo()
    return home



@pytest.fixture
def in_sample_home(sample_home, monkeypatch):
    """Point SPRX_HOME (and the key) at the shared sample warehouse for one test."""
    monkeypatch.setenv("SPRX_HOME", str(sample_home))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", SAMPLE_KEY)
    return sample_home
