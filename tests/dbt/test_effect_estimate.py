"""The effect marts on the committed sample: the target population is truth.json's, the naive change is
truth's, and every published effect figure hangs together (estimate inside its interval, the effect
among engaged people the ITT effect over the engaged share, balance and event study present).

truth.json's `true_effect` states the estimands (docs/methods.md): per outcome and window, the
referrals of the target population, the intention-to-treat change per referral and the effect among
those who engage. The committed sample is small (about 50-80 referrals per window), so its interval
is wide; the accuracy of the estimate is checked on a generated 20,000-person ICS by
tests/dbt/test_method.py (`make test-method`) and over many seeds by benchmarks/method_study.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from sprx.settings import SAMPLE_FEEDS_DIR
from tests.dbt.conftest import SampleBuild

pytestmark = pytest.mark.usefixtures("prefect_harness")

TRUTH = json.loads((SAMPLE_FEEDS_DIR / "truth.json").read_text(encoding="utf-8"))
OUTCOME_WINDOWS = [(outcome, window) for outcome in ("gp_consultations", "calls_999", "see_and_convey")
                   for window in (90, 180, 365)]


def query(warehouse: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def overall(warehouse: Path, outcome: str, window_days: int) -> dict:
    """The `all` row of mart_outcomes_by_deprivation for one outcome and window, by column."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        cursor = connection.execute(
            "select * from marts.mart_outcomes_by_deprivation where outcome = ? and window_days = ? "
            "and imd_quintile = 'all'", [outcome, window_days])
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    assert len(rows) == 1, f"expected one {outcome} x {window_days}-day row, got {len(rows)}"
    return dict(zip(names, rows[0]))


@pytest.mark.parametrize(("outcome", "window_days"), OUTCOME_WINDOWS)
def test_target_population_is_truths_estimand_population(sample_build: SampleBuild, outcome: str,
                                                         window_days: int) -> None:
    # eligible at the index date (two years of GP and 999 history observed) and followed for the
    # window: the warehouse finds the referrals truth.json's estimand is about (a faulty referral
    # code can move one referral's index date, hence a referral or two of slack)
    row = overall(sample_build.warehouse, outcome, window_days)
    expected = TRUTH["true_effect"][f"{outcome}_{window_days}d"]["referrals"]
    assert expected > 0
    assert abs(row["target_referral_count"] - expected) <= 2
    assert row["matched_referral_count"] <= row["target_referral_count"] <= row["complete_referral_count"]


@pytest.mark.parametrize("window_days", [90, 180, 365])
def test_naive_change_is_truths_before_after_on_the_same_referrals(sample_build: SampleBuild, window_days: int) -> None:
    row = overall(sample_build.warehouse, "gp_consultations", window_days)
    expected = TRUTH["naive_before_after"][f"gp_consultations_{window_days}d"]["mean_after_minus_before"]
    assert row["naive_mean_change"] == pytest.approx(expected, abs=0.25)


@pytest.mark.parametrize(("outcome", "window_days"), OUTCOME_WINDOWS)
def test_published_effect_figures_hang_together(sample_build: SampleBuild, outcome: str, window_days: int) -> None:
    row = overall(sample_build.warehouse, outcome, window_days)
    assert row["matched_referral_count"] >= 0.7 * row["target_referral_count"]
    assert row["matched_standard_error"] > 0
    assert row["matched_ci_lower"] < row["matched_difference_in_differences"] < row["matched_ci_upper"]
    # the instrumental-variable estimate is the ITT effect scaled up by the share who engaged
    assert 0 < row["engaged_share"] < 1
    assert row["effect_among_engaged"] == pytest.approx(row["matched_difference_in_differences"] / row["engaged_share"])
    assert row["effect_among_engaged_ci_lower"] < row["effect_among_engaged"] < row["effect_among_engaged_ci_upper"]
    assert 0 <= row["imd_heterogeneity_p_value"] <= 1


def test_matched_interval_covers_the_true_gp_effect_at_a_year(sample_build: SampleBuild) -> None:
    row = overall(sample_build.warehouse, "gp_consultations", 365)
    truth = TRUTH["true_effect"]["gp_consultations_365d"]["itt_change_per_referral"]
    assert row["matched_ci_lower"] <= truth <= row["matched_ci_upper"], row


def test_balance_event_study_and_sensitivity_are_built(sample_build: SampleBuild) -> None:
    warehouse = sample_build.warehouse
    balance = dict(query(warehouse, "select covariate, smd_before from marts.mart_covariate_balance "
                                    "where imd_quintile = 'all'"))
    assert len(balance) == 19 and balance["gp_quarter_1"] > 0.3  # referred people had far more recent use
    quarters = query(warehouse, "select outcome, list(relative_quarter order by relative_quarter) "
                                "from marts.mart_event_study group by outcome order by outcome")
    assert quarters == [(outcome, [-8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4])
                        for outcome in ("calls_999", "gp_consultations")]
    specifications = {row[0] for row in query(warehouse, "select distinct specification from marts.mart_effect_sensitivity")}
    assert specifications == {"primary", "lookback_4q", "ratio_1", "ratio_10", "washout_365", "primary_censored"}
    [(primary,)] = query(warehouse, """
        select matched_difference_in_differences from marts.mart_effect_sensitivity
        where specification = 'primary' and outcome = 'gp_consultations' and window_days = 365""")
    assert primary == pytest.approx(overall(warehouse, "gp_consultations", 365)["matched_difference_in_differences"])


def test_published_diagnostics_follow_the_disclosure_rules(sample_build: SampleBuild) -> None:
    warehouse = sample_build.warehouse
    for table, count in (("pub_covariate_balance", "referred_count"), ("pub_event_study", "referral_count"),
                         ("pub_effect_sensitivity", "matched_referral_count"),
                         ("pub_outcomes_by_deprivation", "matched_referral_count")):
        counts = [row[0] for row in query(warehouse, f"select {count} from published.{table}")]
        assert counts and all(value is None or value % 5 == 0 for value in counts), table
        assert not any(value is not None and 1 <= value <= 7 for value in counts), table
