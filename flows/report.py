"""The published report: one self-contained HTML page and a PDF, built from the published tables alone.

    build_report(analytics.duckdb, report/) ─► report/index.html, report/report.pdf

Called by the publish flow on each new release, before it is swapped in, so the report always
describes the tables beside it. Every section has a chart (Altair, rendered to SVG offline by
vl-convert: no browser, no network) and the table of the figures drawn beneath it, so that the
figures can be read without the picture (screen readers, copying into a board paper). A redacted
figure is shown as "redacted" in the table and marked on the chart, never drawn as zero.

- ``index.html``: one file, inline SVG, inline CSS, no scripts, no external assets; printable
  (one section per printed page).
- ``report.pdf``: one page per section (each page an SVG of its title, chart and figures, converted
  by vl-convert and joined with pypdf).

Sections: the referral funnel over time and by deprivation; referrals by PCN; outcome effects
(naive beside matched, with intervals); balance and event-study diagnostics when those tables are
published; frequent callers by month; VCSE activity and wellbeing change by service; data quality and
feed freshness. A section whose table is absent is left out.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import duckdb
import vl_convert
from pypdf import PdfReader, PdfWriter

# The report's file names inside report/.
HTML_FILE = "index.html"
PDF_FILE = "report.pdf"
# A PDF page (A4 portrait at 96 px per inch, in CSS pixels) and its margin.
PAGE_WIDTH, PAGE_HEIGHT, MARGIN = 794, 1123, 40
# Chart width on the page; each chart keeps its own height.
CHART_WIDTH = 620
# Table rows that fit under a chart on one PDF page (the HTML page lists them all).
PDF_TABLE_ROWS = 24
# Colours: shown figures, the matched estimate, and redacted markers.
BLUE, ORANGE, GREY = "#1f5fa8", "#d9730d", "#8a8a8a"


@dataclass
class Section:
    """One page of the report: a title, a sentence on how to read it, a chart and its figures."""

    key: str
    title: str
    summary: str
    chart: alt.TopLevelMixin | None
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    @functools.cached_property
    def rendered(self) -> tuple[str, float, float] | None:
        """The chart rendered once (`render_svg`), for both the HTML page and the PDF page."""
        return render_svg(self.chart) if self.chart is not None else None


class Tables:
    """Read-only access to the published tables of one analytics.duckdb."""

    def __init__(self, analytics: Path) -> None:
        self.connection = duckdb.connect(str(analytics), read_only=True)
        self.names = {name for (name,) in self.connection.execute(
            "select table_name from duckdb_tables() where schema_name = 'published'").fetchall()}

    def has(self, table: str, *columns: str) -> bool:
        """True when the table is published (with these columns)."""
        return table in self.names and set(columns) <= set(self.columns(table))

    def columns(self, table: str) -> list[str]:
        """The table's column names, in order."""
        return [name for (name,) in self.connection.execute(
            "select column_name from duckdb_columns() where schema_name = 'published' and table_name = ? "
            "order by column_index", [table]).fetchall()]

    def rows(self, sql: str, parameters: list | None = None) -> list[dict]:
        """The query's rows as dictionaries."""
        result = self.connection.execute(sql, parameters or [])
        names = [item[0] for item in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def close(self) -> None:
        self.connection.close()


def cell(value: object, status: str | None = None, *, percent: bool = False, digits: int = 2) -> str:
    """A figure as the tables show it: `redacted`, `n/a`, a whole number, a percentage or a decimal."""
    if status == "redacted":
        return "redacted"
    if status == "not_applicable":
        return "n/a"
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.0%}" if percent else f"{value:,.{digits}f}"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value.tzinfo else value.strftime(
            "%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _records(rows: list[dict], label: str, figures: dict[str, str]) -> list[dict]:
    """Long-form chart data: one record per row and figure, with the figure's status."""
    records = []
    for row in rows:
        for column, name in figures.items():
            status = row.get(f"{column}_status", "shown" if row.get(column) is not None else "not_applicable")
            records.append({"label": str(row[label]), "figure": name, "value": row.get(column), "status": status})
    return records


