"""Event study of the matched comparison (a dbt Python model; docs/methods.md).

One row per outcome (gp_consultations, calls_999) x relative quarter (-8..-1 before the index date,
1..4 after it; quarters of 91 days) from int_event_study_counts: the mean over the primary matched
referrals of (the referred person's events in the quarter - their comparators' weighted events in
it, a comparator's after-quarter count being a rate over the days they were followed, x 91), with a
cluster-robust 95% interval (clusters: the matching area; Student's t with G - 1 degrees of
freedom). Before the index date the differences should be near zero (the matching balanced them);
the pre-trend test is the Wald test, with the cluster-robust covariance, that all eight
pre-quarter differences are zero (chi-square with 8 degrees of freedom), repeated on every row of
the outcome.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sprx.estimation import as_pandas, model_result, chi_square_upper_tail, clustered_covariance, t_quantile

QUARTER_DAYS = 91


def differences(counts: pd.DataFrame) -> pd.DataFrame:
    """Referrals x relative quarters: referred events - comparators' weighted events."""
    referred = counts[counts["subject_role"] == "referred"].set_index(["episode_key", "relative_quarter"])["events"]
    comparators = counts[counts["subject_role"] == "comparator"].assign(
        weighted_events=lambda f: f["subject_weight"] * f["events"],
        weighted_days=lambda f: f["subject_weight"] * f["followed_days"])
    summed = comparators.groupby(["episode_key", "relative_quarter"])[["weighted_events", "weighted_days"]].sum()
    rate = QUARTER_DAYS * summed["weighted_events"] / summed["weighted_days"].replace(0, np.nan)
    table = (referred.astype(float) - rate).unstack("relative_quarter")
    return table.dropna()


def model(dbt, session):
    """dbt entry point."""
    dbt.config(materialized="table")
    counts = as_pandas(dbt.ref("int_event_study_counts"))
    rows = []
    for outcome in ("gp_consultations", "calls_999"):
        subset = counts[counts["outcome"] == outcome]
        if subset.empty:
            continue
        table = differences(subset)
        if table.empty:
            continue
        clusters = subset.drop_duplicates("episode_key").set_index("episode_key").loc[table.index, "cluster_code"]
        means, covariance, groups = clustered_covariance(table.to_numpy(), clusters.to_numpy())
        quarters = list(table.columns)
        pre = [i for i, q in enumerate(quarters) if q < 0]
        chi_square = p_value = float("nan")
        if groups >= 2 and pre:
            sub = covariance[np.ix_(pre, pre)]
            chi_square = float(means[pre] @ np.linalg.pinv(sub) @ means[pre])
            p_value = chi_square_upper_tail(chi_square, len(pre))
        t = t_quantile(0.975, groups - 1) if groups >= 2 else float("nan")
        for i, quarter in enumerate(quarters):
            error = math.sqrt(covariance[i, i]) if groups >= 2 else float("nan")
            rows.append({
                "event_study_key": f"{outcome}|{int(quarter)}", "outcome": outcome, "relative_quarter": int(quarter),
                "is_before_index": quarter < 0, "referral_count": int(len(table)), "cluster_count": int(groups),
                "estimate": float(means[i]), "standard_error": error,
                "ci_lower": float(means[i]) - t * error, "ci_upper": float(means[i]) + t * error,
                "pre_trend_chi_square": chi_square, "pre_trend_degrees_of_freedom": len(pre),
                "pre_trend_p_value": p_value,
            })
    columns = ["event_study_key", "outcome", "relative_quarter", "is_before_index", "referral_count", "cluster_count",
               "estimate", "standard_error", "ci_lower", "ci_upper", "pre_trend_chi_square",
               "pre_trend_degrees_of_freedom", "pre_trend_p_value"]
    result = pd.DataFrame(rows, columns=columns)
    for column in ("relative_quarter", "referral_count", "cluster_count", "pre_trend_degrees_of_freedom"):
        result[column] = result[column].astype("int64")
    result["is_before_index"] = result["is_before_index"].astype(bool)
    for column in ("estimate", "standard_error", "ci_lower", "ci_upper", "pre_trend_chi_square", "pre_trend_p_value"):
        result[column] = result[column].astype(float)
    result["outcome"] = result["outcome"].astype(str)
    result["event_study_key"] = result["event_study_key"].astype(str)
    return model_result(result, session)
