"""The sample warehouse the session's `sprx demo` built, shared by every test of the dbt project."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.build import FAILED_STATUSES, BuildSummary


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


def summary_from_run_results(path: Path) -> BuildSummary:
    """The summary of a `dbt build`, read back from dbt's own run_results.json."""
    results = json.loads(path.read_text(encoding="utf-8"))
    counts: dict[str, Counter] = {}
    failures = []
    for result in results["results"]:
        kind = result["unique_id"].split(".", 1)[0]
        counts.setdefault(kind, Counter())[result["status"]] += 1
        if result["status"] in FAILED_STATUSES:
            failures.append(f"{kind} {result['unique_id']}: {result['status']} ({result.get('message') or ''})")
    return BuildSummary(success=not failures, seconds=results["elapsed_time"],
                        counts={kind: dict(statuses) for kind, statuses in counts.items()}, failures=failures)


@pytest.fixture(scope="package")
def sample_build(sample_home: Path) -> SampleBuild:
    """The session's sample warehouse (tests/conftest.py), which `sprx demo` ingested, built and published,
    with the summary of that build."""
    return SampleBuild(home=sample_home, summary=summary_from_run_results(sample_home.parent / "demo_run_results.json"))


@pytest.fixture(scope="package")
def published(sample_build: SampleBuild) -> Path:
    """The sample warehouse as the demo's publish left it (analytics.duckdb, Parquet, CSV, report); its folder."""
    return sample_build.home / "published"
