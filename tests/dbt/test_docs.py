"""The dbt project documents itself: every model, seed, source and column is described, and freshness runs."""

from __future__ import annotations

import duckdb
import pytest

from flows.build import dbt_arguments, invoke_dbt
from tests.dbt.conftest import SampleBuild

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def manifest(sample_build: SampleBuild):
    """The parsed project (dbt parse), with descriptions rendered."""
    result = invoke_dbt(dbt_arguments("parse", sample_build.home), sample_build.home)
    assert result.success, result.exception
    return result.result


def relation_columns(sample_build: SampleBuild, schema: str, name: str) -> set[str]:
    """The columns a built relation really has in the warehouse."""
    with duckdb.connect(str(sample_build.warehouse), read_only=True) as connection:
        return {row[0] for row in connection.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, name]).fetchall()}


def test_every_model_and_seed_and_column_is_described(manifest, sample_build: SampleBuild) -> None:
    nodes = [node for node in manifest.nodes.values()
             if node.resource_type in ("model", "seed") and node.package_name == "sprx"]
    assert {"stg_emis__patients", "stg_vcse__attendances", "ref_gp_practices"} <= {node.name for node in nodes}
    missing = []
    for node in nodes:
        if not node.description.strip():
            missing.append(node.name)
        # every column the relation really has is declared and described (not only those in the YAML)
        declared = {name: column.description.strip() for name, column in node.columns.items()}
        actual = set() if node.config.materialized == "ephemeral" else relation_columns(
            sample_build, node.schema, node.alias)
        missing += [f"{node.name}.{column}" for column in sorted(actual) if not declared.get(column)]
        missing += [f"{node.name}.{column} (declared, not in the relation)" for column in sorted(set(declared) - actual)
                    if actual]
    assert not missing, missing


def test_every_source_table_and_column_is_described(manifest, sample_build: SampleBuild) -> None:
    sources = list(manifest.sources.values())
    assert {(s.source_name, s.name) for s in sources} >= {("raw", "emis_patients"), ("audit", "file_loads")}
    missing = []
    for source in sources:
        if not (source.description.strip() and source.source_description.strip()):
            missing.append(f"{source.source_name}.{source.name}")
        declared = {name: column.description.strip() for name, column in source.columns.items()}
        actual = relation_columns(sample_build, source.schema, source.identifier)
        assert actual, f"{source.source_name}.{source.name} is not in the warehouse"
        missing += [f"{source.source_name}.{source.name}.{c}" for c in sorted(actual) if not declared.get(c)]
    assert not missing, missing


def test_every_raw_table_is_a_source_read_by_exactly_one_staging_model(manifest) -> None:
    from flows.warehouse import RAW_TABLES

    readers: dict[str, set[str]] = {}
    for node in manifest.nodes.values():
        if node.resource_type == "model":
            # a model may name its source twice (an incremental model's post-hook): one reader still
            for source_name, table in node.sources:
                readers.setdefault(f"{source_name}.{table}", set()).add(node.name)
    assert {f"raw.{t.split('.')[1]}" for t in RAW_TABLES} <= set(readers)
    for source_table, models in readers.items():
        assert len(models) == 1 and next(iter(models)).startswith("stg_"), (source_table, models)


def test_source_freshness_runs_without_runtime_errors(sample_build: SampleBuild) -> None:
    # the sample's extracts are dated 2024-2026, so a source may warn or error on age; what must not
    # happen is a freshness query that cannot run. (`dbt build` never runs freshness.)
    result = invoke_dbt(dbt_arguments("source freshness", sample_build.home,
                                      "--output", str(sample_build.home / "dbt" / "sources.json")),
                        sample_build.home)
    assert result.exception is None
    statuses = {f"{r.node.source_name}.{r.node.name}": str(r.status) for r in result.result.results
                if str(r.node.resource_type) == "source"}  # (the project's on-run-start hooks run too)
    assert len(statuses) == 8  # seven raw tables and audit.file_loads declare freshness
    assert set(statuses.values()) <= {"pass", "warn", "error"}, statuses
