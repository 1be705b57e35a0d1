{#-
    Run at the start of every dbt build (on-run-start in dbt_project.yml): records in
    audit.duckdb_settings the memory limit, threads and spill folder that dbt's own DuckDB connection
    runs with, so that SPRX_DUCKDB_MEMORY_LIMIT reaching the build can be checked. The table is
    created with the raw and audit schemas by the pipeline (flows/warehouse.py), before any build.
-#}
{% macro record_duckdb_settings() -%}
    insert or replace into audit.duckdb_settings
    select 'build', current_setting('memory_limit'), current_setting('threads'),
           current_setting('temp_directory'), now() at time zone 'UTC'
{%- endmacro %}
