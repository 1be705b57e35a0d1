"""Shared test set-up: one Prefect test harness per session, a temporary PREFECT_HOME, a test key."""

from __future__ import annotations

import os
import tempfile

import pytest

# Prefect reads its settings when first imported: point it at a throwaway home before that.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="sprx-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

TEST_KEY = "test-key-0123456789abcdef0123456789abcdef"


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
