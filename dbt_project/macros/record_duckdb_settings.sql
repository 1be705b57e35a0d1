{#-
    Run at the start of every dbt command (on-run-start in dbt_project.yml). On DuckDB a build records in
    audit.duckdb_settings the memory limit, threads and spill folder that dbt's own DuckDB connection
    runs with, so that SPRX_DUCKDB_MEMORY_LIMIT reaching the build can be checked (the table is created
    with the raw and audit schemas by the pipeline, flows/warehouse.py, before any build). Other engines
    have no such settings: nothing.
-#}
{% macro record_duckdb_settings() -%}
    {{ return(adapter.dispatch('record_duckdb_settings', 'sprx')()) }}
{%- endmacro %}

{% macro default__record_duckdb_settings() -%}
{%- endmacro %}

{% macro duckdb__record_duckdb_settings() -%}
    {%- if flags.WHICH in ('build', 'run') %}
    insert or replace into audit.duckdb_settings
    select 'build', current_setting('memory_limit'), current_setting('threads'),
           current_setting('temp_directory'), now() at time zone 'UTC'
    {%- endif %}
{%- endmacro %}
