"""The analysts' copy of the sample, as `sprx publish` writes it: grains that survive disclosure control,
no redacted count recoverable by subtraction, a status beside every redactable figure, a catalogue inside
the file, and a copy DuckDB 1.1 can open. Everything here reads the published copy alone."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from flows.publish import ANALYTICS_FILE, release_problems

pytestmark = pytest.mark.usefixtures("prefect_harness")


def rows(published: Path, sql: str) -> list[dict]:
    with duckdb.connect(str(published / ANALYTICS_FILE), read_only=True) as connection:
        result = connection.execute(sql)
        names = [item[0] for item in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def test_ics_referrals_and_the_share_engaged_are_shown_for_most_periods(published: Path) -> None:
    # The sample's 3,000 people make about 35 referrals a year, so a quarter holds about 9 referrals and
    # fewer than 7 engaged: counts under 7 are redacted, and so is the share engaged of most quarters. The
    # grain that carries both for the ICS is the whole financial year: its quarters if all are shown, else
    # the year itself.
    funnel = rows(published, """
        select period_type, period_start, period_end, referral_episodes_status, engagement_rate_status,
               engagement_rate, referral_episodes
        from published.pub_referral_funnel where area_level = 'ics'""")
    years = [row for row in funnel if row["period_type"] == "financial_year"]
    quarters = [row for row in funnel if row["period_type"] == "quarter"]
    assert quarters, "no whole quarter was published for the ICS"
    assert years, "no whole financial year was published for the ICS"
    shown = 0
    for year in years:
        inside = [quarter for quarter in quarters
                  if year["period_start"] <= quarter["period_start"] <= year["period_end"]]
        by_quarter = bool(inside) and all(
            quarter["referral_episodes_status"] == quarter["engagement_rate_status"] == "shown" for quarter in inside)
        by_year = year["referral_episodes_status"] == year["engagement_rate_status"] == "shown"
        shown += by_quarter or by_year
        assert year["referral_episodes_status"] == "shown"  # a whole year's referrals are never too few
    assert shown > len(years) / 2, f"only {shown} of {len(years)} years show referrals and the share engaged"
    assert all(0 <= row["engagement_rate"] <= 1 for row in years + quarters if row["engagement_rate"] is not None)


def relations(published: Path) -> list[tuple[str, dict, list[dict]]]:
    """Every (name, total row, part rows) a reader can form: totals beside their parts, from published columns."""
    funnel = rows(published, "select * from published.pub_referral_funnel")
    practices = {row["practice_code"]: row for row in rows(published, "select * from published.pub_practices")}
    groups = rows(published, "select * from published.pub_referral_funnel_by_group")
    vcse = rows(published, "select * from published.pub_vcse_activity")
    found: list[tuple[str, dict, list[dict]]] = []

    def period_key(row: dict) -> tuple:
        return row["period_type"], row["period_start"]

    def quarter_of(row: dict):
        return row["period_start"].replace(month=3 * ((row["period_start"].month - 1) // 3) + 1, day=1)

    def year_of(row: dict):
        start = row["period_start"]
        return start.replace(year=start.year - (start.month < 4), month=4, day=1)

    by_key = {(row["area_level"], row["area_code"], *period_key(row)): row for row in funnel}
    parts: dict[tuple, list[dict]] = defaultdict(list)
    for row in funnel:
        if row["area_level"] == "practice":
            pcn = practices[row["area_code"]]["pcn_code"] or "none"
            parts[("area", ("pcn", pcn, *period_key(row)))].append(row)
        elif row["area_level"] == "pcn":
            ics = next(r["area_code"] for r in funnel if r["area_level"] == "ics")
            parts[("area", ("ics", ics, *period_key(row)))].append(row)
        if row["period_type"] == "month":
            parts[("period", (row["area_level"], row["area_code"], "quarter", quarter_of(row)))].append(row)
        elif row["period_type"] == "quarter":
            parts[("period", (row["area_level"], row["area_code"], "financial_year", year_of(row)))].append(row)
    for (kind, key), members in parts.items():
        if key in by_key:
            found.append((f"funnel {kind} {key}", by_key[key], members))
    group_parts: dict[tuple, list[dict]] = defaultdict(list)
    group_by_key = {(row["breakdown"], row["group_value"], *period_key(row)): row for row in groups}
    for row in groups:
        group_parts[("group", row["breakdown"], ("ics", row["area_code"], *period_key(row)))].append(row)
        if row["period_type"] == "quarter":
            total = (row["breakdown"], row["group_value"], "financial_year", year_of(row))
            group_parts[("group-period", total)].append(row)
    for key, members in group_parts.items():
        total = by_key.get(key[2]) if key[0] == "group" else group_by_key.get(key[1])
        if total is not None:
            found.append((f"funnel {key}", total, members))
    vcse_by_key = {(row["service_id"], *period_key(row)): row for row in vcse}
    vcse_parts: dict[tuple, list[dict]] = defaultdict(list)
    for row in vcse:
        if row["service_id"] != "all":
            vcse_parts[("all", *period_key(row))].append(row)
        if row["period_type"] == "month":
            vcse_parts[(row["service_id"], "quarter", quarter_of(row))].append(row)
        elif row["period_type"] == "quarter":
            vcse_parts[(row["service_id"], "financial_year", year_of(row))].append(row)
    for key, members in vcse_parts.items():
        if key in vcse_by_key:
            found.append((f"vcse {key}", vcse_by_key[key], members))
    return found


FUNNEL_COUNTS = ("referral_episodes", "declined_episodes", "engaged_episodes", "sustained_episodes")
VCSE_COUNTS = ("attendances", "did_not_attend_rows", "register_rows")


def test_no_redacted_count_can_be_recovered_from_a_total_minus_its_visible_parts(published: Path) -> None:
    # for every total beside its parts, and every additive count: the cells that are redacted (total and
    # parts together) are never exactly one, so subtraction never isolates a redacted count; and within each
    # VCSE row register rows = attendances + did not attend, so the same holds across those three
    found = relations(published)
    assert len(found) > 50
    checked = recoverable = 0
    for name, total, members in found:
        figures = FUNNEL_COUNTS if name.startswith("funnel") else VCSE_COUNTS
        for figure in figures:
            cells = [total, *members]
            redacted = [cell for cell in cells if cell[f"{figure}_status"] == "redacted"]
            checked += 1
            if len(redacted) == 1:
                recoverable += 1
                print(f"recoverable: {name} {figure}")
    vcse = rows(published, "select * from published.pub_vcse_activity")
    for row in vcse:
        redacted = [figure for figure in VCSE_COUNTS if row[f"{figure}_status"] == "redacted"]
        checked += 1
        recoverable += len(redacted) == 1
    assert checked > 500 and recoverable == 0
    # there was something to protect: shown totals whose parts include redacted counts
    protected = [name for name, total, members in found if name.startswith("funnel")
                 and total["referral_episodes_status"] == "shown"
                 and any(member["referral_episodes_status"] == "redacted" for member in members)]
    assert protected


def test_every_redactable_figure_has_a_status_that_agrees_with_it(published: Path) -> None:
    assert release_problems(published / ANALYTICS_FILE) == []
    with duckdb.connect(str(published / ANALYTICS_FILE), read_only=True) as connection:
        statuses = connection.execute("""
            select table_name, column_name from duckdb_columns()
            where schema_name = 'published' and column_name like '%\\_status' escape '\\'""").fetchall()
        counts = dict(connection.execute("""
            select status, count(*) from (
                select referral_episodes_status as status from published.pub_referral_funnel
                union all select engagement_rate_status from published.pub_referral_funnel)
            group by status""").fetchall())
    assert len(statuses) > 30
    assert set(counts) == {"shown", "redacted", "not_applicable"}  # a zero-referral month's rate is not applicable


def test_every_published_table_and_column_has_a_comment(published: Path) -> None:
    with duckdb.connect(str(published / ANALYTICS_FILE), read_only=True) as connection:
        tables = connection.execute("""
            select table_name, comment from duckdb_tables() where schema_name = 'published'""").fetchall()
        columns = connection.execute("""
            select table_name, column_name, comment from duckdb_columns() where schema_name = 'published'""").fetchall()
    assert len(tables) >= 10 and len(columns) > 150
    assert [name for name, comment in tables if not (comment or "").strip()] == []
    assert [(table, column) for table, column, comment in columns if not (comment or "").strip()] == []
    assert "data_coverage" in {name for name, _ in tables}


def test_the_manifest_names_the_build_the_data_end_dates_and_the_schema_version(published: Path) -> None:
    manifest = json.loads((published / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["build"]["run_id"] and manifest["schema_version"] >= 2
    coverage = {row["source"]: row for row in rows(published, "select * from published.data_coverage")}
    assert set(manifest["data_end_dates"]) == set(coverage) == {"emis", "systmone", "ambulance", "vcse"}
    for source, dates in manifest["data_end_dates"].items():
        assert dates["last_date_covered"] == coverage[source]["last_date_covered"].isoformat()
        assert coverage[source]["first_date_covered"] <= coverage[source]["last_date_covered"]
        assert coverage[source]["last_file_received_at"].tzinfo is not None  # UTC, with its time zone


def test_csv_rows_are_sorted_by_the_grain(published: Path) -> None:
    with open(published / "csv" / "pub_data_quality.csv", newline="", encoding="utf-8") as handle:
        file_ids = [int(row["file_id"]) for row in csv.DictReader(handle)]
    assert file_ids == sorted(file_ids) and len(file_ids) > 100
    with open(published / "csv" / "pub_referral_funnel.csv", newline="", encoding="utf-8") as handle:
        keys = [(row["funnel_key"]) for row in csv.DictReader(handle)]
    assert keys == sorted(keys)


@pytest.mark.slow
def test_duckdb_1_1_opens_the_published_file(published: Path, tmp_path: Path) -> None:
    # analysts' tools lag behind the pipeline: a throwaway venv with DuckDB 1.1.3 reads the file
    venv = tmp_path / "duckdb-1.1"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "duckdb==1.1.3"],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.skip(f"duckdb 1.1.3 could not be installed here: {install.stderr[-300:]}")
    script = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
              "print(duckdb.__version__, c.execute(\"select count(*) from duckdb_tables() where schema_name = "
              "'published'\").fetchone()[0], c.execute('select count(*) from published.pub_referral_funnel')"
              ".fetchone()[0])")
    opened = subprocess.run([str(venv / "bin" / "python"), "-c", script, str(published / ANALYTICS_FILE)],
                            capture_output=True, text=True)
    assert opened.returncode == 0, opened.stderr[-2000:]
    version, tables, funnel_rows = opened.stdout.split()
    assert version == "1.1.3" and int(tables) >= 10 and int(funnel_rows) > 0
