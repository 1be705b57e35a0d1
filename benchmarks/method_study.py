"""Simulation study of the effect estimate: generator + the whole pipeline over many seeds.

    .venv/bin/python benchmarks/method_study.py [--people 20000] [--seeds 1-10] [--out benchmarks/out/method]
    .venv/bin/python benchmarks/method_study.py --report-only   # summarise what has been run so far

For each seed: `sprx sample` writes a synthetic ICS with its truth.json (SystmOne deltas every 91
days and one EMIS export per practice, to keep the ingest short; the people and events do not
depend on the delivery cadence), `sprx ingest` loads it into a fresh home and `dbt build --select
+mart_outcomes_by_deprivation`, without dbt's tests (the test suite's business, not the study's),
builds the seeds and models the estimate depends on; the overall rows (imd_quintile `all`) of
marts.mart_outcomes_by_deprivation are compared with truth.json's estimands (the intention-to-treat
change per referral, and the effect among those who engage), per outcome and window. Each seed's
result is appended to <out>/results.jsonl as soon as it is known, so an interrupted study keeps the
seeds it finished. The summary (mean bias, bias as a share of the truth, RMSE, 95% interval
coverage, naive beside matched) is printed and written between the markers in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from sprx.settings import DBT_PROJECT_DIR

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
README = HERE / "README.md"
BEGIN, END = "<!-- method-study:begin -->", "<!-- method-study:end -->"
KEY = "method-study-key-0123456789abcdef0123456789"
OUTCOMES = ("gp_consultations", "calls_999", "see_and_convey")
WINDOWS = (90, 180, 365)
MART_SQL = """
    select outcome, window_days, target_referral_count, matched_referral_count, naive_mean_change,
           matched_difference_in_differences, matched_standard_error, matched_ci_lower, matched_ci_upper,
           matched_unadjusted_difference_in_differences, matched_unadjusted_standard_error, matched_cluster_count,
           effect_among_engaged, effect_among_engaged_ci_lower, effect_among_engaged_ci_upper
    from marts.mart_outcomes_by_deprivation where imd_quintile = 'all'
"""


def parse_seeds(text: str) -> list[int]:
    """'1-10' or '1,2,5' -> the seeds."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(part) for part in text.split(",")]


def _measured(command: list[str], env: dict, log: Path) -> tuple[int, float, float]:
    """Run a command, its output to `log`: (exit code, seconds, peak resident memory in GiB of it and the
    processes it waited for; dbt runs its Python models in its own process)."""
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.monotonic() - started, usage.ru_maxrss / 1024 ** 2


