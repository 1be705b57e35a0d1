"""The warehouse's matched estimator re-run on the generator's own arrays, where Y(0) is known.

    .venv/bin/python benchmarks/method_oracle.py --people 20000 --seeds 1-10

No feeds, no ingest, no dbt: the synthetic ICS is simulated in memory (sprx.synthetic.world, the
same people and events as `sprx sample --seed S`), the risk sets are drawn as the primary
analysis draws them (int_matching_risk_sets and int_comparators_matched: same practice and sex, on a
list at the end, new users: no referral before the index date or on it, 8 quarters of history;
`--washout-days 365` gives the washout_365 sensitivity analysis instead), and the propensity model, the caliper
matching and the bias-corrected difference in differences are the warehouse's own code
(int_comparators_matched, int_referral_contrasts). Because the generator also knows each referred
person's GP consultations had they not been referred (Y(0), before the engagement effect thinned
them), it separates the two parts of an estimate's error, which the pipeline's study cannot:

- `truth - realised`: truth.json's ITT estimand against the effect realised on these referrals
  (mean of Y - Y(0) after the index date): does truth state what the warehouse estimates?
- `comparison error`: the DiD computed with the referred person's Y(0): what is left when the effect
  is taken out, i.e. how well the comparators stand in for the referred people's own untreated
  course (confounding left by matching, plus sampling noise).
- `dilution`: the estimate minus the same estimate with the comparators' Y(0) after the index date:
  the part of the estimate's distance from truth.json that is the estimand's, not the comparison's
  (the warehouse compares referral now with usual care, under which some comparators are referred
  later and their use falls too; truth.json's ITT compares referral with no referral).

Both are printed per seed and window for the warehouse's bias correction (`warehouse`) and for a
candidate that adds every count on its own scale (`counts`), on the same matches. GP consultations only; ages and
999 calls as the generator holds them (all calls, not only traced ones).

Truth is taken over the referrals that found a comparator (`truth`) and over every referral followed
up (`mean truth, every referral`: truth.json's population), and the bias against each is printed: a
caliper that leaves referrals unmatched changes the first. `--caliper-sd` sets the caliper.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "dbt_project" / "models" / "intermediate"))

import sprx.synthetic.world as world  # noqa: E402
from int_comparators_matched import _features, _fit_logistic  # noqa: E402
from int_referral_contrasts import covariates  # noqa: E402
from sprx.synthetic.generate import BLOCK_SIZE  # noqa: E402
from sprx.synthetic.identity import NhsNumbers  # noqa: E402
from sprx.synthetic.params import LOOKBACK_DAYS, LOOKBACK_QUARTERS, OUTCOME_WINDOWS, QUARTER_DAYS, Parameters  # noqa: E402
from sprx.synthetic.places import load_places  # noqa: E402

RATIO, CALIPER_SD, AMBULANCE_FILE_DAYS = 5, 0.2, 28


def counts_covariates(frame: pd.DataFrame, quarters: int = LOOKBACK_QUARTERS) -> np.ndarray:
    """A candidate correction: the warehouse's covariates plus every count as it is (not on the log scale).

    Regression to the mean is about proportional to the level of use, so this corrects the tail
    better at 20,000 people; at 3,000 people (30-60 referrals per window) it extrapolates wildly
    from a few frequent attenders, so the warehouse does not use it."""
    gp = [frame[f"gp_quarter_{q}"].to_numpy(dtype=float) for q in range(1, quarters + 1)]
    calls = [sum(frame[f"calls_999_quarter_{q}"].to_numpy(dtype=float) for q in span)
             for span in (range(1, 5), range(5, quarters + 1))]
    return np.column_stack([covariates(frame, quarters), *gp, *calls])


def simulate(params: Parameters) -> tuple[world.Grid, list[tuple]]:
    """Every block as generate.py simulates it: (practice, block, Y, Y(0), 999 calls) per person x day."""
    places = load_places()
    grid = world.Grid.for_params(params)
    practices = list(places.practices)
    world_rng = np.random.default_rng([params.seed, 0])
    size_weights = world_rng.lognormal(0.0, 0.45, len(practices))
    people = world_rng.multinomial(params.people, size_weights / size_weights.sum())
    joiners = world_rng.poisson(people * params.join_rate_per_year * grid.days / 365.0)
    homes = [places.postcodes[i] for i in world_rng.choice(len(places.postcodes), params.care_homes, replace=False)]
    home_practice = [(7 * home) % len(practices) for home in range(params.care_homes)]
    imd = {postcode: places.lsoa_imd_decile[places.postcode_lsoa[postcode]] for postcode in places.postcodes}
    nhs_numbers = NhsNumbers(params.seed)
    untreated: list[np.ndarray] = []
    thin = world._thin

    def keep_untreated(rng, counts, keep, rows, from_day):
        """Copy the counts before the effect thins them (the first call thins finished consultations)."""
        untreated.append(counts.copy())
        thin(rng, counts, keep, rows, from_day)

    world._thin = keep_untreated
    blocks, key = [], 0
    try:
        for index in range(len(practices)):
            total, joining = int(people[index]), int(joiners[index])
            residents = [params.care_home_residents if home_practice[h] == index else 0 for h in range(params.care_homes)]
            parts = max(1, -(-(total + joining) // BLOCK_SIZE))
            for part in range(parts):
                untreated.clear()
                block = world.simulate_block(
                    rng=np.random.default_rng([params.seed, index + 1, part]), params=params, grid=grid,
                    practice_index=index, n_people=total // parts + (1 if part < total % parts else 0),
                    n_joiners=joining // parts + (1 if part < joining % parts else 0), person_key_start=key,
                    local_id_start=0, postcodes=list(places.postcodes), postcode_imd=imd, care_home_postcodes=homes,
                    care_home_residents=residents if part == 0 else [0] * params.care_homes, nhs_numbers=nhs_numbers)
                key += len(block.person_key)
                shape = (len(block.person_key), grid.days)
                observed, calls = np.zeros(shape, dtype=np.int16), np.zeros(shape, dtype=np.int16)
                finished = block.appointments["status"] == world.STATUS_FINISHED
                np.add.at(observed, (block.appointments["person"][finished], block.appointments["day"][finished]), 1)
                np.add.at(calls, (block.calls["person"], block.calls["day"]), 1)
                blocks.append((index, block, observed, untreated[0].astype(np.int16), calls))
    finally:
        world._thin = thin
    return grid, blocks


def cumulative(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((counts.shape[0], 1), dtype=np.int32), np.cumsum(counts, axis=1, dtype=np.int32)], axis=1)


def risk_sets(grid: world.Grid, blocks: list[tuple], washout_days: int | None = None) -> pd.DataFrame:
    """Each eligible referral's risk set, with matched covariates and every window's counts."""
    T, start = grid.days, grid.start_day
    history_from = start - AMBULANCE_FILE_DAYS  # the first ambulance file's coverage bounds the history
    frames = []
    for index, block, observed, untreated, calls in blocks:
        at_end = block.leave_day >= T
        c_observed, c_untreated, c_calls = cumulative(observed), cumulative(untreated), cumulative(calls)
        age_at_start = (np.datetime64(grid.date(start).isoformat(), "D") - block.dob).astype(int) / 365.25
        quintile = (block.imd_decile + 1) // 2
        referral = block.referral_day
        for person in np.nonzero(at_end & (referral >= 0))[0]:
            day = int(referral[person])
            if day - LOOKBACK_DAYS < history_from or block.sex[person] not in ("F", "M"):
                continue
            age = age_at_start + (day - start) / 365.25
            member = at_end & (block.sex == block.sex[person]) & (age >= 0)
            earliest = day - washout_days if washout_days is not None else -1  # None: new users only
            member &= ~((referral >= 0) & (referral <= day) & (referral >= earliest))
            member[person] = True
            rows = np.nonzero(member)[0]
            frame = {"episode_key": f"{index}-{person}", "person": rows, "is_referred": rows == person,
                     "age_at_index": np.floor(age[rows]), "is_female": block.sex[rows] == "F",
                     "imd_quintile": quintile[rows], "matching_area_code": str(index)}
            for q in range(1, LOOKBACK_QUARTERS + 1):
                upper, lower = day - QUARTER_DAYS * (q - 1), day - QUARTER_DAYS * q
                frame[f"gp_quarter_{q}"] = c_observed[rows, upper] - c_observed[rows, lower]
                frame[f"calls_999_quarter_{q}"] = c_calls[rows, upper] - c_calls[rows, lower]
            for window in OUTCOME_WINDOWS:
                complete = day + window <= T
                frame[f"before_{window}"] = c_observed[rows, day] - c_observed[rows, day - window]
                frame[f"after_{window}"] = (c_observed[rows, day + window] - c_observed[rows, day]) if complete else np.nan
                frame[f"untreated_{window}"] = (c_untreated[rows, day + window] - c_untreated[rows, day]) if complete else np.nan
                frame[f"truth_{window}"] = -block.expected_fall[("gp_consultations", window)][person]
            frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def estimate(members: pd.DataFrame, caliper_sd: float = CALIPER_SD) -> dict[tuple[str, int], dict[str, float]]:
    """Match as int_comparators_matched does; per correction and window, the errors described above."""
    logit = _features(members, LOOKBACK_QUARTERS) @ _fit_logistic(
        _features(members, LOOKBACK_QUARTERS), members["is_referred"].to_numpy(dtype=float))
    members = members.assign(logit=logit)
    referred = members[members["is_referred"]]
    candidates = members[~members["is_referred"]].merge(
        referred[["episode_key", "logit"]].rename(columns={"logit": "referred_logit"}), on="episode_key")
    candidates["distance"] = (candidates["logit"] - candidates["referred_logit"]).abs()
    candidates = candidates[candidates["distance"] <= caliper_sd * float(np.std(logit))]
    candidates = candidates.sort_values(["episode_key", "distance", "person"])
    matched = candidates[candidates.groupby("episode_key").cumcount() < RATIO].copy()
    matched["weight"] = 1.0 / matched.groupby("episode_key")["person"].transform("size")
    results = {}
    for window in OUTCOME_WINDOWS:
        own = referred[referred[f"after_{window}"].notna()].set_index("episode_key")
        truth_all = own[f"truth_{window}"].mean()  # the estimand's population: every referral followed up
        own = own[own.index.isin(matched["episode_key"])]
        comparators = matched[matched["episode_key"].isin(own.index)].copy()
        comparators["change"] = comparators[f"after_{window}"] - comparators[f"before_{window}"]
        comparators["change_never"] = comparators[f"untreated_{window}"] - comparators[f"before_{window}"]
        weights = comparators["weight"].to_numpy()
        for name, design in (("warehouse", covariates), ("counts", counts_covariates)):
            x = design(comparators, LOOKBACK_QUARTERS)
            beta, *_ = np.linalg.lstsq(x * np.sqrt(weights)[:, None], comparators["change"].to_numpy() * np.sqrt(weights),
                                       rcond=None)
            shift = pd.Series(design(own, LOOKBACK_QUARTERS) @ beta, index=own.index).reindex(comparators["episode_key"])
            corrected = comparators["change"] + shift.to_numpy() - x @ beta
            comparator_change = (corrected * weights).groupby(comparators["episode_key"]).sum().reindex(own.index)
            never = comparators["change_never"] + shift.to_numpy() - x @ beta
            comparator_never = (never * weights).groupby(comparators["episode_key"]).sum().reindex(own.index)
            change = own[f"after_{window}"] - own[f"before_{window}"]
            untreated_change = own[f"untreated_{window}"] - own[f"before_{window}"]
            results[(name, window)] = {
                "referrals": len(own), "truth": own[f"truth_{window}"].mean(), "truth_all": truth_all,
                "realised": (own[f"after_{window}"] - own[f"untreated_{window}"]).mean(),
                "estimate": (change - comparator_change).mean(),
                "comparison_error": (untreated_change - comparator_change).mean(),
                "se": (change - comparator_change).std() / np.sqrt(len(own)),
                "dilution": (comparator_never - comparator_change).mean(),
            }
    return results


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20000)
    parser.add_argument("--seeds", default="1-10")
    parser.add_argument("--washout-days", type=int, default=None,
                        help="keep people referred more than this many days before in the risk sets "
                             "(the washout_365 sensitivity analysis); default: new users only, as the primary")
    parser.add_argument("--caliper-sd", type=float, default=CALIPER_SD,
                        help="caliper in standard deviations of the logit (the warehouse's matching_caliper_sd)")
    arguments = parser.parse_args()
    print("seed\tcorrection\twindow\treferrals\ttruth\trealised\testimate\tbias\tcomparison_error\tdilution\tse",
          flush=True)
    totals: dict[tuple[str, int], list[dict[str, float]]] = {}
    for seed in parse_seeds(arguments.seeds):
        grid, blocks = simulate(Parameters(people=arguments.people, seed=seed))
        for (name, window), r in sorted(estimate(risk_sets(grid, blocks, arguments.washout_days), arguments.caliper_sd).items()):
            r["bias"] = r["estimate"] - r["truth"]
            totals.setdefault((name, window), []).append(r)
            print(f"{seed}\t{name}\t{window}\t{r['referrals']}\t{r['truth']:.3f}\t{r['realised']:.3f}\t{r['estimate']:.3f}"
                  f"\t{r['bias']:+.3f}\t{r['comparison_error']:+.3f}\t{r['dilution']:+.3f}\t{r['se']:.3f}", flush=True)
    print("\ncorrection\twindow\tseeds\tmean truth\tmean bias (SE over seeds)\tshare of truth"
          "\tmean comparison error\tmean dilution\tcoverage (estimate +- 1.96 se)"
          "\tmean truth, every referral\tmean bias against it")
    for (name, window), rows in sorted(totals.items()):
        biases = np.array([r["bias"] for r in rows])
        spread = biases.std(ddof=1) / np.sqrt(biases.size) if biases.size > 1 else float("nan")
        truth = np.mean([r["truth"] for r in rows])
        coverage = np.mean([abs(r["bias"]) <= 1.96 * r["se"] for r in rows])
        print(f"{name}\t{window}\t{biases.size}\t{truth:.3f}\t{biases.mean():+.3f} ({spread:.3f})"
              f"\t{biases.mean() / abs(truth):+.0%}\t{np.mean([r['comparison_error'] for r in rows]):+.3f}"
              f"\t{np.mean([r['dilution'] for r in rows]):+.3f}\t{coverage:.0%}"
              f"\t{np.mean([r['truth_all'] for r in rows]):.3f}"
              f"\t{np.mean([r['estimate'] - r['truth_all'] for r in rows]):+.3f}")


if __name__ == "__main__":
    main()
