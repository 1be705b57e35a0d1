{#-
    Where the build finds the raw zone and the audit tables (the dbt sources `raw` and `audit`).
    DuckDB: they are tables of the pipeline's own warehouse, written by the ingest: nothing to do.
    Apache Spark (the `spark` target, session mode or a Thrift server): they are the Parquet datasets written by
    `sprx export --raw` under var raw_parquet_dir (default $SPRX_HOME/export/raw/<schema>/<table>/);
    each is registered at run start as an external table over its folder (dropping one drops no file),
    so every dbt command, in any process, reads the latest export.
    Databricks: the ingest writes them as Delta tables in Unity Catalog; nothing to do.
    Called by on-run-start in dbt_project.yml.
-#}
{% macro register_raw_zone() -%}
    {{ return(adapter.dispatch('register_raw_zone', 'sprx')()) }}
{%- endmacro %}

{% macro default__register_raw_zone() -%}
{%- endmacro %}

{% macro databricks__register_raw_zone() -%}
{%- endmacro %}

{% macro spark__register_raw_zone() -%}
    {%- if execute -%}
        {%- set root = var('raw_parquet_dir', env_var('SPRX_HOME', '../data') ~ '/export/raw') -%}
        {%- set schemas = [] -%}
        {%- for source_node in graph.sources.values() if source_node.source_name in ('raw', 'audit') -%}
            {%- if source_node.schema not in schemas -%}
                {%- do run_query('create database if not exists ' ~ source_node.schema) -%}
                {%- do schemas.append(source_node.schema) -%}
            {%- endif -%}
            {%- set table = source_node.schema ~ '.' ~ source_node.identifier -%}
            {%- do run_query('drop table if exists ' ~ table) -%}
            {%- do run_query(
                "create table " ~ table ~ " using parquet location '"
                ~ root ~ "/" ~ source_node.schema ~ "/" ~ source_node.identifier ~ "'"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
