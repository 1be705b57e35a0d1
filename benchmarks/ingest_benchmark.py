"""Ingest at ICS scale: the full ingest against DuckDB's own read_csv on the same files.

    .venv/bin/python benchmarks/ingest_benchmark.py [--data /tmp/sprx-ics-year] [--people 1500000]

1. Generates an ICS-sized year with `sprx sample` (skipped if --data already holds one).
2. Baseline: DuckDB `read_csv` (all columns as text) of every CSV into a table, in a subprocess.
3. Full ingest: `sprx ingest` (parse, validate, pseudonymise, load, account) into a fresh home, on a Prefect
   server started before the clock as deployed (`--prefect server`, the default; `prefect_server.py`), or with
   `--prefect temporary` starting Prefect's temporary server itself as a bare command does.
Each step reports wall time, rows per second and peak memory; results go to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

from prefect_server import prefect_server

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
MEASURE = [sys.executable, str(HERE / "measure.py"), "--"]

BASELINE = textwrap.dedent("""
    import sys, duckdb
    from pathlib import Path
    files = [line.split("\\t") for line in Path(sys.argv[1]).read_text().splitlines()]
    connection = duckdb.connect()
    rows = 0
    for index, (path, skip, separator, encoding) in enumerate(files):
        connection.execute(
            f"create table t{index} as select * from read_csv(?, all_varchar = true, header = true, "
            f"skip = {int(skip)}, delim = ?, encoding = ?, null_padding = true, strict_mode = false)",
            [path, separator, encoding])
        rows += connection.execute(f"select count(*) from t{index}").fetchall()[0][0]
        connection.execute(f"drop table t{index}")
    print(rows)
""")


def run(command: list[str], env: dict | None = None) -> dict:
    """Run a command under measure.py; return its JSON result plus stdout's last line."""
    completed = subprocess.run(MEASURE + command, capture_output=True, text=True, env=env, check=False)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{completed.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["output"] = lines[:-1]
    return result


def csv_files(data: Path, unzipped: Path) -> list[tuple[str, int, str, str]]:
    """Every CSV of the feeds as (path, lines to skip before the header, separator, encoding).

    DuckDB reads only UTF-8 here (its Latin-1 refuses Windows-1252's 0x80-0x9F), so Windows-1252
    files (SystmOne, some VCSE sheets) are transcoded before the clock starts: the baseline gets
    that work free, while sprx's readers pay for it."""
    files = []
    for path in sorted(data.rglob("*")):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                archive.extractall(unzipped / path.stem)
            members = sorted((unzipped / path.stem).glob("SR*.csv"))
        elif path.suffix == ".csv" and path.name != "SROrganisation.csv":
            members = [path]
        else:
            continue
        for member in members:
            if member.name == "SROrganisation.csv":
                continue
            data_bytes = member.read_bytes()
            encoding = "utf-8"
            try:
                data_bytes.decode("utf-8")
            except UnicodeDecodeError:  # Windows-1252: transcode outside the timing (DuckDB reads UTF-8)
                converted = unzipped / "utf8" / member.relative_to(member.anchor)
                converted.parent.mkdir(parents=True, exist_ok=True)
                data_bytes = data_bytes.decode("cp1252").encode("utf-8")
                converted.write_bytes(data_bytes)
                member = converted
            head = data_bytes[:4096].decode("utf-8-sig", errors="replace").splitlines()
            skip = next((i for i, line in enumerate(head) if "Organisation Code" in line), 0)
            separator = ";" if head and head[skip].count(";") > head[skip].count(",") else ","
            files.append((str(member), skip, separator, encoding))
    return files


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link a file, or copy it when the two folders are on different file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "sprx-ics-year")
    parser.add_argument("--people", type=int, default=1_500_000)
    parser.add_argument("--prefect", choices=("server", "temporary"), default="server",
                        help="run the ingest on a Prefect server started before the clock, as deployed (default), or "
                             "with none, so that it starts Prefect's temporary server itself")
    args = parser.parse_args()
    results: dict = {}
    if not (args.data / "truth.json").exists():
        results["generate"] = run([str(BIN / "sprx"), "sample", "--out", str(args.data), "--people", str(args.people),
                                   "--start", "2025-11-01", "--end", "2026-10-31", "--systmone-every", "7",
                                   "--quiet", "--overwrite"])
    work = Path(tempfile.mkdtemp(prefix="sprx-bench-"))
    try:
        listing = work / "files.tsv"
        files = csv_files(args.data, work / "unzipped")
        listing.write_text("\n".join("\t".join(map(str, f)) for f in files))
        results["duckdb_read_csv"] = run([sys.executable, "-c", BASELINE, str(listing)])
        results["duckdb_read_csv"]["rows"] = int(results["duckdb_read_csv"]["output"][-1])
        home = work / "home"
        home.mkdir()
        # hard links, not a symlink: the ingest moves what it loads to home/archive/, and the cached data
        # set must stay where it is (a link is as cheap as a symlink; a copy only across file systems)
        shutil.copytree(args.data.resolve(), home / "landing", copy_function=_link_or_copy)
        with prefect_server(work / "prefect", args.prefect) as prefect_env:
            env = dict(prefect_env, SPRX_HOME=str(home), SPRX_PSEUDONYMISATION_KEY="benchmark-key-" + "0" * 32)
            results["sprx_ingest"] = run([str(BIN / "sprx"), "ingest"], env=env)
        results["sprx_ingest"]["prefect"] = args.prefect
        summary = next(line for line in results["sprx_ingest"]["output"] if "received =" in line)
        results["sprx_ingest"]["rows"] = int(summary.split("rows:")[1].split("received")[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for step in ("duckdb_read_csv", "sprx_ingest"):
        results[step]["rows_per_second"] = round(results[step]["rows"] / results[step]["seconds"])
    results["ratio"] = round(results["duckdb_read_csv"]["seconds"] / results["sprx_ingest"]["seconds"], 3)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=1))
    print("| step | rows | seconds | rows/s | peak MiB |\n|---|---:|---:|---:|---:|")
    for step in ("generate", "duckdb_read_csv", "sprx_ingest"):
        if step in results:
            r = results[step]
            print(f"| {step} | {r.get('rows', '')} | {r['seconds']} | {r.get('rows_per_second', '')} | {r['peak_mib']} |")
    print(f"ingest/read_csv: {results['ratio']} (Prefect: {args.prefect})")


if __name__ == "__main__":
    main()
