"""`sprx export --raw`: the raw zone and the audit tables as Parquet, for the dbt project on Spark."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from sprx.cli import main


@pytest.fixture(scope="module")
def exported(sample_home, tmp_path_factory):
    """The session's ingested sample exported once, to a folder of its own; the command's output."""
    out = tmp_path_factory.mktemp("export") / "raw"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPRX_HOME", str(sample_home))
    try:
        code = main(["export", "--raw", "--out", str(out)])
    finally:
        monkeypatch.undo()
    assert code == 0
    return out


def _tables(sample_home) -> list[tuple[str, str, int]]:
    with duckdb.connect(str(sample_home / "warehouse.duckdb"), read_only=True) as warehouse:
        names = warehouse.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'audit') and table_type = 'BASE TABLE' order by 1, 2"
        ).fetchall()
        return [(schema, table, warehouse.execute(f"select count(*) from {schema}.{table}").fetchone()[0])
                for schema, table in names]


def _read(folder):
    return f"read_parquet('{folder}/**/*.parquet', hive_partitioning = true)"


def test_every_raw_and_audit_table_is_exported_whole(exported, sample_home):
    tables = _tables(sample_home)
    assert {table for schema, table, _ in tables if schema == "raw"} >= {"emis_events", "vcse_attendances"}
    with duckdb.connect() as reader:
        for schema, table, rows in tables:
            assert reader.execute(f"select count(*) from {_read(exported / schema / table)}").fetchone()[0] == rows, (
                f"{schema}.{table}")


@pytest.mark.parametrize(
    ("schema", "table", "column"),
    [
        # each table is split by what its sender replaces: the practice, the trust, the service, the source
        ("raw", "emis_events", "practice_code"),
        ("raw", "systmone_appointments", "practice_code"),
        ("raw", "ambulance_incidents", "trust_code"),
        ("raw", "vcse_attendances", "service_id"),
        ("audit", "file_loads", "source"),
    ],
)
def test_tables_are_partitioned_by_their_sender(exported, sample_home, schema, table, column):
    folders = sorted(path.name for path in (exported / schema / table).iterdir())
    with duckdb.connect(str(sample_home / "warehouse.duckdb"), read_only=True) as warehouse:
        values = [row[0] for row in warehouse.execute(
            f"select distinct {column} from {schema}.{table} order by 1").fetchall()]
    assert folders == sorted(f"{column}={value}" for value in values)


def test_times_are_utc_instants(exported, sample_home):
    """A naive UTC time in the warehouse is the same instant in the export, whatever the reader's zone."""
    with duckdb.connect(str(sample_home / "warehouse.duckdb"), read_only=True) as warehouse:
        expected = warehouse.execute("select min(received_at) from audit.file_loads").fetchone()[0]
    with duckdb.connect() as reader:
        reader.execute("set TimeZone = 'America/New_York'")
        column_type, value = reader.execute(
            f"select typeof(min(received_at)), min(received_at) from {_read(exported / 'audit' / 'file_loads')}"
        ).fetchone()
    assert column_type == "TIMESTAMP WITH TIME ZONE"
    assert value.astimezone(dt.UTC).replace(tzinfo=None) == expected


def test_a_second_export_replaces_the_first_whole(exported, sample_home, monkeypatch):
    stale = exported / "raw" / "emis_events" / "practice_code=STALE"
    stale.mkdir()
    monkeypatch.setenv("SPRX_HOME", str(sample_home))
    assert main(["export", "--raw", "--out", str(exported)]) == 0
    assert not stale.exists()
    assert not list(exported.parent.glob(".raw.*"))  # no partial or previous copy left beside it


def test_without_a_warehouse_it_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPRX_HOME", str(tmp_path / "empty"))
    assert main(["export", "--raw"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("sprx export: there is no warehouse in") and "sprx ingest" in error
    assert not (tmp_path / "empty" / "export").exists()


def test_the_export_must_be_named(capsys):
    assert main(["export"]) == 2
    assert "--raw" in capsys.readouterr().err
