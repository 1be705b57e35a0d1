"""Build at ICS scale: `sprx build --full-refresh`, then `sprx build` again with nothing new ingested.

    .venv/bin/python benchmarks/build_benchmark.py [--home DIR] [--data /tmp/sprx-ics-year] [--keep-home]

1. The warehouse: --home, a home that already holds an ingested ICS-sized year; without it, a fresh
   home in a temporary folder into which `sprx ingest` loads --data (an ICS-sized year, generated
   first with `sprx sample` as in ingest_benchmark.py when --data holds none).
2. Full refresh: `sprx build --full-refresh` (every seed, model, data and unit test, incremental
   models rebuilt from scratch).
3. Incremental: `sprx build` straight after, with nothing new ingested (incremental models add
   nothing; every table model and test runs again).
Each step reports wall time and peak memory (measure.py); results go to benchmarks/out/build.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MEASURE = [sys.executable, str(HERE / "measure.py"), "--"]
# The tables whose size says how big the build was (schema.table).
SIZE_TABLES = ["staging.stg_emis__events", "staging.stg_systmone__appointments", "staging.stg_ambulance__incidents",
               "staging.stg_vcse__attendances", "intermediate.int_activity_events_unioned",
               "intermediate.int_people_linked", "marts.fct_referral_outcomes"]


def run(command: list[str], env: dict) -> dict:
    """Run a command under measure.py; return its JSON result plus stdout's lines before it."""
    completed = subprocess.run(MEASURE + command, capture_output=True, text=True, env=env, check=False)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["output"] = lines[:-1]
    return result


def link_or_copy(source: str, target: str) -> None:
    """Hard-link a file (copy it when the link cannot be made, e.g. across file systems)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def has_ingested_data(home: Path) -> bool:
    """True when home's warehouse holds at least one loaded file."""
    warehouse = home / "warehouse.duckdb"
    if not warehouse.exists():
        return False
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        try:
            return connection.execute("select count(*) from audit.file_loads where status = 'loaded'").fetchone()[0] > 0
        except duckdb.CatalogException:
            return False


def table_sizes(home: Path) -> dict[str, int]:
    """Rows in each of SIZE_TABLES after the build (absent tables left out)."""
    sizes = {}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        for table in SIZE_TABLES:
            try:
                sizes[table] = connection.execute(f"select count(*) from {table}").fetchone()[0]
            except duckdb.CatalogException:
                pass
    return sizes


def summary_line(result: dict) -> str:
    """The build's one-line summary as `sprx build` printed it."""
    return next((line for line in reversed(result["output"]) if line.startswith("dbt build")), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a home that already holds an ingested ICS-sized year")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "sprx-ics-year",
                        help="feeds to ingest into a fresh home when --home is not given")
    parser.add_argument("--people", type=int, default=1_500_000, help="people to generate when --data is empty")
    parser.add_argument("--keep-home", action="store_true", help="keep the fresh home (printed) after the run")
    args = parser.parse_args()

    results: dict = {}
    work = Path(tempfile.mkdtemp(prefix="sprx-build-bench-"))
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(work / "prefect"),
               PREFECT_LOGGING_LEVEL="WARNING")
    try:
        if args.home is not None:
            home = args.home.resolve()
            if not has_ingested_data(home):
                raise SystemExit(f"{home} holds no ingested data: give a home after `sprx ingest`, or leave out --home")
        else:
            if not (args.data / "truth.json").exists():
                results["generate"] = run([str(BIN / "sprx"), "sample", "--out", str(args.data), "--people",
                                           str(args.people), "--start", "2025-11-01", "--end", "2026-10-31",
                                           "--systmone-every", "7", "--quiet", "--overwrite"], env)
            home = work / "home"
            home.mkdir()
            # hard links: no second copy of the feeds, and the ingest's archiving cannot move the originals
            shutil.copytree(args.data, home / "landing", ignore=shutil.ignore_patterns("truth.json"),
                            copy_function=link_or_copy)
            ingest_env = dict(env, SPRX_HOME=str(home), SPRX_PSEUDONYMISATION_KEY="benchmark-key-" + "0" * 32)
            results["sprx_ingest"] = run([str(BIN / "sprx"), "ingest"], ingest_env)
        build_env = dict(env, SPRX_HOME=str(home))
        results["build_full_refresh"] = run([str(BIN / "sprx"), "build", "--full-refresh"], build_env)
        results["build_incremental"] = run([str(BIN / "sprx"), "build"], build_env)
        results["table_rows"] = table_sizes(home)
    finally:
        if args.home is None and args.keep_home:
            print(f"home kept: {work / 'home'}")
        else:
            shutil.rmtree(work / "home", ignore_errors=True)
        shutil.rmtree(work / "prefect", ignore_errors=True)

    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "build.json").write_text(json.dumps(results, indent=1))
    print("| step | seconds | peak MiB | result |\n|---|---:|---:|---|")
    for step in ("generate", "sprx_ingest", "build_full_refresh", "build_incremental"):
        if step in results:
            r = results[step]
            print(f"| {step} | {r['seconds']} | {r['peak_mib']} | {summary_line(r)[:100]} |")
    print("rows:", ", ".join(f"{table} {rows:,}" for table, rows in results["table_rows"].items()))


if __name__ == "__main__":
    main()
