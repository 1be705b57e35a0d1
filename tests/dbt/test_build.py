"""`build` on the sample warehouse: dbt build passes, staging holds raw's current state, no identifier in clear."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from flows.build import DbtBuildError, build
from flows.warehouse import connect
from tests.dbt.conftest import SampleBuild

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Each staging model and the count of raw's current state it must hold (table-driven).
STAGING_COUNTS = [
    # the EMIS snapshot is all current: one staging row per raw row
    ("stg_emis__patients", "select count(*) from raw.emis_patients"),
    ("stg_emis__events", "select count(*) from raw.emis_events"),
    # SystmOne deletions are kept in raw as tombstones and dropped in staging
    ("stg_systmone__patients", "select count(*) from raw.systmone_patients where not is_removed"),
    ("stg_systmone__codes", "select count(*) from raw.systmone_codes where not is_removed"),
    ("stg_systmone__appointments", "select count(*) from raw.systmone_appointments where not is_removed"),
    # ambulance and VCSE raw hold only the latest version of each incident / attendance
    ("stg_ambulance__incidents", "select count(*) from raw.ambulance_incidents"),
    ("stg_vcse__attendances", "select count(*) from raw.vcse_attendances"),
    # the audit tables pass through whole
    ("stg_audit__file_loads", "select count(*) from audit.file_loads"),
    ("stg_audit__rejected_rows", "select count(*) from audit.rejected_rows"),
]
# A clear NHS number (synthetic ones are all in the 999 test range), any spacing.
NHS_NUMBER = r"\b999[ -]?[0-9]{3}[ -]?[0-9]{4}\b"
# Column names that would mean an identifier reached staging.
IDENTIFIER_COLUMNS = {"nhs_number", "postcode", "date_of_birth", "first_name", "last_name", "surname",
                      "family_name", "calling_name", "forename", "name", "dob", "notes", "chief_complaint"}


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_dbt_build_passes_with_no_failures(sample_build: SampleBuild) -> None:
    summary = sample_build.summary
    assert summary.success, summary.describe()
    assert summary.tests_failed == 0 and summary.models_failed == 0, summary.describe()
    assert summary.seeds_loaded == 6  # five reference lookups and feed_cadence
    assert summary.models_built >= len(STAGING_COUNTS)
    assert summary.count("test", "pass") > 100  # keys, accepted values, ranges, relationships
    assert summary.count("unit_test", "pass") >= 7  # clock changes, tombstones, flags, sex
    # the artefacts sit beside the warehouse, not in the source tree
    assert (sample_build.home / "dbt" / "target" / "run_results.json").exists()


def test_schemas_are_exactly_the_folder_names(sample_build: SampleBuild) -> None:
    schemas = {row[0] for row in query(sample_build.warehouse, "select schema_name from information_schema.schemata")}
    assert {"staging", "reference"} <= schemas
    assert not {schema for schema in schemas if schema.startswith("main_")}


@pytest.mark.parametrize(("model", "raw_count_sql"), STAGING_COUNTS, ids=[m for m, _ in STAGING_COUNTS])
def test_staging_holds_raw_current_state(sample_build: SampleBuild, model: str, raw_count_sql: str) -> None:
    staged = query(sample_build.warehouse, f"select count(*) from staging.{model}")[0][0]
    current = query(sample_build.warehouse, raw_count_sql)[0][0]
    assert staged == current > 0


def test_systmone_tombstones_exist_in_raw_and_not_in_staging(sample_build: SampleBuild) -> None:
    # proves the count test above is not trivially equal: the sample has deletions to drop
    removed = query(sample_build.warehouse, """
        select count(*) from raw.systmone_patients p
        where p.is_removed
          and exists (select 1 from staging.stg_systmone__patients s
                      where s.practice_code = p.practice_code and s.row_identifier = p.row_identifier)""")[0][0]
    assert removed == 0
    assert query(sample_build.warehouse, "select count(*) from raw.systmone_patients where is_removed")[0][0] > 0


def test_ambulance_call_date_is_uk_local(sample_build: SampleBuild) -> None:
    # the trust's incident numbers start with the local date of the call (NW yymmdd nnnn)
    rows = query(sample_build.warehouse, """
        select count(*) filter (where substr(incident_id, 3, 6) <> strftime(call_received_date, '%y%m%d')),
               count(*) filter (where call_received_date <> cast(call_received_at as date))
        from staging.stg_ambulance__incidents""")[0]
    assert rows[0] == 0
    assert rows[1] > 0  # some late-evening summer calls fall on the next local day


def test_no_clear_identifier_in_staging(sample_build: SampleBuild) -> None:
    with duckdb.connect(str(sample_build.warehouse), read_only=True) as connection:
        columns = connection.execute("""
            select table_name, column_name from information_schema.columns
            where table_schema = 'staging' order by all""").fetchall()
        assert columns
        assert not {column for _, column in columns} & IDENTIFIER_COLUMNS
        postcodes = "(select replace(postcode, ' ', '') as postcode from reference.ref_postcode_lsoa21)"
        for table, column in columns:
            value = f'upper(replace(cast("{column}" as varchar), \' \', \'\'))'
            found = connection.execute(f"""
                select
                    count(*) filter (where regexp_matches(cast("{column}" as varchar), '{NHS_NUMBER}')),
                    count(*) filter (where {value} in {postcodes})
                from staging.{table}""").fetchall()[0]
            assert found == (0, 0), (table, column, "NHS numbers, postcodes", found)


def test_tokens_are_pseudonyms_not_values(sample_build: SampleBuild) -> None:
    tokens = [(table, column) for table, column in query(sample_build.warehouse, """
        select table_name, column_name from information_schema.columns
        where table_schema = 'staging' and column_name like '%\\_token' escape '\\'""")]
    assert len(tokens) == 16  # four tokens on each of the four person-level tables
    for table, column in tokens:
        bad = query(sample_build.warehouse, f"""
            select count(*) from staging.{table}
            where "{column}" is not null and not regexp_full_match("{column}", '[0-9a-f]{{64}}')""")[0][0]
        assert bad == 0, (table, column)


def test_an_empty_home_builds_empty_models(sprx_home: Path) -> None:
    # nothing ingested yet (a fresh install): the raw schema is created and every test still passes
    summary = build()
    assert summary.success and summary.tests_failed == 0, summary.describe()
    assert query(sprx_home / "warehouse.duckdb", "select count(*) from staging.stg_emis__patients") == [(0,)]


def insert_unknown_gender(warehouse: Path) -> None:
    """A raw EMIS patient with a gender the contract would never let through (staging maps it to null)."""
    connection = connect(warehouse)
    try:
        connection.execute("""
            insert into raw.emis_patients (practice_code, emis_number, extract_date, file_id, gender)
            values ('P91004', '1', date '2026-10-31', 1, 'Mle')""")
    finally:
        connection.close()


def test_a_failing_test_fails_the_flow_and_names_the_test(sprx_home: Path) -> None:
    insert_unknown_gender(sprx_home / "warehouse.duckdb")
    with pytest.raises(DbtBuildError) as failed:
        build(select=("stg_emis__patients",))
    summary = failed.value.summary
    assert not summary.success and summary.tests_failed >= 1
    assert any(re.search(r"not_null_stg_emis__patients_sex: fail", f) for f in summary.failures), summary.failures
    assert "Mle" not in str(failed.value)  # counts and node names, never data values