def bar_chart(records: list[dict], *, x_title: str, y_title: str, percent: bool = False,
              height: int = 260) -> alt.LayerChart:
    """Grouped bars of the shown figures, and a 'redacted' marker where a figure is redacted."""
    order = list(dict.fromkeys(record["label"] for record in records))
    figures = list(dict.fromkeys(record["figure"] for record in records))
    base = alt.Chart(alt.Data(values=records)).encode(
        x=alt.X("label:N", sort=order, title=x_title, axis=alt.Axis(labelAngle=-40, labelLimit=160)),
        xOffset=alt.XOffset("figure:N", sort=figures),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title=y_title, axis=alt.Axis(format=".0%" if percent else ",d")),
        color=alt.Color("figure:N", sort=figures, title=None,
                        scale=alt.Scale(range=[BLUE, ORANGE, "#6a9f3a", "#8e5ea2"][:len(figures)]),
                        legend=alt.Legend(orient="top")),
    ).transform_filter("datum.status == 'shown'")
    redacted = base.mark_text(text="R", dy=-6, fontSize=10, fontWeight="bold", color=GREY).encode(
        y=alt.datum(0)).transform_filter("datum.status == 'redacted'")
    return alt.layer(bars, redacted).properties(width=CHART_WIDTH, height=height)


