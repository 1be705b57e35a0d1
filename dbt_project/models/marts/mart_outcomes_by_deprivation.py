"""The effect of referral by outcome, window and IMD quintile (a dbt Python model; docs/methods.md).

One row per outcome x window x IMD quintile, plus one overall row per outcome x window
(imd_quintile `all`, is_all_quintiles true, which also holds referrals of unknown deprivation),
from fct_referral_outcomes:

- naive_mean_change: the mean of (after - before) over the target population (eligible referrals
  with complete follow-up), which holds regression to the mean.
- matched_difference_in_differences: the mean over matched referrals of (own change - the weighted
  change of their comparators): the intention-to-treat effect of a referral, in events per window.
- matched_standard_error: cluster-robust (clusters: the matching area, practice by default; every
  comparator of a referral is in the referral's cluster, so reuse of a comparator across referrals
  stays inside one cluster), with the small-sample factor G / (G - 1); the 95% interval uses
  Student's t with G - 1 degrees of freedom.
- effect_among_engaged: the instrumental-variable (Wald) estimate with referral as the instrument:
  the matched difference in differences divided by the share of matched referrals that engaged
  (nobody engages without a referral), with a cluster-robust delta-method interval.
- imd_heterogeneity_*: on the `all` rows, Cochran's Q test that the quintiles' effects are equal.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sprx.estimation import as_pandas, model_result, chi_square_upper_tail, clustered_mean, t_quantile, wald_ratio


def summarise(group: pd.DataFrame) -> dict:
    """The row of one outcome x window x quintile."""
    target = group[group["is_in_target_population"]]
    matched = group[group["is_in_matched_analysis"]]
    did = matched["matched_difference_in_differences"].to_numpy(dtype=float)
    clusters = matched["cluster_code"].to_numpy()
    engaged = matched["is_engaged"].to_numpy(dtype=float)
    estimate, error, groups = clustered_mean(did, clusters)
    t = t_quantile(0.975, groups - 1) if groups >= 2 else float("nan")
    iv, iv_error = wald_ratio(did, engaged, clusters)
    plain, plain_error, _ = clustered_mean(
        matched["matched_unadjusted_difference_in_differences"].to_numpy(dtype=float), clusters)
    return {
        "referral_count": len(group),
        "complete_referral_count": int(group["has_complete_follow_up"].sum()),
        "target_referral_count": len(target),
        "naive_mean_change": float(target["events_change"].mean()) if len(target) else float("nan"),
        "matched_referral_count": len(matched),
        "matched_comparator_count": int(matched["matched_comparator_count"].sum()),
        "matched_cluster_count": groups,
        "naive_mean_change_matched": float(matched["events_change"].mean()) if len(matched) else float("nan"),
        "matched_difference_in_differences": estimate,
        "matched_standard_error": error,
        "matched_ci_lower": estimate - t * error,
        "matched_ci_upper": estimate + t * error,
        "matched_unadjusted_difference_in_differences": plain,
        "matched_unadjusted_standard_error": plain_error,
        "engaged_share": float(engaged.mean()) if engaged.size else float("nan"),
        "effect_among_engaged": iv,
        "effect_among_engaged_standard_error": iv_error,
        "effect_among_engaged_ci_lower": iv - t * iv_error,
        "effect_among_engaged_ci_upper": iv + t * iv_error,
    }


def model(dbt, session):
    """dbt entry point."""
    dbt.config(materialized="table")
    facts = as_pandas(dbt.ref("fct_referral_outcomes"))
    rows = []
    for (outcome, window), frame in facts.groupby(["outcome", "window_days"], sort=True):
        quintile_rows = []
        for quintile, group in frame[frame["imd_quintile"].notna()].groupby("imd_quintile", sort=True):
            row = {"outcome": outcome, "window_days": int(window), "imd_quintile": str(int(quintile)),
                   **summarise(group)}
            quintile_rows.append(row)
        overall = {"outcome": outcome, "window_days": int(window), "imd_quintile": "all", **summarise(frame)}
        usable = [r for r in quintile_rows
                  if r["matched_standard_error"] and math.isfinite(r["matched_standard_error"])
                  and r["matched_standard_error"] > 0]
        if len(usable) >= 2:
            weights = np.array([1 / r["matched_standard_error"] ** 2 for r in usable])
            effects = np.array([r["matched_difference_in_differences"] for r in usable])
            pooled = float((weights * effects).sum() / weights.sum())
            q = float((weights * (effects - pooled) ** 2).sum())
            overall["imd_heterogeneity_chi_square"] = q
            overall["imd_heterogeneity_degrees_of_freedom"] = len(usable) - 1
            overall["imd_heterogeneity_p_value"] = chi_square_upper_tail(q, len(usable) - 1)
        rows += quintile_rows + [overall]
    columns = [
        "outcome_deprivation_key", "outcome", "window_days", "imd_quintile", "is_all_quintiles",
        "referral_count", "complete_referral_count", "target_referral_count", "naive_mean_change",
        "matched_referral_count", "matched_comparator_count", "matched_cluster_count", "naive_mean_change_matched",
        "matched_difference_in_differences", "matched_standard_error", "matched_ci_lower", "matched_ci_upper",
        "matched_unadjusted_difference_in_differences", "matched_unadjusted_standard_error", "engaged_share", "effect_among_engaged", "effect_among_engaged_standard_error",
        "effect_among_engaged_ci_lower", "effect_among_engaged_ci_upper",
        "imd_heterogeneity_chi_square", "imd_heterogeneity_degrees_of_freedom", "imd_heterogeneity_p_value",
    ]
    result = pd.DataFrame(rows, columns=[c for c in columns if c not in ("outcome_deprivation_key", "is_all_quintiles")])
    result["outcome_deprivation_key"] = (
        result["outcome"] + "|" + result["window_days"].astype(str) + "|" + result["imd_quintile"])
    result["is_all_quintiles"] = result["imd_quintile"] == "all"
    for column in ("referral_count", "complete_referral_count", "target_referral_count", "matched_referral_count",
                   "matched_comparator_count", "matched_cluster_count", "window_days"):
        result[column] = result[column].astype("int64")
    result["imd_heterogeneity_degrees_of_freedom"] = result["imd_heterogeneity_degrees_of_freedom"].astype("Int64")
    float_columns = [c for c in columns if c not in (
        "outcome_deprivation_key", "outcome", "imd_quintile", "is_all_quintiles", "referral_count",
        "complete_referral_count", "target_referral_count", "matched_referral_count", "matched_comparator_count",
        "matched_cluster_count", "window_days", "imd_heterogeneity_degrees_of_freedom")]
    for column in float_columns:
        result[column] = result[column].astype(float).replace([np.inf, -np.inf], np.nan)
    return model_result(result[columns], session)
