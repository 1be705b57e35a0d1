"""Matched comparators by propensity score, per matching specification (a dbt Python model).

One row per specification x referral episode x matched comparator. For each specification (the
primary one and the sensitivity analyses' variants), a logistic model of being the referred person
among the risk set at each index date (int_matching_risk_sets, which holds only what was known on
that date) gives every member a propensity score. Each referral takes up to `ratio` comparators
from its own risk set (same practice or PCN, same sex) nearest to it on the logit of the score,
within a caliper of `caliper_sd` standard deviations of the logit; a referral with none inside the
caliper has no comparators (and leaves the matched analysis, which counts it). Sampling is with
replacement across referrals: one person can be a comparator for several referrals, each at that
referral's index date. Ties are broken by person key, so a build is deterministic.

Covariates: log(1 + attended GP consultations) in each of the `lookback_quarters` quarters before
the index date, log(1 + linked 999 calls) in the four quarters before it and in the four before
those, age and its square, under 18, 65 or over, female, IMD quintile (unknown as its own level)
and the matching area (practice or PCN). Specifications: primary (8 quarters, ratio 5, new users: no
referral episode observed before the index date, for the referred person and comparators alike),
lookback_4q (4 quarters), ratio_1, ratio_10, and washout_365 (the risk set as it stands: people
referred more than matching_washout_days (365) days before the index date stay in it).

Why new users: the generator refers a person once and a referral's effect lasts, so a person referred
years before is neither at risk of a first referral nor untreated; in the method oracle
(benchmarks/method_oracle.py, 10 seeds) leaving them in leaned the 180-day GP estimate by -31% of
the truth, leaving them out by -13% (within its standard error over seeds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from sprx.estimation import as_pandas, model_result

SCHEMA = pa.schema([
    ("matched_comparator_key", pa.string()), ("specification", pa.string()), ("episode_key", pa.string()),
    ("person_key", pa.string()), ("index_date", pa.date32()), ("later_referral_date", pa.date32()),
    ("propensity_score", pa.float64()), ("logit_distance", pa.float64()), ("comparator_rank", pa.int64()),
    ("comparator_count", pa.int64()), ("comparator_weight", pa.float64()),
])


def _features(frame: pd.DataFrame, quarters: int) -> np.ndarray:
    """The design matrix of the propensity model (intercept first)."""
    columns = [np.ones(len(frame))]
    for quarter in range(1, quarters + 1):
        columns.append(np.log1p(frame[f"gp_quarter_{quarter}"].to_numpy(dtype=float)))
    recent = sum(frame[f"calls_999_quarter_{q}"].to_numpy(dtype=float) for q in range(1, 5))
    older = sum(frame[f"calls_999_quarter_{q}"].to_numpy(dtype=float) for q in range(5, min(quarters, 8) + 1)) \
        if quarters > 4 else np.zeros(len(frame))
    columns += [np.log1p(recent), np.log1p(older)]
    age = frame["age_at_index"].to_numpy(dtype=float) / 10.0
    columns += [age, age ** 2, (age < 1.8).astype(float), (age >= 6.5).astype(float),
                frame["is_female"].to_numpy(dtype=float)]
    quintile = frame["imd_quintile"].fillna(0).to_numpy(dtype=float)
    for level in (0, 1, 2, 4, 5):  # quintile 3 is the reference level
        columns.append((quintile == level).astype(float))
    areas = frame["matching_area_code"].to_numpy()
    for area in sorted(set(areas))[1:]:  # one indicator per matching area but the first
        columns.append((areas == area).astype(float))
    return np.column_stack(columns)


def _fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                  iterations: int = 25) -> np.ndarray:
    """Coefficients of a (weighted) logistic regression by Newton-Raphson, with a small ridge for stability.

    The weights are the risk set's sampling weights (int_matching_risk_sets: a drawn candidate stands for
    1 / its chance of being drawn), so the model is the one the whole risk set would give."""
    w = np.ones(len(y)) if weights is None else weights
    beta = np.zeros(x.shape[1])
    ridge = 1e-4 * np.eye(x.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(iterations):
        eta = np.clip(x @ beta, -30, 30)
        p = 1.0 / (1.0 + np.exp(-eta))
        gradient = x.T @ (w * (y - p)) - ridge @ beta
        hessian = (x * (w * p * (1 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def _empty(columns: list[str]) -> pd.DataFrame:
    """No matches, with the column types a match would have."""
    types = {"specification": "object", "episode_key": "object", "person_key": "object",
             "index_date": "datetime64[ns]", "later_referral_date": "datetime64[ns]", "propensity_score": "float64",
             "logit_distance": "float64", "comparator_rank": "int64", "comparator_count": "int64"}
    return pd.DataFrame({column: pd.Series(dtype=types[column]) for column in columns})


def match(risk_sets: pd.DataFrame, *, quarters: int, ratio: int, caliper_sd: float,
          new_users_only: bool, specification: str) -> pd.DataFrame:
    """The matched comparators of one specification."""
    frame = risk_sets
    if new_users_only:
        # drop members (referred or not) with any referral observed before the index date; a referral
        # whose referred person was referred before leaves with its risk set
        frame = frame[frame["previous_referral_date"].isna()]
        frame = frame[frame["episode_key"].isin(frame.loc[frame["is_referred"], "episode_key"])]
    columns = ["specification", "episode_key", "person_key", "index_date", "later_referral_date",
               "propensity_score", "logit_distance", "comparator_rank", "comparator_count"]
    if frame.empty or not frame["is_referred"].any() or frame["is_referred"].all():
        return _empty(columns)
    x = _features(frame, quarters)
    y = frame["is_referred"].to_numpy(dtype=float)
    weights = (frame["sampling_weight"].to_numpy(dtype=float) if "sampling_weight" in frame
               else np.ones(len(frame)))
    logit = x @ _fit_logistic(x, y, weights)
    frame = frame.assign(logit=logit)
    # the caliper: caliper_sd standard deviations of the logit over the whole risk set (weighted back)
    mean = float(np.average(logit, weights=weights))
    caliper = caliper_sd * float(np.sqrt(np.average((logit - mean) ** 2, weights=weights)))
    referred = frame.loc[frame["is_referred"], ["episode_key", "logit"]].rename(columns={"logit": "referred_logit"})
    candidates = frame[~frame["is_referred"]].merge(referred, on="episode_key")
    candidates["logit_distance"] = (candidates["logit"] - candidates["referred_logit"]).abs()
    candidates = candidates[candidates["logit_distance"] <= caliper]
    candidates = candidates.sort_values(["episode_key", "logit_distance", "person_key"])
    candidates["comparator_rank"] = candidates.groupby("episode_key").cumcount() + 1
    kept = candidates[candidates["comparator_rank"] <= ratio].copy()
    kept["comparator_count"] = kept.groupby("episode_key")["person_key"].transform("size")
    kept["propensity_score"] = 1.0 / (1.0 + np.exp(-kept["logit"]))
    kept["specification"] = specification
    return kept[columns]


def model(dbt, session):
    """dbt entry point: every specification's matches in one table."""
    dbt.config(materialized="table")
    ratio = int(dbt.config.get("matching_ratio"))
    quarters = int(dbt.config.get("matching_lookback_quarters"))
    caliper_sd = float(dbt.config.get("matching_caliper_sd"))
    risk_sets = as_pandas(dbt.ref("int_matching_risk_sets"))
    risk_sets["index_date"] = pd.to_datetime(risk_sets["index_date"])
    risk_sets["previous_referral_date"] = pd.to_datetime(risk_sets["previous_referral_date"])
    specifications = [
        ("primary", quarters, ratio, True),
        ("lookback_4q", min(4, quarters), ratio, True),
        ("ratio_1", quarters, 1, True),
        ("ratio_10", quarters, 10, True),
        ("washout_365", quarters, ratio, False),
    ]
    frames = [match(risk_sets, quarters=q, ratio=r, caliper_sd=caliper_sd, new_users_only=w, specification=name)
              for name, q, r, w in specifications]
    matched = pd.concat(frames, ignore_index=True) if any(len(f) for f in frames) else frames[0]
    matched["specification"] = matched["specification"].astype(str)
    matched["episode_key"] = matched["episode_key"].astype(str)
    matched["person_key"] = matched["person_key"].astype(str)
    matched["matched_comparator_key"] = (
        matched["specification"] + "|" + matched["episode_key"] + "|" + matched["person_key"])
    matched["comparator_weight"] = 1.0 / matched["comparator_count"].astype(float)
    def dates(column: str) -> pd.Series:
        """Python dates (None for none), typed object even when there are no rows."""
        values = [None if pd.isna(d) else d.date() for d in pd.to_datetime(matched[column])]
        return pd.Series(values, index=matched.index, dtype="object")

    matched["index_date"] = dates("index_date")
    matched["later_referral_date"] = dates("later_referral_date")
    matched["comparator_rank"] = matched["comparator_rank"].astype("int64")
    matched["comparator_count"] = matched["comparator_count"].astype("int64")
    return model_result(pa.Table.from_pandas(matched[SCHEMA.names], schema=SCHEMA, preserve_index=False), session)