def rate_chart(records: list[dict], *, x_title: str, y_title: str, height: int = 150) -> alt.LayerChart:
    """Points and a line of a rate over ordered labels; 'R' where it is redacted."""
    order = list(dict.fromkeys(record["label"] for record in records))
    base = alt.Chart(alt.Data(values=records)).encode(x=alt.X("label:N", sort=order, title=x_title,
                                                              axis=alt.Axis(labelAngle=-40)))
    line = base.mark_line(point=True, color=BLUE).encode(
        y=alt.Y("value:Q", title=y_title, axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
    ).transform_filter("datum.status == 'shown'")
    redacted = base.mark_text(text="R", fontSize=10, fontWeight="bold", color=GREY).encode(
        y=alt.datum(0.02)).transform_filter("datum.status == 'redacted'")
    return alt.layer(line, redacted).properties(width=CHART_WIDTH, height=height)


def interval_chart(records: list[dict], *, x_title: str) -> alt.LayerChart:
    """Estimates with 95% intervals (naive beside matched), one row per outcome and window."""
    order = list(dict.fromkeys(record["label"] for record in records))
    base = alt.Chart(alt.Data(values=records)).encode(
        y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
        yOffset=alt.YOffset("estimate:N"),
        color=alt.Color("estimate:N", title=None, scale=alt.Scale(range=[GREY, BLUE]),
                        legend=alt.Legend(orient="top")),
    )
    shown = "datum.value != null"
    rules = base.mark_rule(strokeWidth=2).encode(x=alt.X("lower:Q", title=x_title), x2="upper:Q").transform_filter(
        "datum.lower != null")
    points = base.mark_point(filled=True, size=60).encode(x="value:Q").transform_filter(shown)
    zero = alt.Chart(alt.Data(values=[{"zero": 0}])).mark_rule(color="black", strokeDash=[3, 3]).encode(x="zero:Q")
    return alt.layer(zero, rules, points).properties(width=CHART_WIDTH - 160, height=max(120, 26 * len(order)))


# The sections -----------------------------------------------------------------------------------


def _latest_whole_period(tables: Tables, table: str, where: str) -> tuple[str, str] | None:
    """(period_type, period_label) of the latest whole financial year, else the latest whole quarter."""
    for period_type in ("financial_year", "quarter"):
        found = tables.rows(f"select period_label from published.{table} where {where} and period_type = ? "
                            f"and is_complete_period order by period_start desc limit 1", [period_type])
        if found:
            return period_type, found[0]["period_label"]
    return None


def section_funnel_over_time(tables: Tables) -> Section | None:
    """The ICS's referrals, engagement and its rate by quarter (whole quarters), with the months' figures."""
    if not tables.has("pub_referral_funnel"):
        return None
    rows = tables.rows("""
        select period_label, period_type, referral_episodes, referral_episodes_status, engaged_episodes,
               engaged_episodes_status, engagement_rate, engagement_rate_status, sustained_episodes,
               sustained_episodes_status, median_days_to_first_attendance, median_days_to_first_attendance_status
        from published.pub_referral_funnel where area_level = 'ics' and period_type = 'quarter'
        order by period_start""")
    notes = []
    if not rows:  # no whole quarter yet: months
        rows = tables.rows("""
            select period_label, period_type, referral_episodes, referral_episodes_status, engaged_episodes,
                   engaged_episodes_status, engagement_rate, engagement_rate_status, sustained_episodes,
                   sustained_episodes_status, median_days_to_first_attendance, median_days_to_first_attendance_status
            from published.pub_referral_funnel where area_level = 'ics' and period_type = 'month'
            order by period_start""")
    else:
        notes.append("By quarter: most single months have too few referrals to publish. Monthly figures are "
                     "in pub_referral_funnel (period_type 'month').")
    if not rows:
        return None
    counts = bar_chart(_records(rows, "period_label", {"referral_episodes": "referral episodes",
                                                         "engaged_episodes": "engaged"}),
                       x_title=None, y_title="episodes")
    rate = rate_chart(_records(rows, "period_label", {"engagement_rate": "engagement rate"}),
                      x_title=None, y_title="share engaged")
    return Section(
        "funnel-over-time", "Referral funnel over time (whole ICS)",
        "Social prescribing referral episodes opened each quarter, how many engaged with a VCSE service within "
        "180 days, and the share engaged.",
        alt.vconcat(counts, rate),
        ["period", "referral episodes", "engaged", "share engaged", "sustained", "median days to first attendance"],
        [[row["period_label"], cell(row["referral_episodes"], row["referral_episodes_status"]),
          cell(row["engaged_episodes"], row["engaged_episodes_status"]),
          cell(row["engagement_rate"], row["engagement_rate_status"], percent=True),
          cell(row["sustained_episodes"], row["sustained_episodes_status"]),
          cell(row["median_days_to_first_attendance"], row["median_days_to_first_attendance_status"], digits=0)]
         for row in rows], notes)


def section_funnel_by_deprivation(tables: Tables) -> Section | None:
    """Referrals and the share engaged by IMD quintile, in the latest whole financial year (or quarter)."""
    if not tables.has("pub_referral_funnel_by_group"):
        return None
    period = _latest_whole_period(tables, "pub_referral_funnel_by_group", "breakdown = 'imd_quintile'")
    if period is None:
        return None
    rows = tables.rows("""
        select group_value, referral_episodes, referral_episodes_status, engaged_episodes, engaged_episodes_status,
               engagement_rate, engagement_rate_status
        from published.pub_referral_funnel_by_group
        where breakdown = 'imd_quintile' and period_type = ? and period_label = ? order by group_value""", list(period))
    for row in rows:
        row["quintile"] = {"1": "1 (most deprived)", "5": "5 (least deprived)"}.get(row["group_value"],
                                                                                     row["group_value"])
    chart = alt.vconcat(
        bar_chart(_records(rows, "quintile", {"referral_episodes": "referral episodes",
                                              "engaged_episodes": "engaged"}),
                  x_title="IMD 2025 quintile of the person's neighbourhood", y_title="episodes", height=200),
        rate_chart(_records(rows, "quintile", {"engagement_rate": "engagement rate"}),
                   x_title="IMD 2025 quintile", y_title="share engaged"))
    return Section(
        "funnel-by-deprivation", f"Referral funnel by deprivation ({period[1]})",
        "Referral episodes and the share engaged by the deprivation quintile (IMD 2025) of the person's "
        "neighbourhood: does social prescribing reach, and keep, people in the most deprived areas?",
        chart, ["IMD quintile", "referral episodes", "engaged", "share engaged"],
        [[row["quintile"], cell(row["referral_episodes"], row["referral_episodes_status"]),
          cell(row["engaged_episodes"], row["engaged_episodes_status"]),
          cell(row["engagement_rate"], row["engagement_rate_status"], percent=True)] for row in rows])


def section_referrals_by_pcn(tables: Tables) -> Section | None:
    """Referral episodes and the share engaged per Primary Care Network in the latest whole year (or quarter)."""
    if not tables.has("pub_referral_funnel"):
        return None
    period = _latest_whole_period(tables, "pub_referral_funnel", "area_level = 'pcn'")
    if period is None:
        return None
    rows = tables.rows("""
        select area_name, referral_episodes, referral_episodes_status, engaged_episodes, engaged_episodes_status,
               engagement_rate, engagement_rate_status
        from published.pub_referral_funnel where area_level = 'pcn' and period_type = ? and period_label = ?
        order by referral_episodes desc nulls last, area_name""", list(period))
    chart = bar_chart(_records(rows, "area_name", {"referral_episodes": "referral episodes",
                                                   "engaged_episodes": "engaged"}),
                      x_title="Primary Care Network", y_title="episodes")
    return Section(
        "referrals-by-pcn", f"Referrals by Primary Care Network ({period[1]})",
        "Referral episodes opened by the practices of each Primary Care Network, and how many engaged.",
        chart, ["Primary Care Network", "referral episodes", "engaged", "share engaged"],
        [[row["area_name"], cell(row["referral_episodes"], row["referral_episodes_status"]),
          cell(row["engaged_episodes"], row["engaged_episodes_status"]),
          cell(row["engagement_rate"], row["engagement_rate_status"], percent=True)] for row in rows])


def _status(row: dict, column: str) -> str:
    return row.get(f"{column}_status") or ("shown" if row.get(column) is not None else "not_applicable")


def section_outcome_effects(tables: Tables) -> Section | None:
    """The naive before/after change beside the matched difference in differences with its 95% interval."""
    if not tables.has("pub_outcomes_by_deprivation", "is_all_quintiles", "naive_mean_change",
                      "matched_difference_in_differences", "matched_ci_lower", "matched_ci_upper"):
        return None
    rows = tables.rows("""
        select * from published.pub_outcomes_by_deprivation where is_all_quintiles order by outcome, window_days""")
    names = {"gp_consultations": "GP consultations", "calls_999": "999 calls", "see_and_convey": "conveyed to hospital"}
    records = []
    for row in rows:
        label = f"{names.get(row['outcome'], row['outcome'])}, {row['window_days']} days"
        records.append({"label": label, "estimate": "naive before/after", "value": row["naive_mean_change"],
                        "lower": None, "upper": None})
        matched = _status(row, "matched_difference_in_differences") == "shown"
        records.append({"label": label, "estimate": "matched difference in differences",
                        "value": row["matched_difference_in_differences"] if matched else None,
                        "lower": row["matched_ci_lower"] if matched else None,
                        "upper": row["matched_ci_upper"] if matched else None})
        row["label"] = label
    return Section(
        "outcome-effects", "Outcome effects: naive beside matched",
        "Change in events per person after referral. The naive before/after change is flattered by regression "
        "to the mean (people are referred at a peak of need); the matched difference in differences compares "
        "with similar people who were not referred and is the effect estimate. An interval crossing 0 means the "
        "data cannot tell an effect from none.",
        interval_chart(records, x_title="change in events per person (after - before)"),
        ["outcome and window", "referrals", "naive change", "matched referrals", "matched effect", "95% interval"],
        [[row["label"], cell(row.get("referral_count"), row.get("referral_count_status")),
          cell(row["naive_mean_change"], _status(row, "naive_mean_change")),
          cell(row.get("matched_referral_count"), row.get("matched_referral_count_status")),
          cell(row["matched_difference_in_differences"], _status(row, "matched_difference_in_differences")),
          ("redacted" if _status(row, "matched_ci_lower") == "redacted" else
           "n/a" if row["matched_ci_lower"] is None else
           f"{row['matched_ci_lower']:.2f} to {row['matched_ci_upper']:.2f}")] for row in rows])


def _find(columns: list[str], *patterns: str) -> str | None:
    """The first column whose name matches one of the patterns (in order of preference)."""
    for pattern in patterns:
        for column in columns:
            if re.search(pattern, column) and not column.endswith("_status"):
                return column
    return None


def _generic_rows(tables: Tables, table: str, limit: int = 60) -> tuple[list[str], list[list[str]], list[dict]]:
    """A published table's columns (without the _status ones) and its rows as cells, statuses applied.

    Rows come ordered by the first two columns (outcome then quarter; covariate then quintile); a
    table broken down by IMD quintile gives its overall (``imd_quintile = 'all'``) rows only."""
    every = tables.columns(table)
    columns = [column for column in every if not column.endswith("_status") and not column.endswith("_key")]
    where = "where imd_quintile = 'all'" if "imd_quintile" in every else ""
    order = "order by " + ", ".join(f'"{column}"' for column in columns[:2]) if columns else ""
    rows = tables.rows(f"select * from published.{table} {where} {order} limit {limit}")
    return columns, [[cell(row[column], row.get(f"{column}_status")) for column in columns] for row in rows], rows


def section_balance(tables: Tables) -> Section | None:
    """Covariate balance of the matched comparison (when a balance table is published)."""
    table = next((name for name in sorted(tables.names) if "balance" in name), None)
    if table is None:
        return None
    columns, cells, rows = _generic_rows(tables, table)
    label = _find(columns, r"covariate", r"variable", r"characteristic")
    values = [column for column in columns if re.search(r"standardi[sz]ed|smd", column)]
    chart = None
    if label and values:
        records = [{"label": str(row[label]) + (f" ({row['outcome']})" if "outcome" in row and row["outcome"] else ""),
                    "figure": column.replace("_", " "), "value": row[column]}
                   for row in rows for column in values if row[column] is not None
                   and _status(row, column) == "shown"]
        order = list(dict.fromkeys(record["label"] for record in records))
        base = alt.Chart(alt.Data(values=records))
        chart = alt.layer(
            alt.Chart(alt.Data(values=[{"x": -0.1}, {"x": 0.1}])).mark_rule(color=GREY, strokeDash=[3, 3]).encode(
                x="x:Q"),
            base.mark_point(filled=True, size=50).encode(
                x=alt.X("value:Q", title="standardised mean difference"),
                y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=220)),
                color=alt.Color("figure:N", title=None, legend=alt.Legend(orient="top"))),
        ).properties(width=CHART_WIDTH - 200, height=max(120, 18 * len(order)))
    return Section("balance", "Diagnostics: covariate balance",
                   "How alike the referred people and their matched comparators are, covariate by covariate. A "
                   "standardised mean difference within ±0.1 (dashed lines) is conventionally taken as balanced.",
                   chart, [column.replace("_", " ") for column in columns], cells, [f"From {table}."])


