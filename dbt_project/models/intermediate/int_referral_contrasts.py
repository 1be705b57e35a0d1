"""Per-referral contrasts with bias-corrected matching (a dbt Python model; docs/methods.md).

One row per matching specification x matched referral x outcome x window. The referred person's
change (events after - events before) beside their comparators' weighted change and the
difference in differences. Only referrals whose own follow-up is complete
(int_referral_outcomes_counted), with at least one comparator followed a day or more.

A comparator's change is their events after less their events before. In the primary analysis
(and every matching specification) a comparator referred later in the window stays in the
comparison ("not referred now"; the target trial's usual care may include a later referral). The
variant `<specification>_censored` (computed for `primary`) censors such a comparator at their
own later referral instead: their events after become a rate over the days followed, scaled to
the window, and each comparator weighs the share of the window they were followed. Each
referral's comparators weigh 1 together (the matching weight, 1 / their number).

Bias correction (Abadie and Imbens, 2011): matching within a caliper leaves small differences in
the matched history between a referral and its comparators, and with strong regression to the
mean those small differences matter. A weighted least-squares regression, over every matched
comparator of the specification, of their change on the matched covariates (log(1 + attended GP
consultations) in each of the 8 quarters before the index date, log(1 + 999 calls) in the last
year and the year before, age, age squared, female, IMD quintile: the propensity score's scale)
predicts how much of a comparator's change is
due to where they started; each comparator's change is moved by the prediction's difference
between the referral's covariates and theirs. `difference_in_differences` is the corrected
contrast, `unadjusted_difference_in_differences` the plain one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sprx.estimation import as_pandas, model_result, rows_kept

KEYS = ["specification", "episode_key", "outcome", "window_days"]


def covariates(frame: pd.DataFrame, quarters: int) -> np.ndarray:
    """The regression's covariates (intercept first), counts on the log scale as in the propensity score,
    so that a referral far from its comparators is not extrapolated to on a straight line."""
    columns = [np.ones(len(frame))]
    columns += [np.log1p(frame[f"gp_quarter_{q}"].to_numpy(dtype=float)) for q in range(1, quarters + 1)]
    columns.append(np.log1p(sum(frame[f"calls_999_quarter_{q}"].to_numpy(dtype=float) for q in range(1, 5))))
    columns.append(np.log1p(sum(frame[f"calls_999_quarter_{q}"].to_numpy(dtype=float) for q in range(5, quarters + 1)))
                   if quarters > 4 else np.zeros(len(frame)))
    age = frame["age_at_index"].to_numpy(dtype=float) / 10.0
    columns += [age, age ** 2, frame["is_female"].to_numpy(dtype=float)]
    quintile = frame["imd_quintile"].fillna(0).to_numpy(dtype=float)
    columns += [(quintile == level).astype(float) for level in (0, 1, 2, 4, 5)]
    return np.column_stack(columns)


def contrasts(referred: pd.DataFrame, matched: pd.DataFrame, quarters: int) -> pd.DataFrame:
    """One specification x outcome x window: the corrected and plain contrasts per referral."""
    x_comparators = covariates(matched, quarters)
    weights = matched["analysis_weight"].to_numpy(dtype=float)
    change = matched["comparator_change"].to_numpy(dtype=float)
    root = np.sqrt(weights)[:, None]
    beta, *_ = np.linalg.lstsq(x_comparators * root, change * root[:, 0], rcond=None)
    predicted_comparator = x_comparators @ beta
    referral_x = referred.set_index("episode_key")
    predicted_referral = pd.Series(covariates(referral_x, quarters) @ beta, index=referral_x.index)
    matched = matched.assign(
        predicted=predicted_comparator,
        corrected_change=change + predicted_referral.reindex(matched["episode_key"]).to_numpy() - predicted_comparator,
        weighted_before=weights * matched["events_before"].to_numpy(dtype=float),
        weighted_after=matched["comparator_weight"].to_numpy(dtype=float) * matched["events_after"].to_numpy(dtype=float),
        weighted_days=matched["comparator_weight"].to_numpy(dtype=float) * matched["follow_up_days"].to_numpy(dtype=float),
        plain_weight=matched["comparator_weight"].to_numpy(dtype=float),
        weighted_corrected=weights * (change + predicted_referral.reindex(matched["episode_key"]).to_numpy()
                                      - predicted_comparator),
    )
    grouped = matched.groupby("episode_key")
    summary = pd.DataFrame({
        "comparator_count": grouped.size(),
        "censored_comparator_count": grouped["is_censored"].sum(),
        "comparator_mean_events_before": grouped["weighted_before"].sum() / grouped["analysis_weight"].sum(),
        "comparator_mean_events_after": matched["window_days"].iloc[0] * grouped["weighted_after"].sum()
        / grouped["weighted_days"].sum(),
        "corrected_comparator_change": grouped["weighted_corrected"].sum() / grouped["analysis_weight"].sum(),
    })
    out = referred.set_index("episode_key")[["events_before", "events_after", "events_change"]].join(summary, how="inner")
    out["comparator_mean_change"] = out["comparator_mean_events_after"] - out["comparator_mean_events_before"]
    out["unadjusted_difference_in_differences"] = out["events_change"] - out["comparator_mean_change"]
    out["difference_in_differences"] = out["events_change"] - out["corrected_comparator_change"]
    return out.reset_index()


def model(dbt, session):
    """dbt entry point."""
    dbt.config(materialized="table")
    quarters = int(dbt.config.get("matching_lookback_quarters"))
    counted = as_pandas(dbt.ref("int_referral_outcomes_counted"))
    comparators = as_pandas(dbt.ref("int_comparators_matched"))
    covariate_columns = ["episode_key", "person_key", "age_at_index", "is_female", "imd_quintile"] + [
        f"gp_quarter_{q}" for q in range(1, quarters + 1)] + [f"calls_999_quarter_{q}" for q in range(1, quarters + 1)]
    # the covariates of the referred people and their matched comparators only: large risk sets are read a
    # matching area at a time (about 10 M rows at 150,000 people, of which some 60,000 are kept)
    wanted = pd.MultiIndex.from_frame(comparators[["episode_key", "person_key"]].drop_duplicates())

    def covariates_wanted(frame: pd.DataFrame) -> pd.DataFrame:
        pairs = pd.MultiIndex.from_frame(frame[["episode_key", "person_key"]])
        return frame.loc[frame["is_referred"].to_numpy(dtype=bool) | pairs.isin(wanted), covariate_columns]

    risk_sets = rows_kept(dbt.ref("int_matching_risk_sets"), "matching_area_code", covariates_wanted,
                          int(dbt.config.get("matching_fit_rows")))
    referred = counted[(counted["subject_role"] == "referred") & counted["has_complete_follow_up"]]
    referred = referred.merge(risk_sets, on=["episode_key", "person_key"])
    compared = counted[counted["subject_role"] == "comparator"]
    matched = comparators[["specification", "episode_key", "person_key", "comparator_weight"]].merge(
        compared, on=["episode_key", "person_key"]).merge(risk_sets, on=["episode_key", "person_key"])
    censored = matched[matched["specification"] == "primary"].copy()
    censored["specification"] = "primary_censored"
    censored["events_after"] = censored["events_after_uncensored_days"]
    censored["comparator_change"] = censored["events_after_per_window"] - censored["events_before"]
    censored["analysis_weight"] = censored["comparator_weight"] * censored["follow_up_days"] / censored["window_days"]
    matched["follow_up_days"] = matched["window_days"]
    matched["comparator_change"] = matched["events_after"] - matched["events_before"]
    matched["analysis_weight"] = matched["comparator_weight"]
    matched = pd.concat([matched, censored], ignore_index=True)
    frames = []
    for (specification, outcome, window), group in matched.groupby(["specification", "outcome", "window_days"]):
        own = referred[(referred["outcome"] == outcome) & (referred["window_days"] == window)
                       & referred["episode_key"].isin(group["episode_key"])]
        group = group[group["episode_key"].isin(own["episode_key"])]
        if own.empty or group.empty:
            continue
        result = contrasts(own, group, quarters)
        result["specification"], result["outcome"], result["window_days"] = specification, outcome, int(window)
        frames.append(result)
    columns = ["referral_contrast_key", *KEYS, "events_before", "events_after", "events_change", "comparator_count",
               "censored_comparator_count", "comparator_mean_events_before", "comparator_mean_events_after",
               "comparator_mean_change", "unadjusted_difference_in_differences", "difference_in_differences"]
    if not frames:
        empty = {c: pd.Series(dtype="float64") for c in columns}
        for c in ("referral_contrast_key", "specification", "episode_key", "outcome"):
            empty[c] = pd.Series(dtype="object")
        for c in ("window_days", "events_before", "events_after", "events_change", "comparator_count",
                  "censored_comparator_count"):
            empty[c] = pd.Series(dtype="int64")
        return model_result(pd.DataFrame(empty)[columns].astype(
            {c: str for c in ("referral_contrast_key", "specification", "episode_key", "outcome")}), session)
    result = pd.concat(frames, ignore_index=True)
    result["referral_contrast_key"] = (result["specification"] + "|" + result["episode_key"] + "|" + result["outcome"]
                                       + "|" + result["window_days"].astype(str))
    for column in ("window_days", "events_before", "events_after", "events_change", "comparator_count",
                   "censored_comparator_count"):
        result[column] = result[column].astype("int64")
    return model_result(result[columns], session)
