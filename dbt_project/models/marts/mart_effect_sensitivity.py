"""Sensitivity of the effect to the matching choices, and to unmeasured confounding (dbt Python model).

One row per matching specification (int_comparators_matched: `primary`, `lookback_4q` matching on
4 quarters of history instead of 8, `ratio_1` and `ratio_10` comparators per referral instead of 5,
`washout_365` people referred more than a year before kept in, instead of new users only) x outcome x window, from
int_referral_contrasts: the matched difference in differences over the specification's matched
referrals (those in the target population of fct_referral_outcomes), its cluster-robust standard
error and 95% interval (as mart_outcomes_by_deprivation), and its change from the primary estimate.

The E-value (VanderWeele and Ding, 2017) says how strongly an unmeasured confounder would have to
be associated with both referral and the outcome (as a rate ratio, over and above the matched
history) to explain the estimate away: the estimate is turned into a rate ratio,
(referred mean after) / (referred mean after - estimate), the referred people's events after
against what they would have had without the effect. e_value_ci does the same for the interval's
limit nearest to no effect (1 when the interval holds zero).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sprx.estimation import as_pandas, model_result, clustered_mean, e_value, t_quantile


def model(dbt, session):
    """dbt entry point."""
    dbt.config(materialized="table")
    contrasts = as_pandas(dbt.ref("int_referral_contrasts"))
    facts = as_pandas(dbt.ref("fct_referral_outcomes"))
    target = facts[facts["is_in_target_population"]][["episode_key", "outcome", "window_days", "cluster_code"]]
    frame = contrasts.merge(target, on=["episode_key", "outcome", "window_days"])
    rows = []
    for (specification, outcome, window), group in frame.groupby(["specification", "outcome", "window_days"]):
        did = group["difference_in_differences"].to_numpy(dtype=float)
        estimate, error, groups = clustered_mean(did, group["cluster_code"].to_numpy())
        t = t_quantile(0.975, groups - 1) if groups >= 2 else float("nan")
        lower, upper = estimate - t * error, estimate + t * error
        after = float(group["events_after"].mean())

        def ratio(effect: float) -> float:
            counterfactual = after - effect
            return after / counterfactual if counterfactual > 0 and after > 0 else float("nan")

        nearest = 0.0 if (lower <= 0 <= upper or not math.isfinite(error)) else (upper if estimate < 0 else lower)
        rows.append({
            "specification": specification, "outcome": outcome, "window_days": int(window),
            "matched_referral_count": int(len(group)), "cluster_count": int(groups),
            "matched_difference_in_differences": estimate, "matched_standard_error": error,
            "matched_ci_lower": lower, "matched_ci_upper": upper,
            "referred_mean_events_after": after,
            "e_value": e_value(ratio(estimate)), "e_value_ci": 1.0 if nearest == 0 else e_value(ratio(nearest)),
        })
    columns = ["sensitivity_key", "specification", "outcome", "window_days", "matched_referral_count", "cluster_count",
               "matched_difference_in_differences", "matched_standard_error", "matched_ci_lower", "matched_ci_upper",
               "change_from_primary", "referred_mean_events_after", "e_value", "e_value_ci"]
    result = pd.DataFrame(rows, columns=[c for c in columns if c not in ("sensitivity_key", "change_from_primary")])
    primary = result[result["specification"] == "primary"].set_index(["outcome", "window_days"])[
        "matched_difference_in_differences"]
    result["change_from_primary"] = [
        row.matched_difference_in_differences - primary.get((row.outcome, row.window_days), np.nan)
        for row in result.itertuples()]
    result["sensitivity_key"] = (result["specification"] + "|" + result["outcome"] + "|"
                                 + result["window_days"].astype(str))
    for column in ("window_days", "matched_referral_count", "cluster_count"):
        result[column] = result[column].astype("int64")
    for column in ("matched_difference_in_differences", "matched_standard_error", "matched_ci_lower",
                   "matched_ci_upper", "change_from_primary", "referred_mean_events_after", "e_value", "e_value_ci"):
        result[column] = result[column].astype(float)
    for column in ("sensitivity_key", "specification", "outcome"):
        result[column] = result[column].astype(str)
    return model_result(result[columns], session)
