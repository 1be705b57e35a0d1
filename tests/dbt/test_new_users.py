"""The primary analysis takes new users only: nobody referred before the index date is matched.

`int_comparators_matched.match` is the dbt Python model's matching step; it is run here on a small
risk set (no build), as int_matching_risk_sets would hand it over: a referred person and candidates
with the same history, one of whom was referred two years before the index date. The method oracle
(benchmarks/method_oracle.py) found that leaving such people in the risk sets made the 180-day GP
estimate overstate the fall by 31% of the truth (docs/methods.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "intermediate"))

from int_comparators_matched import match  # noqa: E402

QUARTERS = 8


def _member(episode: str, person: str, *, referred: bool, previous: str | None = None,
            gp: int = 2) -> dict:
    row = {"episode_key": episode, "person_key": person, "is_referred": referred,
           "index_date": pd.Timestamp("2025-06-01"), "later_referral_date": pd.NaT,
           "previous_referral_date": pd.Timestamp(previous) if previous else pd.NaT,
           "age_at_index": 50.0, "is_female": True, "imd_quintile": 3, "matching_area_code": "P1"}
    row |= {f"gp_quarter_{q}": gp for q in range(1, QUARTERS + 1)}
    row |= {f"calls_999_quarter_{q}": 0 for q in range(1, QUARTERS + 1)}
    return row


@pytest.fixture()
def risk_sets() -> pd.DataFrame:
    """Two referrals. A: its person's first; candidate C2 was referred in 2023, C1 and C3 never.
    B: its person was referred in 2023 already, so B is not a new user's referral."""
    rows = [
        _member("A", "R", referred=True, gp=3),
        _member("A", "C1", referred=False, gp=3),
        _member("A", "C2", referred=False, previous="2023-05-01", gp=3),
        _member("A", "C3", referred=False, gp=1),
        _member("B", "S", referred=True, previous="2023-03-01", gp=3),
        _member("B", "C1", referred=False, gp=3),
    ]
    frame = pd.DataFrame(rows)
    for column in ("index_date", "later_referral_date", "previous_referral_date"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def test_primary_matches_no_one_referred_before(risk_sets):
    matched = match(risk_sets, quarters=QUARTERS, ratio=5, caliper_sd=10.0, new_users_only=True,
                    specification="primary")
    assert set(matched["episode_key"]) == {"A"}, "a referral whose person was referred before is not a new user's"
    assert "C2" not in set(matched["person_key"]), "a person referred two years before is not a comparator"
    assert set(matched["person_key"]) == {"C1", "C3"}


def test_washout_365_keeps_people_referred_over_a_year_before(risk_sets):
    matched = match(risk_sets, quarters=QUARTERS, ratio=5, caliper_sd=10.0, new_users_only=False,
                    specification="washout_365")
    assert set(matched["episode_key"]) == {"A", "B"}
    assert "C2" in set(matched.loc[matched["episode_key"] == "A", "person_key"])