def section_event_study(tables: Tables) -> Section | None:
    """Event-study estimates around the referral (when an event-study table is published)."""
    table = next((name for name in sorted(tables.names) if "event_study" in name), None)
    if table is None:
        return None
    columns, cells, rows = _generic_rows(tables, table, limit=120)
    when = _find(columns, r"relative", r"event_time", r"period", r"month", r"offset")
    value = _find(columns, r"estimate", r"difference", r"effect", r"coefficient")
    lower, upper = _find(columns, r"lower"), _find(columns, r"upper")
    chart = None
    if when and value:
        series = _find(columns, r"^outcome$")
        records = [{"when": row[when], "value": row[value], "lower": row.get(lower) if lower else None,
                    "upper": row.get(upper) if upper else None,
                    "series": str(row[series]) if series else value}
                   for row in rows if row[value] is not None and _status(row, value) == "shown"]
        base = alt.Chart(alt.Data(values=records)).encode(
            x=alt.X("when:Q", title=when.replace("_", " ")), color=alt.Color("series:N", title=None,
                                                                            legend=alt.Legend(orient="top")))
        layers = [alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(color="black", strokeDash=[3, 3]).encode(y="y:Q")]
        if lower and upper:
            layers.append(base.mark_errorbar().encode(y=alt.Y("lower:Q", title=value.replace("_", " ")), y2="upper:Q"))
        layers.append(base.mark_line(point=True).encode(y=alt.Y("value:Q", title=value.replace("_", " "))))
        chart = alt.layer(*layers).properties(width=CHART_WIDTH, height=240)
    return Section("event-study", "Diagnostics: event study",
                   "Estimates period by period around the referral: flat before it supports the comparison; the "
                   "change after it is the effect over time.",
                   chart, [column.replace("_", " ") for column in columns], cells, [f"From {table}."])


