"""The same dbt project on DuckDB and on a local Apache Spark gives the same published answers.

The sample feeds are ingested, built by dbt on DuckDB and published once (the session's `sprx demo`,
`sample_home`), exported as Parquet (`sprx export --raw`) and built again by dbt on Spark
(the `spark` target: session mode, local[2]). Every published table (pub_* and data_coverage) must
hold the same rows on both: same columns, same rows in any order, floating values within 1e-9.

Marker `spark`: needs the `spark` extra and Java 17, and takes many minutes on two cores, so only
`make test-spark` (its own .venv-spark) runs it. The data tests run on DuckDB (`make test`); here
Spark builds the seeds and models, and the comparison is the check.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
from pathlib import Path

import duckdb
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]


# Floating values (rates, means, confidence intervals) may differ in their last bits between engines.
FLOAT_TOLERANCE = 1e-9


def test_the_raw_export_holds_every_raw_and_audit_table(spark_build):
    """`sprx export --raw` wrote one Parquet dataset per table, partitioned by its sender, row counts kept."""
    home = spark_build["home"]
    out = home / "export" / "raw"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as warehouse:
        tables = warehouse.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'audit') and table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, table in tables:
            expected = warehouse.execute(f"select count(*) from {schema}.{table}").fetchone()[0]
            exported = warehouse.execute(
                f"select count(*) from read_parquet('{out / schema / table}/**/*.parquet', hive_partitioning = true)"
            ).fetchone()[0]
            assert exported == expected, f"{schema}.{table}: {exported} rows exported, {expected} in the warehouse"
    practices = {path.name for path in (out / "raw" / "emis_events").iterdir()}
    assert practices and all(name.startswith("practice_code=") for name in practices)


def test_spark_builds_every_model_and_seed(spark_build):
    summary = spark_build["spark_summary"]
    assert summary.success, summary.describe()
    assert summary.models_built > 0 and summary.models_failed == 0


def test_every_published_table_is_equal_on_both_engines(spark_build):
    home = spark_build["home"]
    from pyspark.sql import SparkSession

    session = SparkSession.builder.getOrCreate()  # the session dbt built in (this process)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as warehouse:
        tables = [row[0] for row in warehouse.execute(
            "select table_name from information_schema.tables where table_schema = 'published' order by 1"
        ).fetchall()]
        assert "data_coverage" in tables and any(table.startswith("pub_") for table in tables)
        spark_tables = {row.tableName for row in session.sql("show tables in published").collect()}
        assert set(tables) <= spark_tables, f"not built on Spark: {sorted(set(tables) - spark_tables)}"
        differences = {}
        for table in tables:
            duck_columns, duck_rows = _duckdb_rows(warehouse, table)
            spark_columns, spark_rows = _spark_rows(session, table)
            problem = _compare(duck_columns, duck_rows, spark_columns, spark_rows)
            if problem:
                differences[table] = problem
    assert not differences, "published tables differ between DuckDB and Spark:\n" + "\n".join(
        f"  published.{table}: {problem}" for table, problem in differences.items())


@pytest.mark.parametrize(
    ("duck", "spark", "equal"),
    [
        # the comparison itself: floats within the tolerance are equal, beyond it they are not ...
        ([(1, 0.1 + 0.2)], [(1, 0.3)], True),
        ([(1, 0.3)], [(1, 0.3 + 1e-6)], False),
        # ... row order does not matter, row counts and nulls do
        ([(1, "a"), (2, "b")], [(2, "b"), (1, "a")], True),
        ([(1, "a")], [(1, "a"), (1, "a")], False),
        ([(1, None)], [(1, 0)], False),
    ],
)
def test_the_comparison_tells_equal_from_different(duck, spark, equal):
    assert (_compare(["k", "v"], duck, ["k", "v"], spark) is None) is equal


@pytest.fixture(scope="module")
def spark_build(sample_home: Path):
    """The sample built on DuckDB (the session's `sprx demo`), exported as Parquet, then built on Spark by dbt."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # run outside make test-spark (the marker keeps it out of make test): say how, never skip
        pytest.fail("the `spark` extra is not installed here: run `make test-spark` (its own .venv-spark)")
    from flows.build import dbt_arguments, invoke_dbt, summarise
    from flows.export import export_raw

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SPRX_HOME", str(sample_home))
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the driver listens on this machine only
    try:
        export_raw()
        arguments = dbt_arguments("build", sample_home, "--target", "spark",
                                  "--resource-type", "model", "--resource-type", "seed",
                                  "--target-path", str(sample_home / "dbt" / "spark-target"), "--no-use-colors")
        started = time.perf_counter()
        spark_summary = summarise(invoke_dbt(arguments, sample_home), time.perf_counter() - started)
    finally:
        monkeypatch.undo()
    yield {"home": sample_home, "spark_summary": spark_summary}
    SparkSession.builder.getOrCreate().stop()


def _duckdb_rows(warehouse: duckdb.DuckDBPyConnection, table: str) -> tuple[list[str], list[tuple]]:
    """Column names and rows of published.<table>; instants as microseconds since 1970 (UTC)."""
    columns = warehouse.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'published' and table_name = ? order by ordinal_position", [table]
    ).fetchall()
    selected = ", ".join(
        f'epoch_us("{name}") as "{name}"' if data_type.startswith("TIMESTAMP") else f'"{name}"'
        for name, data_type in columns
    )
    return [name for name, _ in columns], warehouse.execute(f"select {selected} from published.{table}").fetchall()


