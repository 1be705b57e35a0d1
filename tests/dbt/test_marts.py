"""The marts answer the design's questions from the same episodes as the intermediate models, and
the published schema holds only disclosure-controlled counts (0, redacted, or a multiple of 5 over 7)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from sprx.settings import SAMPLE_FEEDS_DIR
from tests.dbt.conftest import SampleBuild

pytestmark = pytest.mark.usefixtures("prefect_harness")

TRUTH = json.loads((SAMPLE_FEEDS_DIR / "truth.json").read_text(encoding="utf-8"))

# truth.json count -> (funnel column, fct_referrals filter): each measure three ways (table-driven).
FUNNEL_MEASURES = [
    ("referral_episodes", "referral_episodes", "true"),
    ("declined", "declined_episodes", "is_declined"),
    ("engaged", "engaged_episodes", "is_engaged"),
    ("sustained", "sustained_episodes", "is_sustained"),
]
# Column-name fragments that would mean a token or a person identifier reached the published schema.
FORBIDDEN_FRAGMENTS = ("token", "person_key", "patient_key", "attendee_key", "episode_key", "nhs_number",
                       "postcode", "file_path", "sha256", "rejected_value")
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "UINTEGER"}


def query(warehouse: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql, parameters or []).fetchall()


def published_columns(warehouse: Path) -> list[tuple[str, str, str]]:
    """(table, column, type) of every column in the published schema."""
    return query(warehouse, """
        select table_name, column_name, data_type from information_schema.columns
        where table_schema = 'published' order by table_name, ordinal_position""")


@pytest.mark.parametrize(("truth_count", "funnel_column", "fact_filter"), FUNNEL_MEASURES,
                         ids=[measure for measure, _, _ in FUNNEL_MEASURES])
def test_funnel_totals_equal_fct_referrals_and_truth(sample_build: SampleBuild, truth_count: str,
                                                     funnel_column: str, fact_filter: str) -> None:
    # the funnel is fct_referrals grouped by practice and month: no episode lost or counted twice,
    # and both reproduce the simulated truth (injected faults excluded by the ingest)
    funnel = query(sample_build.warehouse, f"select sum({funnel_column}) from marts.mart_referral_funnel_monthly")[0][0]
    fact = query(sample_build.warehouse, f"select count(*) from marts.fct_referrals where {fact_filter}")[0][0]
    assert funnel == fact == TRUTH["counts"][truth_count]


def test_funnel_registered_is_the_population(sample_build: SampleBuild) -> None:
    # each practice's list appears once per month; one month's rows sum to the registered population
    rows = query(sample_build.warehouse, """
        select referral_month, sum(registered_people) from marts.mart_referral_funnel_monthly group by all""")
    assert rows and {registered for _, registered in rows} == {TRUTH["counts"]["registered_at_end"]}


def test_frequent_callers_by_month_match_truth(sample_build: SampleBuild) -> None:
    rows = query(sample_build.warehouse, """
        select strftime(call_month, '%Y-%m'), frequent_callers from marts.mart_frequent_callers_monthly
        where frequent_callers > 0""")
    assert dict(rows) == TRUTH["frequent_callers_by_month"]


def test_vcse_activity_matches_truth(sample_build: SampleBuild) -> None:
    # every register row is activity, linked or not: attendances and did-not-attend rows as simulated
    attended, did_not_attend = query(sample_build.warehouse, """
        select sum(attendances), sum(did_not_attend_rows) from marts.mart_vcse_activity_monthly""")[0]
    assert (attended, did_not_attend) == (TRUTH["counts"]["vcse_attendances"], TRUTH["counts"]["vcse_did_not_attend_rows"])


def test_data_quality_accounts_for_every_row(sample_build: SampleBuild) -> None:
    # per file, received = loaded + rejected, and the reasons mart covers every file with rejections
    unbalanced = query(sample_build.warehouse, """
        select file_id from marts.mart_data_quality where rows_received != rows_loaded + rows_rejected""")
    assert not unbalanced
    missing = query(sample_build.warehouse, """
        select file_id from marts.mart_data_quality where rows_rejected > 0
        except select file_id from marts.mart_data_quality_reasons""")
    assert not missing


def test_every_published_table_is_built(sample_build: SampleBuild) -> None:
    tables = {table for table, _, _ in published_columns(sample_build.warehouse)}
    assert {"pub_referral_funnel", "pub_referral_funnel_by_group", "pub_frequent_callers_monthly", "pub_vcse_activity",
            "pub_data_quality", "pub_data_quality_reasons", "pub_data_quality_coding",
            "pub_outcomes_by_deprivation", "pub_covariate_balance", "pub_event_study",
            "pub_effect_sensitivity", "pub_practices", "pub_feed_freshness", "data_coverage"} <= tables


def test_published_outcomes_are_the_marts_statistics_or_redacted(sample_build: SampleBuild) -> None:
    # each mean, difference and confidence limit is the unrounded mart's value, or null exactly when
    # the referrals it averages over are 7 or fewer; the quintile rows and the overall rows are all there
    rows = query(sample_build.warehouse, """
        select
            count(*),
            count(*) filter (where published.matched_ci_lower is distinct from case
                when mart.matched_referral_count > 7 then mart.matched_ci_lower end),
            count(*) filter (where published.naive_mean_change is distinct from case
                when mart.target_referral_count > 7 then mart.naive_mean_change end),
            count(*) filter (where published.is_all_quintiles and published.matched_difference_in_differences is not null)
        from published.pub_outcomes_by_deprivation as published
        inner join marts.mart_outcomes_by_deprivation as mart using (outcome_deprivation_key)""")
    total, ci_mismatches, naive_mismatches, overall_estimates = rows[0]
    assert total == query(sample_build.warehouse, "select count(*) from marts.mart_outcomes_by_deprivation")[0][0] > 3
    assert (ci_mismatches, naive_mismatches) == (0, 0)
    assert overall_estimates >= 1  # the sample's overall estimates are published, not all redacted


def not_redacted_columns(warehouse: Path) -> set[tuple[str, str]]:
    """Published integer columns described (persisted comment) as organisational counts or not counts."""
    return set(query(warehouse, """
        select table_name, column_name from duckdb_columns() where schema_name = 'published'
        and (starts_with(comment, 'Organisational count (not redacted)') or starts_with(comment, 'Not a count'))"""))


def test_published_counts_are_zero_redacted_or_rounded(sample_build: SampleBuild) -> None:
    # every integer column of every published table, except those described as organisational counts or
    # not counts: no value from 1 to 7, only multiples of 5
    exempt = not_redacted_columns(sample_build.warehouse)
    assert ("pub_data_quality", "rows_received") in exempt and ("pub_data_quality", "file_id") in exempt
    count_columns = [(table, column) for table, column, data_type in published_columns(sample_build.warehouse)
                     if data_type in INTEGER_TYPES and (table, column) not in exempt]
    assert len(count_columns) > 20
    breaches = {}
    for table, column in count_columns:
        values = query(sample_build.warehouse, f"""
            select distinct "{column}" from published."{table}"
            where "{column}" between 1 and 7 or "{column}" % 5 != 0""")
        if values:
            breaches[f"{table}.{column}"] = sorted(value for (value,) in values)
    assert not breaches, breaches


def test_published_counts_are_not_all_redacted(sample_build: SampleBuild) -> None:
    # suppression leaves something to read: large counts survive, rounded
    rows = query(sample_build.warehouse, "select traced_calls from published.pub_frequent_callers_monthly")
    assert any(value and value >= 10 for (value,) in rows)


def test_no_token_or_person_column_is_published(sample_build: SampleBuild) -> None:
    leaked = [f"{table}.{column}" for table, column, _ in published_columns(sample_build.warehouse)
              if any(fragment in column.lower() for fragment in FORBIDDEN_FRAGMENTS)]
    assert not leaked, leaked


def test_no_published_value_looks_like_a_token(sample_build: SampleBuild) -> None:
    # a keyed pseudonym is 64 hex characters; none may appear in any published text column
    for table, column, data_type in published_columns(sample_build.warehouse):
        if data_type == "VARCHAR":
            found = query(sample_build.warehouse, f"""
                select count(*) from published."{table}" where regexp_matches("{column}", '[0-9a-f]{{64}}')""")
            assert found[0][0] == 0, f"{table}.{column}"


def test_feed_freshness_has_every_sender_and_late_ones_only_warn(sample_build: SampleBuild) -> None:
    # one row per source and sender that ever sent a file. Received times are the files' modification
    # times, so whether a sample sender looks late depends on the checkout; what must hold is that a
    # late sender is exactly one beyond its cadence, and that it makes a warning, never a failure
    senders = query(sample_build.warehouse, """
        select count(distinct (source, organisation_code)) from audit.file_loads where organisation_code is not null""")
    rows, late, inconsistent = query(sample_build.warehouse, """
        select count(*), count(*) filter (where is_late),
               count(*) filter (where is_late is distinct from coalesce(days_silent > late_after_days, true))
        from marts.mart_feed_freshness""")[0]
    assert rows == senders[0][0] > 20
    assert inconsistent == 0
    assert sample_build.summary.count("test", "warn") == (1 if late else 0), sample_build.summary.describe()
    assert sample_build.summary.success


def test_feed_cadence_seed_keeps_the_columns_sprx_status_reads() -> None:
    # sprx status reads the CSV itself: its header and sources must not drift
    import csv

    from sprx.settings import DBT_PROJECT_DIR

    with (DBT_PROJECT_DIR / "seeds" / "feed_cadence.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["source", "expected_every_days", "late_after_days"]
    assert {row["source"] for row in rows} == {"emis", "systmone", "ambulance", "vcse"}
    assert all(0 < int(row["expected_every_days"]) <= int(row["late_after_days"]) for row in rows)
