"""The report's edge cases, on small hand-made published copies (the sample's report: tests/dbt/test_report.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from pypdf import PdfReader

from flows.report import build_report, interval_chart, render_svg


def test_a_chart_with_nothing_to_draw_is_left_out_not_a_crash(tmp_path: Path) -> None:
    # a home whose first run has loaded little: empty tables make charts of infinite size in Vega-Lite
    assert render_svg(interval_chart([], x_title="change")) is None
    analytics = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(analytics)) as connection:
        connection.execute("create schema published")
        connection.execute("""
            create table published.pub_outcomes_by_deprivation as
            select 'gp_consultations' as outcome, 90 as window_days, true as is_all_quintiles,
                   1.0 as naive_mean_change, 1.0 as matched_difference_in_differences,
                   1.0 as matched_ci_lower, 1.0 as matched_ci_upper
            where false""")
        connection.execute("""
            create table published.data_coverage as
            select 'emis' as source, date '2025-01-01' as first_date_covered, date '2025-02-01' as last_date_covered,
                   timestamptz '2025-02-02 00:00:00+00' as last_file_received_at, 3 as files_loaded""")
    titles = build_report(analytics, tmp_path / "report")
    assert titles == ["Outcome effects: naive beside matched", "Data quality and feed freshness"]
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert page.count("No figures to draw yet.") == 1 and page.count("<svg") == 1
    assert len(PdfReader(tmp_path / "report" / "report.pdf").pages) == 2