def section_frequent_callers(tables: Tables) -> Section | None:
    """Frequent callers to the ambulance service by month, and the share referred."""
    if not tables.has("pub_frequent_callers_monthly"):
        return None
    rows = tables.rows("select * from published.pub_frequent_callers_monthly order by call_month")
    if not rows:
        return None
    for row in rows:
        row["month"] = row["call_month"].strftime("%Y-%m")
    return Section(
        "frequent-callers", "Frequent callers by month",
        "People meeting the national frequent caller definition (adults: 5+ calls in a month or 12+ in three "
        "months), recomputed from the ambulance calls, and the share ever referred to social prescribing.",
        alt.vconcat(
            bar_chart(_records(rows, "month", {"frequent_callers": "frequent callers"}), x_title=None,
                      y_title="people", height=200),
            rate_chart(_records(rows, "month", {"share_of_frequent_callers_referred": "share referred"}),
                       x_title=None, y_title="share referred")),
        ["month", "traced callers", "frequent callers", "share referred", "calls by frequent callers"],
        [[row["month"], cell(row["traced_callers"], _status(row, "traced_callers")),
          cell(row["frequent_callers"], _status(row, "frequent_callers")),
          cell(row["share_of_frequent_callers_referred"], _status(row, "share_of_frequent_callers_referred"),
               percent=True),
          cell(row["calls_by_frequent_callers"], _status(row, "calls_by_frequent_callers"))] for row in rows])


