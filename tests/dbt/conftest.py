"""The sample feeds, ingested and built once for every test of the dbt project."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.build import BuildSummary, DbtBuildError, build

SAMPLE_KEY = "dbt-sample-key-0123456789abcdef0123456789"


@dataclass(frozen=True)
class SampleBuild:
    """A home holding the sample warehouse after `ingest` and `build`, and what the build reported."""

    home: Path
    summary: BuildSummary

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"


def land(source: Path, home: Path) -> None:
    """Copy a feed tree (gp/, ambulance/, vcse/) into home/landing."""
    for child in source.iterdir():
        if child.is_dir():
            shutil.copytree(child, home / "landing" / child.name, dirs_exist_ok=True)


@pytest.fixture(scope="package")
def sample_build(sample_home: Path) -> SampleBuild:
    """The session's ingested sample warehouse (tests/conftest.py), built by the `build` flow."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPRX_HOME", str(sample_home))
    try:
        summary = build()
    except DbtBuildError as failed:  # kept, so that the tests say what failed
        summary = failed.summary
    finally:
        monkeypatch.undo()
    return SampleBuild(home=sample_home, summary=summary)


@pytest.fixture(scope="package")
def published(sample_build: SampleBuild) -> Path:
    """The sample warehouse published by the publish flow (analytics.duckdb, Parquet, CSV, report); its folder."""
    from flows.publish import publish

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPRX_HOME", str(sample_build.home))
    try:
        publish()
    finally:
        monkeypatch.undo()
    return sample_build.home / "published"