def _spark_rows(session, table: str) -> tuple[list[str], list[tuple]]:
    """Column names and rows of published.<table> on Spark; instants as microseconds since 1970 (UTC)."""
    frame = session.table(f"published.{table}")
    selected = [
        f"unix_micros(`{field.name}`) as `{field.name}`" if field.dataType.typeName() == "timestamp"
        else f"`{field.name}`"
        for field in frame.schema.fields
    ]
    return frame.columns, [tuple(row) for row in frame.selectExpr(*selected).collect()]


def _normalise(value):
    """One spelling per value across the engines' Python types (Decimal and float alike)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _sort_key(row: tuple) -> tuple:
    """Rows in a stable order whatever the engine: nulls first, floats rounded for ordering only."""
    return tuple(
        (0, "") if value is None else (1, f"{round(value, 6):.6f}") if isinstance(value, float)
        else (1, value.isoformat()) if isinstance(value, (dt.date, dt.datetime)) else (1, str(value))
        for value in row
    )


def _equal(left, right) -> bool:
    if isinstance(left, float) or isinstance(right, float):
        if left is None or right is None:
            return left is right
        if math.isnan(left) and math.isnan(right):
            return True
        return math.isclose(left, right, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    return left == right


def _compare(duck_columns, duck_rows, spark_columns, spark_rows) -> str | None:
    """None when both hold the same columns and rows; else what differs, first difference only."""
    if list(duck_columns) != list(spark_columns):
        return f"columns differ: DuckDB {list(duck_columns)}, Spark {list(spark_columns)}"
    if len(duck_rows) != len(spark_rows):
        return f"{len(duck_rows)} rows on DuckDB, {len(spark_rows)} on Spark"
    duck_sorted = sorted((tuple(map(_normalise, row)) for row in duck_rows), key=_sort_key)
    spark_sorted = sorted((tuple(map(_normalise, row)) for row in spark_rows), key=_sort_key)
    for duck_row, spark_row in zip(duck_sorted, spark_sorted, strict=True):
        for column, left, right in zip(duck_columns, duck_row, spark_row, strict=True):
            if not _equal(left, right):
                return f"column {column}: DuckDB {left!r}, Spark {right!r} (row {dict(zip(duck_columns, duck_row))})"
    return None