def section_vcse(tables: Tables) -> Section | None:
    """VCSE activity and wellbeing change by service in the latest whole financial year (or quarter)."""
    if not tables.has("pub_vcse_activity"):
        return None
    period = _latest_whole_period(tables, "pub_vcse_activity", "true")
    if period is None:
        return None
    rows = tables.rows("""
        select * from published.pub_vcse_activity where period_type = ? and period_label = ?
        order by service_id = 'all', service_id""", list(period))
    services = [row for row in rows if row["service_id"] != "all"]
    charts = [bar_chart(_records(services, "service_id", {"attendances": "attendances",
                                                           "unique_attendees": "people"}),
                        x_title="service", y_title="count", height=200)]
    wellbeing = [row for row in services if row["mean_wellbeing_change_status"] != "not_applicable"]
    if wellbeing:
        charts.append(bar_chart(_records(wellbeing, "service_id", {"mean_wellbeing_change": "mean wellbeing change"}),
                                x_title="service (sheets with wellbeing scores)", y_title="score change",
                                height=150))
    return Section(
        "vcse", f"VCSE activity and wellbeing by service ({period[1]})",
        "Sessions (not redacted: an organisational count), attendances and distinct people per service; and, where "
        "sheets carry wellbeing scores, the mean change from each person's first to last score (a before/after "
        "change, not an effect estimate).",
        alt.vconcat(*charts),
        ["service", "sessions", "attendances", "people", "did not attend", "people with 2+ scores",
         "mean wellbeing change"],
        [[row["service_id"], cell(row["sessions"]), cell(row["attendances"], row["attendances_status"]),
          cell(row["unique_attendees"], row["unique_attendees_status"]),
          cell(row["did_not_attend_rate"], row["did_not_attend_rate_status"], percent=True),
          cell(row["people_with_wellbeing_change"], row["people_with_wellbeing_change_status"]),
          cell(row["mean_wellbeing_change"], row["mean_wellbeing_change_status"])] for row in rows])


def section_data_quality(tables: Tables) -> Section | None:
    """Per source: data covered, files, rows rejected, and how long each sender has been silent."""
    if not tables.has("data_coverage"):
        return None
    coverage = tables.rows("select * from published.data_coverage order by source")
    rejected = {row["source"]: row for row in tables.rows("""
        select source, sum(rows_received) as received, sum(rows_rejected) as rejected
        from published.pub_data_quality group by source""")} if tables.has("pub_data_quality") else {}
    spans = [{"source": row["source"], "from": cell(row["first_date_covered"]), "to": cell(row["last_date_covered"])}
             for row in coverage if row["first_date_covered"] and row["last_date_covered"]]
    charts = [alt.Chart(alt.Data(values=spans)).mark_bar(color=BLUE, height=14).encode(
        y=alt.Y("source:N", title=None), x=alt.X("from:T", title="dates the loaded data covers"), x2="to:T",
    ).properties(width=CHART_WIDTH - 100, height=30 * max(1, len(spans)))]
    notes = []
    if tables.has("pub_feed_freshness"):
        senders = tables.rows("""
            select source || ' ' || coalesce(organisation_name, organisation_code) as sender, days_silent, is_late
            from published.pub_feed_freshness order by source, days_silent desc""")
        late = [row["sender"] for row in senders if row["is_late"]]
        notes.append(f"{len(late)} of {len(senders)} senders are late by their feed's cadence"
                     + (f": {', '.join(late[:12])}." if late else "."))
        if any(row["days_silent"] for row in senders):
            records = [{"sender": row["sender"], "days": row["days_silent"],
                        "state": "late" if row["is_late"] else "on time"} for row in senders]
            charts.append(alt.Chart(alt.Data(values=records)).mark_bar().encode(
                y=alt.Y("sender:N", sort=None, title=None, axis=alt.Axis(labelLimit=240, labelFontSize=8)),
                x=alt.X("days:Q", title="days since the sender's newest loaded file"),
                color=alt.Color("state:N", scale=alt.Scale(domain=["on time", "late"], range=[BLUE, ORANGE]),
                                title=None, legend=alt.Legend(orient="top")),
            ).properties(width=CHART_WIDTH - 240, height=max(120, 9 * len(records))))
    chart = alt.vconcat(*charts)
    rows = []
    for row in coverage:
        counts = rejected.get(row["source"], {})
        share = (counts["rejected"] / counts["received"]) if counts and counts.get("received") else None
        rows.append([row["source"], cell(row["first_date_covered"]), cell(row["last_date_covered"]),
                     cell(row["last_file_received_at"]), cell(row["files_loaded"]),
                     cell(counts.get("rejected")), f"{share:.1%}" if share is not None else "n/a"])
    return Section(
        "data-quality", "Data quality and feed freshness",
        "What each feed covers (data up to), its files and the rows quarantined (organisational counts, not "
        "redacted), and how long each sender has been silent (orange: later than its feed's cadence).",
        chart, ["source", "data from", "data up to", "last file received", "files loaded", "rows rejected",
                "share rejected"], rows, notes)


