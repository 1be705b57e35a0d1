"""DuckDB is bounded in every connection the pipeline writes through: memory limit, threads and spill folder."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import duckdb
import pytest

from flows.warehouse import connect
from sprx.cli import main
from sprx.settings import SettingsError, get_settings, machine_memory_bytes

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


def reported(memory_limit: str) -> str:
    """How DuckDB itself reports a memory limit once set (e.g. 300MiB -> '300.0 MiB')."""
    with duckdb.connect() as connection:
        connection.execute(f"set memory_limit = '{memory_limit}'")
        return connection.execute("select current_setting('memory_limit')").fetchone()[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("6GB", 6 * 1000**3),  # DuckDB's units: GB is 1000^3 bytes ...
    ("4096MiB", 4 * 1024**3),  # ... and MiB 1024^2
    (" 2.5 GiB ", int(2.5 * 1024**3)),  # spaces and fractions as people type them
])
def test_the_memory_limit_is_read_in_duckdb_units(monkeypatch, text: str, expected: int) -> None:
    monkeypatch.setenv("SPRX_DUCKDB_MEMORY_LIMIT", text)
    assert get_settings().duckdb_memory_limit_bytes == expected


def test_the_memory_limit_defaults_to_a_quarter_of_the_machine_less_the_process(monkeypatch) -> None:
    monkeypatch.delenv("SPRX_DUCKDB_MEMORY_LIMIT", raising=False)
    quarter = machine_memory_bytes() // 4
    expected = max(quarter - 1536 * 1024**2, quarter // 2)  # room for Python, dbt and Prefect within the quarter
    assert abs(get_settings().duckdb_memory_limit_bytes - expected) <= 1
    monkeypatch.setenv("SPRX_DUCKDB_MEMORY_LIMIT", "50%")  # a share of the machine can be given too
    assert abs(get_settings().duckdb_memory_limit_bytes - 2 * quarter) <= 2


@pytest.mark.parametrize(("machine_gib", "limit_gib"), [(24, 4.5), (8, 1.0), (64, 14.5), (0.5, 0.125)])
def test_the_default_limit_on_machines_of_other_sizes(monkeypatch, machine_gib: float, limit_gib: float) -> None:
    monkeypatch.delenv("SPRX_DUCKDB_MEMORY_LIMIT", raising=False)
    monkeypatch.setattr("sprx.settings.machine_memory_bytes", lambda: int(machine_gib * 1024**3))
    assert get_settings().duckdb_memory_limit_bytes == int(limit_gib * 1024**3)


@pytest.mark.parametrize(("variable", "value"), [
    ("SPRX_DUCKDB_MEMORY_LIMIT", "lots"), ("SPRX_DUCKDB_MEMORY_LIMIT", "6"), ("SPRX_DUCKDB_MEMORY_LIMIT", "150%"),
    ("SPRX_DUCKDB_MEMORY_LIMIT", "1MB"), ("SPRX_DUCKDB_THREADS", "0"), ("SPRX_DUCKDB_THREADS", "two"),
])
def test_a_bad_value_names_the_variable(monkeypatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"^{variable} must be"):
        get_settings()


@pytest.mark.parametrize("command", ["ingest", "build", "publish", "run"])
def test_a_bad_memory_limit_stops_a_command_with_one_line(monkeypatch, tmp_path: Path, capsys, command) -> None:
    monkeypatch.setenv("SPRX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPRX_PSEUDONYMISATION_KEY", "k" * 32)
    monkeypatch.setenv("SPRX_DUCKDB_MEMORY_LIMIT", "lots")
    assert main([command]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sprx: SPRX_DUCKDB_MEMORY_LIMIT must be an amount of memory such as 6GB")
    assert len(error.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "home").exists()  # and nothing was started


def test_a_warehouse_connection_is_bounded_by_default(sprx_home: Path, monkeypatch) -> None:
    monkeypatch.delenv("SPRX_DUCKDB_MEMORY_LIMIT", raising=False)
    monkeypatch.delenv("SPRX_DUCKDB_THREADS", raising=False)
    settings = get_settings()
    connection = connect(settings.warehouse_path)
    try:
        memory_limit, threads, temp_directory = connection.execute(
            "select current_setting('memory_limit'), current_setting('threads'), current_setting('temp_directory')"
        ).fetchone()
    finally:
        connection.close()
    assert memory_limit == reported(settings.duckdb_memory_limit)  # a quarter of the machine, not DuckDB's 80%
    assert memory_limit != reported(f"{machine_memory_bytes() * 8 // 10 // 1024**2}MiB")
    assert threads == settings.duckdb_threads
    assert Path(temp_directory) == sprx_home / "tmp" / "duckdb"


@pytest.mark.usefixtures("prefect_harness")
def test_the_ingest_and_the_build_run_with_the_settings(sprx_home: Path, monkeypatch) -> None:
    from flows.build import build
    from flows.ingest import ingest

    monkeypatch.setenv("SPRX_DUCKDB_MEMORY_LIMIT", "300MiB")
    monkeypatch.setenv("SPRX_DUCKDB_THREADS", "4")
    shutil.copytree(FEEDS / "ambulance", sprx_home / "landing" / "ambulance")
    ingest()
    build()
    with duckdb.connect(str(sprx_home / "warehouse.duckdb"), read_only=True) as connection:
        seen = {stage: rest for stage, *rest in connection.execute(
            "select stage, memory_limit, threads, temp_directory from audit.duckdb_settings").fetchall()}
    spill = sprx_home / "tmp" / "duckdb"
    # what DuckDB reported inside the ingest's connection and inside dbt's own (an on-run-start hook); the ingest
    # leaves two of the four threads to the files read ahead
    assert seen == {"ingest": [reported("300MiB"), 2, str(spill)], "build": [reported("300MiB"), 4, str(spill)]}
    for folder in (sprx_home / "tmp", spill):  # what DuckDB spills there is pieces of raw rows: owner-only
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_ingest_leaves_the_threads_reading_ahead_their_cpus_but_keeps_one_for_duckdb() -> None:
    from flows.load import READ_WORKERS, loading_threads

    assert READ_WORKERS == 2
    assert [loading_threads(allowed) for allowed in (1, 2, 3, 4, 8)] == [1, 1, 1, 2, 6]
