"""The sample warehouse reproduces truth.json exactly: referrals, declined, engaged, sustained,
frequent callers, communal addresses and the registered population, overall and broken down.

truth.json is written by `sprx sample` from the simulated people, by the definitions the
intermediate models implement (see dbt_project/models/intermediate/_intermediate__models.yml);
every count leaves out the rows listed under its injected faults, as the ingest quarantines them.
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

# truth.json count -> the query that gives it on the built warehouse (table-driven).
COUNTS = [
    # episodes: a referral code opens one unless one opened in the previous 180 days
    ("referral_episodes", "select count(*) from intermediate.int_referral_episodes_opened"),
    ("referred_people", "select count(distinct person_key) from intermediate.int_referral_episodes_opened"),
    # a declined code from the episode start to the day before its 180-day window ends
    ("declined", "select count(*) from intermediate.int_referral_episodes_opened where is_declined"),
    # an attended VCSE session linked to the person within 180 days of the referral (tiers 1-3)
    ("engaged", "select count(*) from intermediate.int_referral_engagements_measured where is_engaged"),
    # 3+ sessions in the 90 days from the first attendance
    ("sustained", "select count(*) from intermediate.int_referral_engagements_measured where is_sustained"),
    # the national definition recomputed from traced calls, never the trust's flag
    ("frequent_callers", """
        select count(distinct person_key) from intermediate.int_frequent_caller_months_flagged
        where is_frequent_caller"""),
    ("frequent_callers_referred", """
        select count(distinct person_key) from intermediate.int_frequent_caller_months_flagged
        where is_frequent_caller
          and person_key in (select person_key from intermediate.int_referral_episodes_opened)"""),
    ("frequent_caller_communal_addresses", """
        select count(distinct postcode_token) from intermediate.int_communal_address_months_flagged
        where is_frequent_communal_address"""),
    # linkage keeps every record: traced calls link at tier 1, anonymous register rows stay unlinked
    ("ambulance_incidents_traced", """
        select count(*) from intermediate.int_feed_records_linked where feed = 'ambulance' and link_tier = 1"""),
    ("vcse_attendances", """
        select count(*) from intermediate.int_activity_events_unioned
        where event_type = 'vcse_session' and is_attended"""),
    ("vcse_did_not_attend_rows", """
        select count(*) from intermediate.int_activity_events_unioned
        where event_type = 'vcse_session' and is_did_not_attend"""),
    ("vcse_unlinkable_rows", """
        select count(*) from intermediate.int_feed_records_linked where feed = 'vcse' and not has_linkage_token"""),
]
# The population: people on a practice list now (GP records quarantined at ingest are not in it,
# and truth.json leaves them out too).
REGISTERED_AT_END = "select count(*) from intermediate.int_people_linked where is_registered"


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_the_build_passed(sample_build: SampleBuild) -> None:
    # every count below reads tables the build made; a failed build would explain a wrong count
    assert sample_build.summary.success, sample_build.summary.describe()


@pytest.mark.parametrize(("count", "sql"), COUNTS, ids=[count for count, _ in COUNTS])
def test_count_matches_truth(sample_build: SampleBuild, count: str, sql: str) -> None:
    assert query(sample_build.warehouse, sql)[0][0] == TRUTH["counts"][count]


def test_counts_are_not_trivially_equal() -> None:
    # the sample has something to find in every measure, so an empty model cannot pass
    for count in ("referral_episodes", "declined", "engaged", "sustained", "frequent_callers",
                  "frequent_caller_communal_addresses", "registered_at_end"):
        assert TRUTH["counts"][count] > 0, count


def test_registered_population_matches_truth(sample_build: SampleBuild) -> None:
    # overall, by practice and by deprivation quintile (the denominators of the funnel)
    found = {"all": query(sample_build.warehouse, REGISTERED_AT_END)[0][0]}
    found["by_practice"] = dict(query(sample_build.warehouse, """
        select practice_code, count(*) from intermediate.int_people_linked where is_registered
        group by practice_code"""))
    found["by_imd_quintile"] = {str(quintile): people for quintile, people in query(sample_build.warehouse, """
        select imd_quintile, count(*) from intermediate.int_people_linked where is_registered
        group by imd_quintile""")}
    assert found == {
        "all": TRUTH["counts"]["registered_at_end"],
        "by_practice": {code: values["registered_at_end"] for code, values in TRUTH["counts_by_practice"].items()},
        "by_imd_quintile": {quintile: values["registered_at_end"]
                            for quintile, values in TRUTH["counts_by_imd_quintile"].items()},
    }


def test_referral_funnel_by_practice_matches_truth(sample_build: SampleBuild) -> None:
    rows = query(sample_build.warehouse, """
        select
            episodes.practice_code,
            count(*),
            count(*) filter (where episodes.is_declined),
            count(*) filter (where engagements.is_engaged),
            count(*) filter (where engagements.is_sustained)
        from intermediate.int_referral_episodes_opened as episodes
        inner join intermediate.int_referral_engagements_measured as engagements using (episode_key)
        group by episodes.practice_code""")
    found = {code: {"referral_episodes": episodes, "declined": declined, "engaged": engaged, "sustained": sustained}
             for code, episodes, declined, engaged, sustained in rows}
    measures = ("referral_episodes", "declined", "engaged", "sustained")
    expected = {code: {measure: values[measure] for measure in measures}
                for code, values in TRUTH["counts_by_practice"].items() if values["referral_episodes"]}
    assert found == expected


def test_referrals_by_deprivation_quintile_match_truth(sample_build: SampleBuild) -> None:
    rows = query(sample_build.warehouse, """
        select episodes.imd_quintile, count(*), count(*) filter (where engagements.is_engaged)
        from intermediate.int_referral_episodes_opened as episodes
        inner join intermediate.int_referral_engagements_measured as engagements using (episode_key)
        group by episodes.imd_quintile""")
    found = {str(quintile): {"referral_episodes": episodes, "engaged": engaged} for quintile, episodes, engaged in rows}
    expected = {quintile: {"referral_episodes": values["referral_episodes"], "engaged": values["engaged"]}
                for quintile, values in TRUTH["counts_by_imd_quintile"].items() if values["referral_episodes"]}
    assert found == expected


def test_frequent_callers_by_month_match_truth(sample_build: SampleBuild) -> None:
    rows = query(sample_build.warehouse, """
        select strftime(call_month, '%Y-%m'), count(distinct person_key)
        from intermediate.int_frequent_caller_months_flagged
        where is_frequent_caller
        group by call_month""")
    assert dict(rows) == TRUTH["frequent_callers_by_month"]
