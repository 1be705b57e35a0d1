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

Bounded memory: risk sets of more than `matching_fit_rows` rows in all (about 10 M at 150,000 people
with the default draw of 1,500 candidates per referral) are not held at once. The models are fitted on
a weighted draw of about that many rows (every referred person; each candidate with one chance in
rows / matching_fit_rows, by a hash of its key, its sampling weight scaled up to match), which is all
a model of some twenty coefficients needs; each matching area's risk sets are then read in turn and
its referrals matched against every member, so memory follows the largest area, not the ICS.

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

from sprx.estimation import as_pandas, group_sizes, model_result, rows_kept, rows_where

SCHEMA = pa.schema([
    ("matched_comparator_key", pa.string()), ("specification", pa.string()), ("episode_key", pa.string()),
    ("person_key", pa.string()), ("index_date", pa.date32()), ("later_referral_date", pa.date32()),
    ("propensity_score", pa.float64()), ("logit_distance", pa.float64()), ("comparator_rank", pa.int64()),
    ("comparator_count", pa.int64()), ("comparator_weight", pa.float64()),
])


def _design(frame: pd.DataFrame, quarters: int) -> np.ndarray:
    """The propensity model's design matrix without the matching areas (intercept first)."""
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
    return np.column_stack(columns)


def _features(frame: pd.DataFrame, quarters: int, areas: list[str] | None = None) -> np.ndarray:
    """The design matrix of the propensity model: `_design` and one indicator per matching area but
    the first of `areas` (by default the frame's own areas, sorted)."""
    codes = frame["matching_area_code"].to_numpy()
    areas = sorted(set(codes)) if areas is None else areas
    indicators = [(codes == area).astype(float) for area in areas[1:]]
    return np.column_stack([_design(frame, quarters), *indicators]) if indicators else _design(frame, quarters)


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


class Score:
    """A fitted propensity model: its coefficients, the areas its indicators stand for, and the caliper.

    (A plain class: dbt runs this file as a module it does not register, where a dataclass fails.)"""

    def __init__(self, quarters: int, new_users_only: bool, beta: np.ndarray, areas: list[str],
                 caliper: float) -> None:
        self.quarters, self.new_users_only, self.beta, self.areas, self.caliper = (
            quarters, new_users_only, beta, areas, caliper)

    def logit(self, frame: pd.DataFrame) -> np.ndarray:
        return _features(frame, self.quarters, self.areas) @ self.beta


def _eligible(frame: pd.DataFrame, new_users_only: bool) -> pd.DataFrame:
    """The risk sets a specification matches in. New users: drop members (referred or not) with any
    referral observed before the index date; a referral whose referred person was referred before
    leaves with its risk set."""
    if not new_users_only:
        return frame
    frame = frame[frame["previous_referral_date"].isna()]
    return frame[frame["episode_key"].isin(frame.loc[frame["is_referred"], "episode_key"])]


def fit_score(risk_sets: pd.DataFrame, *, quarters: int, caliper_sd: float, new_users_only: bool) -> Score | None:
    """The propensity model fitted on risk sets (all of them, or a weighted draw from them), and the
    caliper: caliper_sd weighted standard deviations of the logit. None when there is nothing to fit."""
    frame = _eligible(risk_sets, new_users_only)
    if frame.empty or not frame["is_referred"].any() or frame["is_referred"].all():
        return None
    areas = sorted(set(frame["matching_area_code"]))
    x = _features(frame, quarters, areas)
    weights = frame["sampling_weight"].to_numpy(dtype=float) if "sampling_weight" in frame else np.ones(len(frame))
    beta = _fit_logistic(x, frame["is_referred"].to_numpy(dtype=float), weights)
    logit = x @ beta
    mean = float(np.average(logit, weights=weights))
    caliper = caliper_sd * float(np.sqrt(np.average((logit - mean) ** 2, weights=weights)))
    return Score(quarters, new_users_only, beta, areas, caliper)


def _empty(columns: list[str]) -> pd.DataFrame:
    """No matches, with the column types a match would have."""
    types = {"specification": "object", "episode_key": "object", "person_key": "object",
             "index_date": "datetime64[ns]", "later_referral_date": "datetime64[ns]", "propensity_score": "float64",
             "logit_distance": "float64", "comparator_rank": "int64", "comparator_count": "int64"}
    return pd.DataFrame({column: pd.Series(dtype=types[column]) for column in columns})


COLUMNS = ["specification", "episode_key", "person_key", "index_date", "later_referral_date",
           "propensity_score", "logit_distance", "comparator_rank", "comparator_count"]


