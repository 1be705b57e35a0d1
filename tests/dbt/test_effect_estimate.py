"""The matched difference in differences recovers the sample's true effect; the naive change does not.

truth.json's `true_effect` is the expected change per referral caused by social prescribing, over
referrals with complete windows; `naive_before_after` is the plain after - before change, which
also holds regression to the mean (people are referred at a peak of need). The warehouse's
estimates are in marts.mart_outcomes_by_deprivation (see dbt_project/models/marts/_marts__outcomes.yml).
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

EFFECT_SQL = """
    select
        naive_mean_change,
        matched_referral_count,
        matched_difference_in_differences,
        matched_ci_lower,
        matched_ci_upper
    from marts.mart_outcomes_by_deprivation
    where outcome = ? and window_days = ? and is_all_quintiles
"""


def effect(warehouse: Path, outcome: str, window_days: int) -> tuple:
    """(naive change, matched referrals, DiD, CI lower, CI upper) for all quintiles together."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(EFFECT_SQL, [outcome, window_days]).fetchall()
    assert len(rows) == 1, f"expected one {outcome} x {window_days}-day row, got {len(rows)}"
    return rows[0]


# (window in days, whether the naive change must overstate the fall). At 180 days the sample's own
# naive change (-0.21 in truth.json) is smaller than the true effect (-0.55), so only the interval
# is asserted there; at 90 days the sample has too few matched referrals to say much.
WINDOWS = [
    (365, True),  # the acceptance test of the issue
    (180, False),  # the interval must cover the truth; the naive change need not overstate it
]


@pytest.mark.parametrize(("window_days", "naive_overstates"), WINDOWS)
def test_matched_estimate_covers_the_true_gp_effect(
    sample_build: SampleBuild, window_days: int, naive_overstates: bool
) -> None:
    truth = TRUTH["true_effect"][f"gp_consultations_{window_days}d"]["expected_change_per_referral"]
    naive, matched_referrals, estimate, lower, upper = effect(sample_build.warehouse, "gp_consultations", window_days)
    assert matched_referrals >= 10, f"only {matched_referrals} matched referrals at {window_days} days"
    assert lower <= truth <= upper, f"95% CI [{lower:.3f}, {upper:.3f}] (DiD {estimate:.3f}) misses {truth}"
    if naive_overstates:
        assert naive < truth, f"naive change {naive:.3f} does not overstate the fall ({truth})"


def test_naive_change_is_the_plain_before_after_of_truth(sample_build: SampleBuild) -> None:
    """The naive 365-day change is truth.json's naive before/after, to within a few referrals'
    difference in the completeness rule (the warehouse cannot see registration dates)."""
    naive, *_ = effect(sample_build.warehouse, "gp_consultations", 365)
    expected = TRUTH["naive_before_after"]["gp_consultations_365d"]["mean_after_minus_before"]
    assert naive == pytest.approx(expected, abs=0.5)
