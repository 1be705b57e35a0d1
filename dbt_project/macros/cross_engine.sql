{#-
    Where DuckDB and Spark SQL differ, and dbt's own cross-database macros (dbt.type_string,
    dbt.datediff, dbt.dateadd, dbt.date_trunc ...) do not cover it, the difference lives here, once,
    behind adapter.dispatch: `default__` is DuckDB (the pipeline's engine), `spark__` is Apache Spark
    (local session mode and Databricks, whose adapter falls back to spark__). Models call these and
    never fork. tests/dbt/test_portable_sql.py fails when a DuckDB-only function appears outside
    this folder.
-#}

{#- A naive UTC timestamp (raw's convention) as an instant in time: DuckDB's TIMESTAMPTZ; Spark's
    TIMESTAMP already is one (the session time zone is UTC). -#}
{% macro utc_instant(utc_timestamp) -%}
    {{ return(adapter.dispatch('utc_instant', 'sprx')(utc_timestamp)) }}
{%- endmacro %}

{% macro default__utc_instant(utc_timestamp) -%}
    timezone('UTC', {{ utc_timestamp }})
{%- endmacro %}

{% macro spark__utc_instant(utc_timestamp) -%}
    cast({{ utc_timestamp }} as timestamp)
{%- endmacro %}

{#- Whole years from one date to another (an age): a birthday not yet reached does not count. From a
    later date to an earlier one the years are negative, whole years towards zero (DuckDB's date_sub:
    from 31 October back to 9 February of that year is 0 years, not -1), as the models use it to move
    an age known on the extract date back to an earlier date. -#}
{% macro whole_years_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('whole_years_between', 'sprx')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__whole_years_between(start_date, end_date) -%}
    date_sub('year', {{ start_date }}, {{ end_date }})
{%- endmacro %}

{% macro spark__whole_years_between(start_date, end_date) -%}
    {#- months_between counts whole months as DuckDB does (the last day of a month to the last day of
        another is whole); a cast to bigint truncates towards zero as date_sub does -#}
    cast(months_between({{ end_date }}, {{ start_date }}, false) / 12 as bigint)
{%- endmacro %}

{#- The first day of every month from first_month to last_month (both the first of a month, both
    included), as a from-clause item `alias (column)`. -#}
{% macro month_series(first_month, last_month, alias, column) -%}
    {{ return(adapter.dispatch('month_series', 'sprx')(first_month, last_month, alias, column)) }}
{%- endmacro %}

{% macro default__month_series(first_month, last_month, alias, column) -%}
    range({{ first_month }}, {{ last_month }} + interval 1 month, interval 1 month) as {{ alias }} ({{ column }})
{%- endmacro %}

{% macro spark__month_series(first_month, last_month, alias, column) -%}
    (
        select explode(sequence({{ first_month }}, {{ last_month }}, interval 1 month)) as {{ column }}
    ) as {{ alias }}
{%- endmacro %}

{#- A record of named values that orders field by field (to pick a row by a composite ordering with
    min_by / max_by). `fields` is a list of (name, expression) pairs. -#}
{% macro ordered_record(fields) -%}
    {{ return(adapter.dispatch('ordered_record', 'sprx')(fields)) }}
{%- endmacro %}

{% macro default__ordered_record(fields) -%}
    struct_pack({% for name, expression in fields %}{{ name }} := {{ expression }}{{ ", " if not loop.last }}{% endfor %})
{%- endmacro %}

{% macro spark__ordered_record(fields) -%}
    named_struct({% for name, expression in fields %}'{{ name }}', {{ expression }}{{ ", " if not loop.last }}{% endfor %})
{%- endmacro %}

{#-
    How the two incremental staging models apply new rows. DuckDB: delete+insert by unique key, the
    build reading only rows from files loaded since the last build. Databricks (Delta tables): merge
    by unique key, the same way. Local Spark writes plain Parquet tables, which can neither merge nor
    delete, so there `insert_overwrite` rewrites the table whole from raw on every build
    (incremental_reads_new_files() is then false): slower, never wrong.
-#}
{% macro incremental_strategy() -%}
    {{ return(adapter.dispatch('incremental_strategy', 'sprx')()) }}
{%- endmacro %}

{% macro default__incremental_strategy() -%}
    {{ return('delete+insert') }}
{%- endmacro %}

{% macro spark__incremental_strategy() -%}
    {{ return('insert_overwrite') }}
{%- endmacro %}

{% macro databricks__incremental_strategy() -%}
    {{ return('merge') }}
{%- endmacro %}

{#- True when this build of an incremental model may read only the rows of newly loaded files. -#}
{% macro incremental_reads_new_files() -%}
    {{ return(is_incremental() and incremental_strategy() != 'insert_overwrite') }}
{%- endmacro %}

{#- The post-hook that drops rows no longer in raw (a delete), where the table can delete: empty
    where the build rewrites the table whole. -#}
{% macro delete_rows_gone_from_raw(delete_statement) -%}
    {{ return('' if incremental_strategy() == 'insert_overwrite' else delete_statement) }}
{%- endmacro %}