def run_seed(seed: int, people: int, systmone_every: int, work: Path, dbt_vars: str | None = None,
             keep: Path | None = None) -> dict:
    """Generate, ingest and build one seed; return the truth beside the warehouse's estimates, and each
    stage's seconds and peak memory. With `keep`, the seed's home (its warehouse) is kept there."""
    feeds, home = work / f"feeds-{seed}", work / f"home-{seed}"
    for folder in (feeds, home):
        shutil.rmtree(folder, ignore_errors=True)
    # a loaded machine can take a while to start Prefect's temporary server; the generated files are
    # whole when moved into landing, so the ingest need not wait for them to settle
    env = dict(os.environ, SPRX_HOME=str(home), SPRX_PSEUDONYMISATION_KEY=KEY, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300", SPRX_LANDING_SETTLE_SECONDS="0")
    started = time.monotonic()
    dbt = [str(BIN / "dbt"), "build", "--select", "+mart_outcomes_by_deprivation", "--exclude", "resource_type:test",
           "resource_type:unit_test", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    if dbt_vars:  # a sensitivity run: e.g. '{matching_candidates_per_referral: 1000000}' keeps every candidate
        dbt += ["--vars", dbt_vars]
    stages = {
        "sample": [str(BIN / "sprx"), "sample", "--out", str(feeds), "--people", str(people), "--seed", str(seed),
                   "--systmone-every", str(systmone_every), "--emis-every", "2000", "--quiet"],
        "ingest": [str(BIN / "sprx"), "ingest"],
        "build": dbt,
    }
    measured = {}
    for stage, command in stages.items():
        if stage == "ingest":
            (home / "landing").mkdir(parents=True)
            for child in feeds.iterdir():
                if child.is_dir():
                    shutil.move(str(child), home / "landing" / child.name)
        log = work / f"{stage}-{seed}.log"
        code, seconds, peak = _measured(command, env, log)
        if code != 0:
            raise RuntimeError(f"seed {seed}: {stage} failed: {log.read_text(encoding='utf-8')[-2000:]}")
        measured[stage] = {"seconds": round(seconds, 1), "peak_gib": round(peak, 2)}
    truth = json.loads((feeds / "truth.json").read_text(encoding="utf-8"))
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        cursor = connection.execute(MART_SQL)
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    shutil.rmtree(feeds, ignore_errors=True)
    if keep is not None:
        shutil.rmtree(keep / f"home-{seed}", ignore_errors=True)
        shutil.move(str(home), keep / f"home-{seed}")
    shutil.rmtree(home, ignore_errors=True)
    estimates = {}
    for row in rows:
        key = f"{row['outcome']}_{row['window_days']}d"
        true = truth["true_effect"].get(key, {})
        naive_truth = truth["naive_before_after"].get(key, {})
        estimates[key] = {**row, "truth_itt": true.get("itt_change_per_referral"),
                          "truth_effect_among_engaged": true.get("effect_among_engaged"),
                          "truth_referrals": true.get("referrals"),
                          "truth_naive": naive_truth.get("mean_after_minus_before")}
    return {"seed": seed, "people": people, "seconds": round(time.monotonic() - started, 1), "stages": measured,
            "estimates": estimates}


def summarise(results: list[dict]) -> str:
    """The markdown table of bias, RMSE and coverage per outcome and window."""
    lines = [
        "| outcome, window | seeds | mean truth (ITT) | naive: mean bias | matched: mean bias (share of truth; its SE over seeds) "
        "| matched RMSE | matched mean SE | 95% CI coverage | effect among engaged: truth, bias, coverage "
        "| referrals (target, matched) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for outcome in OUTCOMES:
        for window in WINDOWS:
            key = f"{outcome}_{window}d"
            rows = [r["estimates"][key] for r in results if key in r["estimates"]
                    and r["estimates"][key]["matched_difference_in_differences"] is not None
                    and r["estimates"][key]["truth_itt"] is not None]
            if not rows:
                continue
            n = len(rows)
            truth = sum(r["truth_itt"] for r in rows) / n
            errors = [r["matched_difference_in_differences"] - r["truth_itt"] for r in rows]
            bias = sum(errors) / n
            # the mean bias's own standard error over seeds: how far it could be from the method's true bias
            spread = (sum((e - bias) ** 2 for e in errors) / (n - 1)) ** 0.5 / n ** 0.5 if n > 1 else float("nan")
            rmse = (sum(e * e for e in errors) / n) ** 0.5
            naive_bias = sum(r["naive_mean_change"] - r["truth_itt"] for r in rows if r["naive_mean_change"] is not None) / n
            covered = sum(1 for r in rows if r["matched_ci_lower"] is not None
                          and r["matched_ci_lower"] <= r["truth_itt"] <= r["matched_ci_upper"])
            mean_se = sum(r["matched_standard_error"] or 0 for r in rows) / n
            iv_rows = [r for r in rows if r["effect_among_engaged"] is not None and r["truth_effect_among_engaged"] is not None]
            iv_truth = sum(r["truth_effect_among_engaged"] for r in iv_rows) / max(len(iv_rows), 1)
            iv_bias = sum(r["effect_among_engaged"] - r["truth_effect_among_engaged"] for r in iv_rows) / max(len(iv_rows), 1)
            iv_cover = sum(1 for r in iv_rows if r["effect_among_engaged_ci_lower"] is not None
                           and r["effect_among_engaged_ci_lower"] <= r["truth_effect_among_engaged"]
                           <= r["effect_among_engaged_ci_upper"])
            share = f"{bias / abs(truth):+.0%}" if truth else "n/a"
            target = sum(r["target_referral_count"] for r in rows) / n
            matched = sum(r["matched_referral_count"] for r in rows) / n
            lines.append(
                f"| {outcome}, {window} d | {n} | {truth:.3f} | {naive_bias:+.3f} | {bias:+.3f} ({share}; {spread:.3f}) | {rmse:.3f} "
                f"| {mean_se:.3f} | {covered}/{n} ({covered / n:.0%}) | {iv_truth:.3f}, {iv_bias:+.3f}, "
                f"{iv_cover}/{len(iv_rows)} | {target:.0f}, {matched:.0f} |")
    return "\n".join(lines)


def write_readme(table: str, results: list[dict], people: int) -> None:
    """Put the table between the markers in benchmarks/README.md."""
    text = README.read_text(encoding="utf-8")
    seeds = sorted(r["seed"] for r in results)
    minutes = sum(r["seconds"] for r in results) / 60
    block = (f"{BEGIN}\nSeeds finished: {', '.join(map(str, seeds))} ({len(seeds)} seeds, {people:,} people each, "
             f"{minutes:.0f} min in all).\n\n{table}\n{END}")
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--seeds", default="1-10")
    parser.add_argument("--systmone-every", type=int, default=91,
                        help="days between SystmOne deltas (91 keeps the study's ingest short)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "method")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--dbt-vars", help="dbt --vars for the build (YAML), e.g. a sensitivity run's settings")
    parser.add_argument("--keep", action="store_true", help="keep each seed's home (its warehouse) in <out>/home-<seed>")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    if not args.report_only:
        done = set()
        if results_path.exists():
            done = {json.loads(line)["seed"] for line in results_path.read_text().splitlines() if line.strip()}
        with tempfile.TemporaryDirectory(prefix="sprx-method-") as work:
            for seed in parse_seeds(args.seeds):
                if seed in done:
                    continue
                result = run_seed(seed, args.people, args.systmone_every, Path(work), args.dbt_vars,
                                  args.out if args.keep else None)
                with open(results_path, "a", encoding="utf-8") as out:
                    out.write(json.dumps(result) + "\n")
                stages = ", ".join(f"{stage} {m['seconds']} s, {m['peak_gib']} GiB" for stage, m in result["stages"].items())
                print(f"seed {seed}: {result['seconds']} s ({stages})", flush=True)
    results = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    results = [r for r in results if r["people"] == args.people]
    table = summarise(results)
    print(table)
    if args.dbt_vars is None:  # a sensitivity run's table is printed, not put in place of the study's
        write_readme(table, results, args.people)
    return 0


if __name__ == "__main__":
    sys.exit(main())
