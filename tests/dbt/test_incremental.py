"""Incremental models: a build that adds only what is new equals a build from scratch.

The sample's ambulance and VCSE feeds arrive in two parts: the files up to the end of 2025, then
the 2026 files (ambulance files overlap by 28 days, so the second part revises incidents of the
first; a VCSE service's corrected re-upload restates rows of an earlier sheet), and between the two
builds one incident and one attendance are erased from raw. After the incremental build, every
incremental model must hold exactly what `--full-refresh` builds from the same raw zone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from flows.build import build
from flows.ingest import ingest
from flows.warehouse import connect
from sprx.settings import SAMPLE_FEEDS_DIR

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

# dbt's selector for every incremental model (the test compares all of them, whatever they are).
INCREMENTAL = "config.materialized:incremental"
# The feeds whose raw tables the incremental models read; GP feeds are not needed here.
FEEDS = ("ambulance", "vcse")


def in_second_part(path: Path) -> bool:
    """2026 files, and corrected re-uploads (which restate rows of sheets already loaded)."""
    return "2026" in path.name or "corrected" in path.name.lower()


def land_part(home: Path, second: bool) -> int:
    """Copy one part of the sample's ambulance and VCSE files into landing/; returns how many."""
    copied = 0
    for feed in FEEDS:
        for path in sorted((SAMPLE_FEEDS_DIR / feed).rglob("*")):
            if path.is_file() and in_second_part(path) == second:
                target = home / "landing" / path.relative_to(SAMPLE_FEEDS_DIR)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                if second:  # arrives after the first part, so a corrected sheet wins
                    os.utime(target, (time.time(), time.time()))
                copied += 1
    return copied


def incremental_models(home: Path) -> list[str]:
    """`schema.table` of every incremental model, from the manifest of the last build."""
    manifest = json.loads((home / "dbt" / "target" / "manifest.json").read_text(encoding="utf-8"))
    return sorted(f"{node['schema']}.{node['alias']}" for node in manifest["nodes"].values()
                  if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental")


def erase_one_row_each(warehouse: Path) -> None:
    """Delete one ambulance incident and one VCSE attendance from raw (as an erasure would)."""
    connection = connect(warehouse)
    try:
        connection.execute("""
            delete from raw.ambulance_incidents
            where incident_id = (select min(incident_id) from raw.ambulance_incidents)""")
        connection.execute("""
            delete from raw.vcse_attendances
            where (service_id, session_date, activity_key, attendee_key) = (
                select (service_id, session_date, activity_key, attendee_key) from raw.vcse_attendances
                order by all limit 1)""")
    finally:
        connection.close()


def test_incremental_build_equals_full_refresh(sprx_home: Path) -> None:
    warehouse = sprx_home / "warehouse.duckdb"
    assert land_part(sprx_home, second=False) > 50
    ingest(sources=FEEDS)
    assert build(select=(INCREMENTAL,)).success
    models = incremental_models(sprx_home)
    assert {"staging.stg_ambulance__incidents", "staging.stg_vcse__attendances"} <= set(models)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        first_part_file = connection.execute("select max(file_id) from audit.file_loads").fetchone()[0]
        first_counts = {model: connection.execute(f"select count(*) from {model}").fetchone()[0] for model in models}
    assert all(first_counts.values()), first_counts

    assert land_part(sprx_home, second=True) > 50
    ingest(sources=FEEDS)
    erase_one_row_each(warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        # the second part really revises rows of the first, not only adds new ones
        revised = connection.execute("""
            select count(*) from raw.ambulance_incidents where file_id > ? and extract_date < date '2026-01-01'
                or (file_id > ? and call_received_at < timestamp '2026-01-01')""",
                                     [first_part_file, first_part_file]).fetchone()[0]
        restated = connection.execute("""
            select count(*) from raw.vcse_attendances where file_id > ? and session_date < date '2025-06-01'""",
                                      [first_part_file]).fetchone()[0]
    assert revised > 0 and restated > 0, (revised, restated)

    assert build(select=(INCREMENTAL,)).success
    target = sprx_home / "dbt" / "target"
    for model in models:  # the incremental path ran: rows of newer files selected, then delete+insert
        name = model.split(".")[1]
        assert "file_id > (select" in next((target / "compiled").rglob(f"{name}.sql")).read_text(encoding="utf-8")
        assert "__dbt_tmp" in next((target / "run").rglob(f"{name}.sql")).read_text(encoding="utf-8")
    connection = connect(warehouse)
    try:
        connection.execute("create schema incremental_run")
        for model in models:
            connection.execute(f"create table incremental_run.{model.split('.')[1]} as select * from {model}")
    finally:
        connection.close()

    assert build(select=(INCREMENTAL,), full_refresh=True).success
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        for model in models:
            copy = f"incremental_run.{model.split('.')[1]}"
            only_incremental = connection.execute(
                f"select count(*) from (select * from {copy} except all select * from {model})").fetchone()[0]
            only_full = connection.execute(
                f"select count(*) from (select * from {model} except all select * from {copy})").fetchone()[0]
            rows = connection.execute(f"select count(*) from {model}").fetchone()[0]
            assert (only_incremental, only_full) == (0, 0), f"{model}: {only_incremental} rows only incremental, " \
                                                            f"{only_full} only in the full refresh"
            assert rows > first_counts[model]
