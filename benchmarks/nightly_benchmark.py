"""The nightly run at ICS scale: one more day of every feed through `sprx run` on top of a loaded year.

    nice -n 10 .venv/bin/python benchmarks/nightly_benchmark.py [--data /tmp/sprx-ics-nightly] [--people 1500000]

1. Data: --data, a folder written by `sprx sample ... --following-day` (generated first with the ICS
   arguments below when it holds no truth.json). truth.json's `following_day` lists the last night's files.
2. Base: every delivery except the following day's, hard-linked into a fresh home's landing/, then
   `sprx run` (ingest, build, publish): the year as it stands the evening before.
   Each `sprx run` uses a Prefect server started before the clock, as deployed (`--prefect server`, the
   default), or with `--prefect temporary` starts Prefect's temporary server itself as a bare command does.
3. Nightly: the following day's files dropped into landing/, then `sprx run` timed with peak RSS, with its
   stage split (ingest / build / publish seconds, from audit.pipeline_runs) and dbt's slowest nodes
   (the home's dbt/target/run_results.json).
4. Nothing new: `sprx run --if-loaded` with landing/ empty (must skip build and publish).
Results go to benchmarks/out/nightly_<people>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

from build_benchmark import BIN, HERE, link_or_copy, run
from prefect_server import prefect_server

# The key the other benchmarks use: a fixed test key, never a real one.
KEY = "benchmark-key-" + "0" * 32
# dbt nodes listed as the slowest of a build.
SLOWEST = 12


def generate_arguments(data: Path, people: int) -> list[str]:
    """`sprx sample` for the ICS year plus one night (the 1st of a month, so VCSE sheets hold one day)."""
    return [str(BIN / "sprx"), "sample", "--out", str(data), "--people", str(people), "--start", "2025-11-01",
            "--end", "2026-11-01", "--systmone-every", "7", "--following-day", "--quiet", "--overwrite"]


def deliveries(data: Path) -> list[str]:
    """Every delivery under a feed folder, relative to it (a SystmOne folder or .zip is one delivery)."""
    found = [path for path in (data / "gp" / "systmone").iterdir()] if (data / "gp" / "systmone").is_dir() else []
    for feed in ("gp/emis", "ambulance", "vcse"):
        found += [path for path in (data / feed).rglob("*") if path.is_file()]
    return sorted(str(path.relative_to(data)) for path in found)


def land(data: Path, landing: Path, paths: list[str]) -> None:
    """Hard-link deliveries into landing/ (the ingest archives what it loads; the data set stays)."""
    for relative in paths:
        source, target = data / relative, landing / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, copy_function=link_or_copy)
        else:
            link_or_copy(str(source), str(target))


def now() -> dt.datetime:
    """UTC now, naive, as audit.pipeline_runs records times."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def stages_since(home: Path, since: dt.datetime) -> dict[str, dict]:
    """Seconds, status and detail of each pipeline stage that started after `since`."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute(
            "select stage, status, epoch(finished_at - started_at), detail from audit.pipeline_runs "
            "where started_at >= ? order by started_at", [since]).fetchall()
    return {stage: {"status": status, "seconds": round(seconds or 0.0, 1), "detail": json.loads(detail or "{}")}
            for stage, status, seconds, detail in rows}


def file_outcomes(home: Path, paths: set[str]) -> dict:
    """How the given deliveries ended: files by status, and rows received, loaded and rejected by feed."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        rows = connection.execute("select path, source, status, rows_received, rows_loaded, rows_rejected "
                                  "from audit.file_loads").fetchall()
    statuses: dict[str, int] = {}
    feeds: dict[str, dict[str, int]] = {}
    for path, source, status, received, loaded, rejected in rows:
        if path not in paths:
            continue
        statuses[status] = statuses.get(status, 0) + 1
        feed = feeds.setdefault(source, {"files": 0, "rows_received": 0, "rows_loaded": 0, "rows_rejected": 0})
        feed["files"] += 1
        feed["rows_received"] += received
        feed["rows_loaded"] += loaded
        feed["rows_rejected"] += rejected
    return {"files_by_status": statuses, "by_feed": feeds}


