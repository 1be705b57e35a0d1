"""Large risk sets are matched a matching area at a time, on a model fitted to a weighted draw.

`int_comparators_matched.model` is the dbt Python model; here it is handed a real DuckDB relation of
risk sets (as dbt-duckdb hands it `dbt.ref('int_matching_risk_sets')`), small enough to check by
hand. Above `matching_fit_rows` rows it must give the matches that fitting on the same weighted draw
and matching the whole table at once would give, each referral against every member of its own risk
set: reading an area at a time bounds memory and must change nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "intermediate"))

from int_comparators_matched import fit_sample, fit_score, model, nearest  # noqa: E402
from sprx.estimation import rows_kept  # noqa: E402

QUARTERS = 8


def _risk_sets(areas: int = 3, referrals: int = 5, candidates: int = 40) -> pd.DataFrame:
    """Risk sets in which the referred people consulted more and were older than most candidates."""
    generator = np.random.default_rng(11)
    rows = []
    for area in range(areas):
        for referral in range(referrals):
            episode = f"E{area}{referral}"
            for member in range(candidates + 1):
                referred = member == 0
                person = f"R{area}{referral}" if referred else f"P{area}-{(member * 7 + referral) % 90}"
                level = 3.0 if referred else generator.gamma(1.5, 1.2)
                row = {"episode_key": episode, "person_key": person, "is_referred": referred,
                       "index_date": pd.Timestamp("2025-01-06") + pd.Timedelta(days=30 * referral),
                       "matching_area_code": f"A{area}", "sampling_weight": 1.0 if referred else 2.0,
                       "later_referral_date": pd.NaT, "previous_referral_date": pd.NaT,
                       "age_at_index": float(generator.integers(20, 90)), "is_female": bool(area % 2),
                       "imd_quintile": int(generator.integers(1, 6))}
                row |= {f"gp_quarter_{q}": int(generator.poisson(level)) for q in range(1, QUARTERS + 1)}
                row |= {f"calls_999_quarter_{q}": int(generator.poisson(0.1 * level)) for q in range(1, QUARTERS + 1)}
                rows.append(row)
    return pd.DataFrame(rows)


class _Config(dict):
    """dbt's `dbt.config`: called to set the materialisation, read with .get()."""

    def __call__(self, **settings) -> None:
        pass


class _Dbt:
    """The `dbt` object dbt-duckdb passes a Python model: ref() gives a DuckDB relation."""

    def __init__(self, relation, fit_rows: int) -> None:
        self.relation = relation
        self.config = _Config(matching_ratio=5, matching_lookback_quarters=QUARTERS, matching_caliper_sd=0.5,
                              matching_fit_rows=fit_rows)

    def ref(self, name: str):
        assert name == "int_matching_risk_sets"
        return self.relation


@pytest.fixture(scope="module")
def risk_sets() -> pd.DataFrame:
    return _risk_sets()


def _run_model(risk_sets: pd.DataFrame, fit_rows: int) -> pd.DataFrame:
    with duckdb.connect() as connection:
        connection.register("frame", risk_sets)
        connection.execute("create table int_matching_risk_sets as select * from frame")
        return model(_Dbt(connection.table("int_matching_risk_sets"), fit_rows), connection).to_pandas()


def _pairs(frame: pd.DataFrame, specification: str) -> set[tuple[str, str]]:
    rows = frame[frame["specification"] == specification]
    return set(zip(rows["episode_key"], rows["person_key"]))


def test_fit_sample_keeps_every_referred_person_and_weights_candidates_up(risk_sets):
    sample = fit_sample(risk_sets, 0.25)
    assert sample["is_referred"].sum() == risk_sets["is_referred"].sum()
    drawn = sample[~sample["is_referred"]]
    assert 0.15 < len(drawn) / (~risk_sets["is_referred"]).sum() < 0.35
    assert (drawn["sampling_weight"] == 2.0 / 0.25).all(), "a candidate drawn 1 in 4 stands for 4 times as many"
    assert (sample[sample["is_referred"]]["sampling_weight"] == 1.0).all()
    pd.testing.assert_frame_equal(sample, fit_sample(risk_sets, 0.25))  # the same draw every build
    assert fit_sample(risk_sets, 1.0) is risk_sets


def test_matching_an_area_at_a_time_gives_the_whole_table_s_matches(risk_sets):
    fit_rows = len(risk_sets) // 2
    by_area = _run_model(risk_sets, fit_rows)
    score = fit_score(fit_sample(risk_sets, fit_rows / len(risk_sets)), quarters=QUARTERS, caliper_sd=0.5,
                      new_users_only=True)
    [primary, ratio_1, ratio_10] = nearest(risk_sets, score, {"primary": 5, "ratio_1": 1, "ratio_10": 10})
    assert len(primary) > 0
    assert _pairs(by_area, "primary") == set(zip(primary["episode_key"], primary["person_key"]))
    assert _pairs(by_area, "ratio_1") == set(zip(ratio_1["episode_key"], ratio_1["person_key"]))
    assert _pairs(by_area, "ratio_10") == set(zip(ratio_10["episode_key"], ratio_10["person_key"]))
    # every comparator comes from its referral's own risk set (its own area)
    area = risk_sets.drop_duplicates("episode_key").set_index("episode_key")["matching_area_code"]
    members = set(zip(risk_sets["episode_key"], risk_sets["person_key"]))
    assert set(zip(by_area["episode_key"], by_area["person_key"])) <= members
    assert all(person.startswith("P" + area[episode][1:] + "-")
               for episode, person in zip(by_area["episode_key"], by_area["person_key"]))


def test_small_risk_sets_are_fitted_and_matched_whole(risk_sets):
    whole = _run_model(risk_sets, len(risk_sets))
    score = fit_score(risk_sets, quarters=QUARTERS, caliper_sd=0.5, new_users_only=True)
    [primary] = nearest(risk_sets, score, {"primary": 5})
    assert _pairs(whole, "primary") == set(zip(primary["episode_key"], primary["person_key"]))
    assert set(whole["specification"]) == {"primary", "lookback_4q", "ratio_1", "ratio_10", "washout_365"}


def test_rows_kept_reads_an_area_at_a_time_and_keeps_the_same_rows(risk_sets):
    def referred(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.loc[frame["is_referred"].astype(bool), ["episode_key", "gp_quarter_1"]]

    with duckdb.connect() as connection:
        connection.register("frame", risk_sets)
        relation = connection.sql("select * from frame")
        whole = rows_kept(relation, "matching_area_code", referred, len(risk_sets))
        parts = rows_kept(relation, "matching_area_code", referred, 10)
    expected = referred(risk_sets).sort_values("episode_key").reset_index(drop=True)
    for kept in (whole, parts):
        pd.testing.assert_frame_equal(kept.sort_values("episode_key").reset_index(drop=True), expected,
                                      check_dtype=False)
