"""The dbt project's SQL runs on DuckDB and on Spark: no DuckDB-only function outside dispatched macros.

The same models build on both engines (docs/scale.md). Where the dialects differ, the difference
lives in a macro behind `adapter.dispatch` (its `default__` and `spark__` versions, in macros/); every
model, test and other macro uses dbt's cross-database macros or those. This scans the SQL for the
DuckDB-only spellings that would break the Spark build, so a new model cannot bring one back.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"

# DuckDB-only SQL, and what to write instead (the message a failing test shows).
DUCKDB_ONLY = [
    (r"\bstrftime\s*\(", "strftime: cast a date to dbt.type_string() (ISO text), or substr of it"),
    (r"\bstrptime\s*\(", "strptime: cast(... as date)"),
    (r"\brange\s*\(", "range(): macro month_series, or a values list"),
    (r"\bgenerate_series\s*\(", "generate_series(): macro month_series"),
    (r"\barg_max\s*\(", "arg_max: max_by (both engines)"),
    (r"\barg_min\s*\(", "arg_min: min_by (both engines)"),
    (r"\bdate_diff\s*\(", "date_diff: dbt.datediff"),
    (r"(?<![.\w])datediff\s*\(", "datediff: dbt.datediff"),
    (r"\bdate_sub\s*\(", "date_sub: macro whole_years_between, or dbt.dateadd"),
    (r"\bas\s+varchar\b", "varchar: dbt.type_string()"),
    (r"::", "the :: cast: cast(... as ...)"),
    (r"\blist_\w+\s*\(", "list functions: none on Spark"),
    (r"\blist\s*\(", "list(): none on Spark"),
    (r"\bstruct_pack\s*\(", "struct_pack: macro ordered_record"),
    (r"\bunnest\s*\(", "unnest: none on Spark"),
    (r"\bstring_agg\s*\(", "string_agg: dbt.listagg"),
    (r"\btimezone\s*\(", "timezone(): macros utc_instant or utc_to_uk_local"),
    (r"\bat\s+time\s+zone\b", "at time zone: macro utc_to_uk_local"),
    (r"[+-]\s*interval\b", "date arithmetic with interval: dbt.dateadd"),
    (r"\bepoch(_ms|_us|_ns)?\s*\(", "epoch(): none on Spark"),
    (r"\bexclude\s*\(", "select * exclude: list the columns"),
    (r"\bread_(parquet|csv|json)\w*\s*\(", "read_parquet/read_csv: a dbt source"),
    (r"\b(hugeint|ubigint|uinteger|usmallint|utinyint)\b", "unsigned/huge integer types: bigint"),
    (r"\bquantile(_cont|_disc)?\s*\(", "quantile: median or percentile"),
    (r"\bunpivot\s*\(|\binto\s+name\b", "DuckDB's unpivot statement: a union all of one select per column"),
    # the same name, a different meaning on Spark: a dispatched macro says which one is meant
    (r"\bregexp_(matches|full_match|extract|extract_all|replace|split_to_array)\s*\(",
     "regexp functions: a dispatched macro (DuckDB's regexp_replace replaces the first match, Spark's every "
     "match; regexp_extract's default group is 0 on DuckDB, 1 on Spark; regexp_matches is DuckDB's alone)"),
    (r"\b(string_split|str_split|string_split_regex|str_split_regex|string_to_array)\s*\(|(?<![.\w])split\s*\(",
     "split into a list: split_part (both engines)"),
    (r"\b(starts_with|ends_with|prefix|suffix)\s*\(", "starts_with/ends_with: like 'text%'"),
    (r"\b(printf|format)\s*\(", "printf/format: concat_ws, or || with casts to dbt.type_string()"),
    (r"\b(dayofweek|isodow|dow|weekday|dayofyear|isoyear|yearweek)\s*\(",
     "day-of-week numbers differ (DuckDB Sunday 0, Spark Sunday 1): a dispatched macro"),
    (r"\blog\s*\(", "log(): base 10 on DuckDB, e on Spark: ln or log10"),
    (r"\btrunc\s*\(", "trunc(): a number on DuckDB, a date on Spark: floor or dbt.date_trunc"),
    (r"\btoday\s*\(", "today(): current_date"),
    (r"\bage\s*\(", "age(): macro whole_years_between"),
    (r"\bto_timestamp\s*\(", "to_timestamp(): epoch seconds on DuckDB, a string to parse on Spark: cast(... as timestamp)"),
    (r"\bhash\s*\(", "hash(): different values on each engine: md5"),
    (r"//", "// integer division: floor(a / b)"),
    (r"\bas\s+(text|blob|uuid|timestamptz)\b|\bwith\s+time\s+zone\b",
     "DuckDB-only types: dbt.type_string(), macro utc_instant"),
    (r"\basof\s+(left\s+)?join\b|\bpositional\s+join\b", "ASOF/POSITIONAL joins: a window, or a join on a key"),
]

# A macro body for one engine other than Spark: `default__name` or `duckdb__name`.
ENGINE_MACRO = re.compile(r"{%-?\s*macro\s+(default|duckdb)__\w+.*?{%-?\s*endmacro\s*-?%}", re.S)
JINJA_COMMENT = re.compile(r"{#.*?#}", re.S)
JINJA_STATEMENT = re.compile(r"{%.*?%}", re.S)
SQL_COMMENT = re.compile(r"--[^\n]*")
# A model or test that only DuckDB builds (e.g. one checking a duckdb__ macro against DuckDB's own functions).
DUCKDB_ONLY_FILE = re.compile(r"{{-?\s*config\(\s*enabled\s*=\s*target\.type\s*==\s*['\"]duckdb['\"]\s*\)\s*-?}}")


def portable_part(text: str, *, node: bool = True) -> str:
    """The SQL that must run on every engine: without DuckDB's own macro bodies, comments and Jinja statements.

    A node (a model or test, not a macro file) whose config enables it only on DuckDB has none."""
    if node and DUCKDB_ONLY_FILE.search(JINJA_COMMENT.sub(" ", text)):  # Jinja in an SQL comment still runs
        return ""
    for pattern in (ENGINE_MACRO, JINJA_COMMENT, JINJA_STATEMENT, SQL_COMMENT):
        text = pattern.sub(" ", text)
    return text


def duckdb_only_uses(text: str, *, node: bool = True) -> list[str]:
    """What DuckDB-only SQL the text uses, as 'what: instead' messages."""
    portable = portable_part(text, node=node)
    return [advice for pattern, advice in DUCKDB_ONLY if re.search(pattern, portable, re.I)]


SQL_FILES = sorted(
    path for folder in ("models", "macros", "tests") for path in (PROJECT / folder).rglob("*.sql")
)


def test_the_project_has_sql_to_scan():
    assert len([path for path in SQL_FILES if "models" in path.parts]) > 20


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda path: str(path.relative_to(PROJECT)))
def test_no_duckdb_only_sql_outside_dispatched_macros(path):
    found = duckdb_only_uses(path.read_text(encoding="utf-8"), node="macros" not in path.relative_to(PROJECT).parts)
    assert not found, f"{path.relative_to(PROJECT)} uses DuckDB-only SQL: " + "; ".join(found)


def test_a_macro_file_is_scanned_whatever_config_it_holds():
    """config() in a macro file does not keep Spark from using its macros."""
    sql = "{% macro m() %}{{ config(enabled=target.type == 'duckdb') }}select * from range(3){% endmacro %}"
    assert duckdb_only_uses(sql, node=False) and duckdb_only_uses(sql) == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # each forbidden spelling is found in a model's SQL ...
        ("select strftime(d, '%Y') from t", "strftime"),
        ("select * from range(1, 6) as q (q)", "range()"),
        ("select arg_max(a, b) from t", "arg_max"),
        ("select date_diff('day', a, b) from t", "date_diff"),
        ("select cast(x as VARCHAR) from t", "varchar"),
        ("select x::date from t", "the :: cast"),
        ("select list_sort(l) from t", "list functions"),
        ("select d + interval 1 month from t", "date arithmetic"),
        ("select timezone('UTC', a) from t", "timezone()"),
        ("unpivot (select k, a, b from t) on a, b into name measure value value", "DuckDB's unpivot"),
        ("select regexp_replace(a, 'x', 'y') from t", "regexp functions"),
        ("select regexp_extract(a, '(\\d+)') from t", "regexp functions"),
        ("select string_split(a, ',') from t", "split into a list"),
        ("select split(a, ',') from t", "split into a list"),
        ("select dayofweek(d) from t", "day-of-week"),
        ("select log(x) from t", "log()"),
        ("select a // 2 from t", "// integer division"),
        ("select cast(a as text) from t", "DuckDB-only types"),
        ("select * from a asof join b on a.t >= b.t", "ASOF"),
        # ... and in a macro that is not dispatched, or in the spark__ version of one
        ("{% macro m() %}select arg_min(a, b){% endmacro %}", "arg_min"),
        ("{% macro spark__m() %}select struct_pack(a := 1){% endmacro %}", "struct_pack"),
        # ... and in a file not limited to DuckDB, or whose DuckDB-only config is in a Jinja comment
        ("{{ config(enabled=target.type != 'duckdb') }}\nselect * from range(3)", "range()"),
        ("{# {{ config(enabled=target.type == 'duckdb') }} #}\nselect * from range(3)", "range()"),
    ],
)
def test_the_scan_finds_duckdb_only_sql(sql, expected):
    assert any(advice.startswith(expected) for advice in duckdb_only_uses(sql)), duckdb_only_uses(sql)


@pytest.mark.parametrize(
    "sql",
    [
        # DuckDB's own version of a dispatched macro may use DuckDB SQL
        "{% macro default__m(a) %}strftime({{ a }}, '%Y'){% endmacro %}",
        "{%- macro duckdb__m() -%}select * from range(3){%- endmacro %}",
        # so may a model or test that only DuckDB builds
        "{{ config(enabled=target.type == 'duckdb') }}\nselect t + interval 1 hour from range(3) as r (t)",
        # comments, Jinja loops and dbt's own macros are not SQL the engine runs
        "-- strftime would be DuckDB-only\nselect 1",
        "{# arg_max(a, b) #}{% for step in range(1, 3) %}select {{ step }}{% endfor %}",
        "select {{ dbt.datediff('a', 'b', 'day') }}, max_by(a, b), cast(x as {{ dbt.type_string() }}) from t",
        "select split_part(a, '#', 2), ln(x), log10(x), a like 'x%' from t",
    ],
)
def test_the_scan_allows_portable_sql(sql):
    assert duckdb_only_uses(sql) == []


def test_seed_column_types_are_portable():
    """Seed column types are spelled so both engines take them (`string`: Spark refuses a bare varchar)."""
    seeds = (PROJECT / "seeds" / "_seeds.yml").read_text(encoding="utf-8")
    assert not re.search(r":\s*varchar\b", seeds, re.I), "seeds/_seeds.yml: write `string`, not `varchar`"