SECTIONS: tuple[Callable[[Tables], Section | None], ...] = (
    section_funnel_over_time, section_funnel_by_deprivation, section_referrals_by_pcn, section_outcome_effects,
    section_balance, section_event_study, section_frequent_callers, section_vcse, section_data_quality)


# Rendering --------------------------------------------------------------------------------------


def render_svg(chart: alt.TopLevelMixin) -> tuple[str, float, float] | None:
    """The chart as SVG with its width and height, or None when it has nothing to draw (no data yet)."""
    spec = chart.configure_view(stroke=None).configure(font="DejaVu Sans, Arial, sans-serif").to_dict()
    svg = vl_convert.vegalite_to_svg(spec)
    width, height = (re.search(rf'{name}="([^"]+)"', svg) for name in ("width", "height"))
    try:
        size = float(width.group(1)), float(height.group(1))
    except (AttributeError, ValueError):
        return None
    if not all(math.isfinite(value) and value > 0 for value in size):
        return None
    return svg, *size


def chart_svg(section: Section) -> str | None:
    """A section's chart as inline SVG (rendered offline), labelled for screen readers; None when there is
    nothing to draw."""
    rendered = section.rendered
    if rendered is None:
        return None
    label = html.escape(f"Chart: {section.title}. The figures are in the table below.", quote=True)
    return rendered[0].replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)


CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #1b1b1b; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; line-height: 1.45; }
header p, .note { color: #555; font-size: 0.9rem; }
section { margin: 2.5rem 0; }
h2 { border-bottom: 2px solid #1f5fa8; padding-bottom: 0.2rem; }
figure { margin: 1rem 0; overflow-x: auto; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin-top: 0.5rem; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.2rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef3fa; }
td.redacted { color: #6b6b6b; font-style: italic; }
@media print {
  body { margin: 0; max-width: none; }
  section { break-after: page; page-break-after: always; margin: 0; }
  section:last-of-type { break-after: auto; page-break-after: auto; }
}
"""


def render_html(sections: list[Section], published_at: str, end_dates: str) -> str:
    """The whole report as one self-contained HTML page."""
    parts = ['<!DOCTYPE html>', '<html lang="en-GB">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>Social prescribing: published report</title>",
             '<link rel="icon" href="data:,">',  # no icon: the browser asks for nothing else
             f"<style>{CSS}</style>", "</head>", "<body>",
             "<header><h1>Social prescribing: published report</h1>",
             f"<p>Built from the published tables of the release made {html.escape(published_at)}. {end_dates} "
             "Counts of people and of events about people from 1 to 7 are redacted (shown as “redacted”, "
             "and as <b>R</b> on charts) and the rest rounded to the nearest 5; n/a means there is nothing to "
             "measure.</p>",
             '<nav aria-label="Sections"><ol>']
    parts += [f'<li><a href="#{section.key}">{html.escape(section.title)}</a></li>' for section in sections]
    parts.append("</ol></nav></header><main>")
    for section in sections:
        parts.append(f'<section id="{section.key}" aria-labelledby="{section.key}-title">')
        parts.append(f'<h2 id="{section.key}-title">{html.escape(section.title)}</h2>')
        parts.append(f"<p>{html.escape(section.summary)}</p>")
        svg = chart_svg(section)
        if svg is not None:
            parts.append(f"<figure>{svg}</figure>")
        else:
            parts.append('<p class="note">No figures to draw yet.</p>')
        parts.append(f"<table><caption>Figures: {html.escape(section.title)}</caption><thead><tr>")
        parts += [f'<th scope="col">{html.escape(column)}</th>' for column in section.columns]
        parts.append("</tr></thead><tbody>")
        for row in section.rows:
            cells = [f'<td class="redacted">{html.escape(value)}</td>' if value == "redacted"
                     else f"<td>{html.escape(value)}</td>" for value in row]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
        parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _text(x: float, y: float, value: str, *, size: int = 10, weight: str = "normal", anchor: str = "start",
          fill: str = "#1b1b1b") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-family="DejaVu Sans, Arial, sans-serif" font-size="{size}" '
            f'font-weight="{weight}" text-anchor="{anchor}" fill="{fill}">{html.escape(value)}</text>')


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def page_svg(section: Section, header: str) -> str:
    """One PDF page (A4) as SVG: header, title, summary, chart (scaled to fit), then the table of figures."""
    parts = [_text(MARGIN, 28, header, size=8, fill="#555"), _text(MARGIN, 62, section.title, size=18, weight="bold")]
    y = 84.0
    for line in _wrap(section.summary, 120):
        parts.append(_text(MARGIN, y, line, size=9, fill="#333"))
        y += 13
    y += 6
    rows = section.rows[:PDF_TABLE_ROWS]
    table_height = 16 * (len(rows) + 1) + 30
    if section.rendered is not None:
        svg, width, height = section.rendered
        room = PAGE_HEIGHT - MARGIN - y - table_height
        scale = min(1.0, (PAGE_WIDTH - 2 * MARGIN) / width, max(room, 120) / height)
        inner = svg.split(">", 1)[1].rsplit("</svg>", 1)[0]
        parts.append(f'<g transform="translate({MARGIN},{y:.1f}) scale({scale:.4f})">{inner}</g>')
        y += height * scale + 16
    widths = _column_widths(section.columns, rows)
    x_positions, x = [], float(MARGIN)
    for width in widths:
        x_positions.append(x)
        x += width
    parts.append(f'<rect x="{MARGIN}" y="{y:.1f}" width="{x - MARGIN:.1f}" height="16" fill="#eef3fa"/>')
    for column, left in zip(section.columns, x_positions, strict=True):
        parts.append(_text(left + 3, y + 11.5, column, size=8, weight="bold"))
    y += 16
    for row in rows:
        for value, left in zip(row, x_positions, strict=True):
            parts.append(_text(left + 3, y + 11.5, value, size=8, fill=GREY if value == "redacted" else "#1b1b1b"))
        parts.append(f'<line x1="{MARGIN}" y1="{y + 16:.1f}" x2="{x:.1f}" y2="{y + 16:.1f}" stroke="#ddd"/>')
        y += 16
    notes = list(section.notes)
    if len(section.rows) > len(rows):
        notes.append(f"First {len(rows)} of {len(section.rows)} rows; the HTML report and the CSV have them all.")
    y += 8
    for note in notes:
        for line in _wrap(note, 130):
            parts.append(_text(MARGIN, y + 10, line, size=8, fill="#555"))
            y += 12
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_WIDTH}" height="{PAGE_HEIGHT}" '
            f'viewBox="0 0 {PAGE_WIDTH} {PAGE_HEIGHT}"><rect width="100%" height="100%" fill="white"/>'
            + "".join(parts) + "</svg>")


def _column_widths(columns: list[str], rows: list[list[str]]) -> list[float]:
    """Widths in pixels from the longest text in each column, scaled to the page."""
    lengths = [max([len(column)] + [len(row[index]) for row in rows]) for index, column in enumerate(columns)]
    natural = [5.2 * length + 10 for length in lengths]
    scale = min(1.0, (PAGE_WIDTH - 2 * MARGIN) / sum(natural))
    return [width * scale for width in natural]


def render_pdf(sections: list[Section], header: str) -> bytes:
    """report.pdf: one page per section."""
    writer = PdfWriter()
    for section in sections:
        reader = PdfReader(io.BytesIO(vl_convert.svg_to_pdf(page_svg(section, header))))
        for page in reader.pages:
            writer.add_page(page)
    writer.add_metadata({"/Title": "Social prescribing: published report", "/Producer": "sprx"})
    output = io.BytesIO()
    writer.write(output)
    return output.getvalue()


def build_report(analytics: Path, folder: Path) -> list[str]:
    """Write folder/index.html and folder/report.pdf from analytics.duckdb's published tables; returns section titles."""
    tables = Tables(analytics)
    try:
        sections = [section for build in SECTIONS if (section := build(tables)) is not None]
        coverage = tables.rows("select source, last_date_covered from published.data_coverage order by source") \
            if tables.has("data_coverage") else []
    finally:
        tables.close()
    published_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    end_dates = ("Data up to: " + "; ".join(f"{row['source']} {cell(row['last_date_covered'])}" for row in coverage)
                 + ".") if coverage else ""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / HTML_FILE).write_text(render_html(sections, published_at, end_dates), encoding="utf-8")
    (folder / PDF_FILE).write_bytes(render_pdf(sections, f"Social prescribing: published report, {published_at}. "
                                                        f"{end_dates}"))
    return [section.title for section in sections]
