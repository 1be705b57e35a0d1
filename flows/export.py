"""The raw zone and the audit tables as Parquet, for engines other than DuckDB (`sprx export --raw`).

The dbt project also builds on Apache Spark (docs/scale.md); Spark does not read DuckDB files, so
this hands it the ingest's output: one Parquet dataset per table, `<out>/<schema>/<table>/`,
partitioned (Hive style, `column=value/`) by the column a source replaces its data by: the practice
for GP tables, the trust for ambulance incidents, the service for VCSE attendances, the source for
audit.file_loads. Rows are already pseudonymised: nothing here is an identifier in clear. Times
(naive UTC in the warehouse) are written as UTC instants, so that Spark reads them as the same
moments whatever its session time zone.

The export holds the warehouse lock (no ingest changes raw half-way through) and is written into a
temporary folder, then swapped in with renames: a reader sees the previous export or this one,
whole, and a failed export leaves the previous one in place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from flows.lock import warehouse_lock
from sprx.permissions import private_dir, private_umask
from sprx.settings import get_settings

# The column each exported table is partitioned by (None: one folder of files, the table is small).
PARTITION_COLUMNS: dict[tuple[str, str], str | None] = {
    ("raw", "emis_patients"): "practice_code",
    ("raw", "emis_events"): "practice_code",
    ("raw", "systmone_patients"): "practice_code",
    ("raw", "systmone_codes"): "practice_code",
    ("raw", "systmone_appointments"): "practice_code",
    ("raw", "ambulance_incidents"): "trust_code",
    ("raw", "vcse_attendances"): "service_id",
    ("audit", "file_loads"): "source",
    ("audit", "rejected_rows"): None,
    ("audit", "pipeline_runs"): None,
    ("audit", "pseudonymisation_key"): None,
    ("audit", "duckdb_settings"): None,
}


class ExportError(RuntimeError):
    """The export could not be made (no warehouse, an unexpected table): one line for the user."""


@dataclass
class ExportSummary:
    """Where the export went and the rows of each table."""

    out_dir: Path
    rows: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """Plain-English lines: one per table, then where the files are."""
        lines = [f"  {name:<28} {count:>10,} rows" for name, count in self.rows.items()]
        return "\n".join([f"Exported {len(self.rows)} tables as Parquet to {self.out_dir}:", *lines])


def default_out_dir() -> Path:
    """$SPRX_HOME/export/raw: where the dbt project's spark target reads the raw zone from."""
    return get_settings().home / "export" / "raw"


def export_raw(out_dir: Path | None = None) -> ExportSummary:
    """Write every raw and audit table of the warehouse as Parquet under out_dir, swapped in whole."""
    settings = get_settings()
    out_dir = (out_dir or default_out_dir()).resolve()
    if not settings.warehouse_path.exists():
        raise ExportError(f"there is no warehouse in {settings.home} yet; run `sprx ingest` (or `sprx run`) first")
    with warehouse_lock(settings.home, "export", settings.lock_wait_seconds):
        with private_umask():
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = out_dir.with_name(f".{out_dir.name}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            try:
                summary = _write_tables(settings.warehouse_path, staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _swap_in(staging, out_dir)
    private_dir(out_dir)
    summary.out_dir = out_dir
    return summary


def _write_tables(warehouse: Path, staging: Path) -> ExportSummary:
    """COPY each raw and audit table to staging/<schema>/<table>/, times as UTC instants."""
    summary = ExportSummary(out_dir=staging)
    connection = duckdb.connect(str(warehouse), read_only=True)
    try:
        connection.execute("set TimeZone = 'UTC'")
        tables = connection.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'audit') and table_type = 'BASE TABLE' order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            if (schema, table) not in PARTITION_COLUMNS:
                raise ExportError(f"{schema}.{table} has no export rule in flows/export.py (PARTITION_COLUMNS)")
            columns = connection.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, table],
            ).fetchall()
            selected = ", ".join(
                f"timezone('UTC', {_quote(name)}) as {_quote(name)}" if data_type == "TIMESTAMP" else _quote(name)
                for name, data_type in columns
            )
            rows = connection.execute(f"select count(*) from {schema}.{table}").fetchone()[0]
            summary.rows[f"{schema}.{table}"] = rows
            target = staging / schema / table
            target.parent.mkdir(parents=True, exist_ok=True)
            # An empty table is one file of no rows, so that its columns are still known to the reader.
            partition = PARTITION_COLUMNS[(schema, table)] if rows else None
            options = "format parquet, compression zstd"
            if partition is not None:
                options += f", partition_by ({_quote(partition)}), filename_pattern 'part_{{i}}'"
            else:
                target.mkdir()
                target = target / "part_0.parquet"
            connection.execute(f"copy (select {selected} from {schema}.{table}) to '{target}' ({options})")
    finally:
        connection.close()
    return summary


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace out_dir by staging: the old export moves aside, the new one in, the old one goes."""
    previous = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(previous)
    staging.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