def dbt_nodes(home: Path) -> dict:
    """The last build's slowest nodes (slowest first) and its nodes and summed seconds by resource type, from
    dbt's run_results.json."""
    path = home / "dbt" / "target" / "run_results.json"
    if not path.exists():
        return {"dbt_slowest": [], "dbt_totals": {}}
    results = json.loads(path.read_text(encoding="utf-8"))["results"]
    totals: dict[str, dict] = {}
    for result in results:
        total = totals.setdefault(result["unique_id"].split(".")[0], {"nodes": 0, "seconds": 0.0})
        total["nodes"] += 1
        total["seconds"] = round(total["seconds"] + result["execution_time"], 1)
    results.sort(key=lambda result: result["execution_time"], reverse=True)
    slowest = [{"node": result["unique_id"], "seconds": round(result["execution_time"], 1), "status": result["status"]}
               for result in results[:SLOWEST]]
    return {"dbt_slowest": slowest, "dbt_totals": totals}


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages now."""
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "sprx-ics-nightly",
                        help="a folder from `sprx sample --following-day` (generated when it holds no truth.json)")
    parser.add_argument("--people", type=int, default=1_500_000, help="people to generate when --data is empty")
    parser.add_argument("--keep-home", action="store_true", help="keep the home (printed) after the run")
    parser.add_argument("--prefect", choices=("server", "temporary"), default="server",
                        help="run the three `sprx run` on a Prefect server started before the clock, as deployed "
                             "(default), or with none, so that each starts Prefect's temporary server itself")
    args = parser.parse_args()

    data = args.data.resolve()
    results: dict = {"started_at": now().isoformat(timespec="seconds") + "Z", "load_average_before": load_average(),
                     "prefect": args.prefect}
    work = Path(tempfile.mkdtemp(prefix="sprx-nightly-bench-"))
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(work / "prefect"),
               PREFECT_LOGGING_LEVEL="WARNING")
    if not (data / "truth.json").exists():
        results["generate"] = run(generate_arguments(data, args.people), env)
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    if "following_day" not in truth:
        raise SystemExit(f"{data} was generated without --following-day; regenerate it: "
                         + " ".join(generate_arguments(data, args.people)))
    following = sorted(truth["following_day"])
    base = sorted(set(deliveries(data)) - set(following))
    results["data"] = {"folder": str(data), "people": truth["parameters"]["people"],
                       "start": truth["parameters"]["start"], "end": truth["parameters"]["end"],
                       "base_deliveries": len(base), "following_day_deliveries": len(following)}
    home = work / "home"
    sprx_run = [str(BIN / "sprx"), "run"]
    stack = contextlib.ExitStack()
    try:
        run_env = dict(stack.enter_context(prefect_server(work / "prefect", args.prefect)), SPRX_HOME=str(home),
                       SPRX_PSEUDONYMISATION_KEY=KEY)
        land(data, home / "landing", base)
        since = now()
        results["base_run"] = run(sprx_run, run_env)
        results["base_run"]["stages"] = stages_since(home, since)
        results["base_run"].update(dbt_nodes(home))

        land(data, home / "landing", following)
        results["load_average_before_nightly"] = load_average()
        since = now()
        results["nightly_run"] = run(sprx_run, run_env)
        results["nightly_run"]["stages"] = stages_since(home, since)
        results["nightly_run"]["files"] = file_outcomes(home, set(following))
        results["nightly_run"].update(dbt_nodes(home))

        left = deliveries(home / "landing") if (home / "landing").exists() else []
        if left:
            raise SystemExit(f"landing/ still holds {len(left)} deliveries after the nightly run: {left[:5]}")
        since = now()
        results["nothing_new_run"] = run(sprx_run + ["--if-loaded"], run_env)
        results["nothing_new_run"]["stages"] = stages_since(home, since)
    finally:
        stack.close()  # the Prefect server stops
        shutil.rmtree(work / "prefect", ignore_errors=True)
        if args.keep_home:
            print(f"home kept: {home}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["load_average_after"] = load_average()

    out = HERE / "out"
    out.mkdir(exist_ok=True)
    target = out / f"nightly_{results['data']['people']}.json"
    target.write_text(json.dumps(results, indent=1))
    print(f"written: {target}")
    print("| step | seconds | peak MiB | ingest s | build s | publish s |\n|---|---:|---:|---:|---:|---:|")
    for step in ("generate", "base_run", "nightly_run", "nothing_new_run"):
        if step in results:
            r = results[step]
            stages = r.get("stages", {})
            split = " | ".join(str(stages[s]["seconds"]) if s in stages else "-" for s in ("ingest", "build", "publish"))
            print(f"| {step} | {r['seconds']} | {r['peak_mib']} | {split} |")
    print("nightly files:", json.dumps(results["nightly_run"]["files"]))
    print("nightly dbt slowest:", ", ".join(f"{n['node'].split('.')[-1]} {n['seconds']}"
                                            for n in results["nightly_run"]["dbt_slowest"]))


if __name__ == "__main__":
    main()