def nearest(risk_sets: pd.DataFrame, score: Score | None, ratios: dict[str, int]) -> list[pd.DataFrame]:
    """Each referral's comparators nearest on the logit within the caliper, for every specification in
    `ratios` (name -> how many comparators at most) sharing this score. Risk sets are whole: every member
    of a referral's risk set is in `risk_sets` (one area's at a time will do)."""
    frame = _eligible(risk_sets, score.new_users_only) if score is not None else risk_sets.iloc[:0]
    if score is None or frame.empty:
        return [_empty(COLUMNS) for _ in ratios]
    frame = frame.assign(logit=score.logit(frame))
    referred = frame.loc[frame["is_referred"], ["episode_key", "logit"]].rename(columns={"logit": "referred_logit"})
    candidates = frame[~frame["is_referred"]].merge(referred, on="episode_key")
    candidates["logit_distance"] = (candidates["logit"] - candidates["referred_logit"]).abs()
    candidates = candidates[candidates["logit_distance"] <= score.caliper]
    candidates = candidates.sort_values(["episode_key", "logit_distance", "person_key"])
    candidates["comparator_rank"] = candidates.groupby("episode_key").cumcount() + 1
    candidates = candidates[candidates["comparator_rank"] <= max(ratios.values())]
    candidates["propensity_score"] = 1.0 / (1.0 + np.exp(-candidates["logit"]))
    matched = []
    for specification, ratio in ratios.items():
        kept = candidates[candidates["comparator_rank"] <= ratio].copy()
        kept["comparator_count"] = kept.groupby("episode_key")["person_key"].transform("size")
        kept["specification"] = specification
        matched.append(kept[COLUMNS])
    return matched


def match(risk_sets: pd.DataFrame, *, quarters: int, ratio: int, caliper_sd: float,
          new_users_only: bool, specification: str) -> pd.DataFrame:
    """The matched comparators of one specification, fitted and matched on these risk sets."""
    score = fit_score(risk_sets, quarters=quarters, caliper_sd=caliper_sd, new_users_only=new_users_only)
    return nearest(risk_sets, score, {specification: ratio})[0]


def fit_sample(risk_sets: pd.DataFrame, share: float) -> pd.DataFrame:
    """A weighted draw from risk sets for fitting the model: every referred person, and each candidate
    with chance `share` (a hash of its member key, so a build is deterministic), weighted up by 1 / share."""
    if share >= 1.0:
        return risk_sets
    keys = risk_sets["episode_key"].astype(str) + "|" + risk_sets["person_key"].astype(str)
    drawn = pd.util.hash_pandas_object(keys, index=False).to_numpy() < np.uint64(share * 2.0 ** 64)
    sample = risk_sets[risk_sets["is_referred"].to_numpy() | drawn].copy()
    sample["sampling_weight"] = np.where(sample["is_referred"], sample["sampling_weight"],
                                         sample["sampling_weight"] / share)
    return sample


def _prepared(frame: pd.DataFrame) -> pd.DataFrame:
    frame["index_date"] = pd.to_datetime(frame["index_date"])
    frame["later_referral_date"] = pd.to_datetime(frame["later_referral_date"])
    frame["previous_referral_date"] = pd.to_datetime(frame["previous_referral_date"])
    return frame


def model(dbt, session):
    """dbt entry point: every specification's matches in one table.

    Risk sets of up to `matching_fit_rows` rows in all are read at once. Larger ones are read an area
    at a time, twice: first for a weighted draw of about `matching_fit_rows` rows that the models are
    fitted on, then to match each area's referrals against their whole risk sets, so memory follows
    the largest area, not the ICS."""
    dbt.config(materialized="table")
    ratio = int(dbt.config.get("matching_ratio"))
    quarters = int(dbt.config.get("matching_lookback_quarters"))
    caliper_sd = float(dbt.config.get("matching_caliper_sd"))
    fit_rows = int(dbt.config.get("matching_fit_rows"))
    relation = dbt.ref("int_matching_risk_sets")
    sizes = group_sizes(relation, "matching_area_code")
    share = min(1.0, fit_rows / max(sum(sizes.values()), 1))
    if share >= 1.0:
        whole = _prepared(as_pandas(relation))
        fitted_on, batches = whole, [whole]
    else:
        fitted_on = rows_kept(relation, "matching_area_code", lambda frame: fit_sample(_prepared(frame), share),
                              fit_rows, sizes)
        batches = (_prepared(rows_where(relation, "matching_area_code", area)) for area in sorted(sizes))
    # specifications sharing a model (the same history and risk sets) differ only in how many they keep
    fits = [
        (quarters, True, {"primary": ratio, "ratio_1": 1, "ratio_10": 10}),
        (min(4, quarters), True, {"lookback_4q": ratio}),
        (quarters, False, {"washout_365": ratio}),
    ]
    scores = [(fit_score(fitted_on, quarters=q, caliper_sd=caliper_sd, new_users_only=n), ratios)
              for q, n, ratios in fits]
    del fitted_on
    frames = [frame for batch in batches for score, ratios in scores for frame in nearest(batch, score, ratios)]
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
