"""The fault suite's Prefect server: one per session, given longer to start (the suite runs on busy CI)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the sprx processes the fault suite starts (they reach it by URL)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield
