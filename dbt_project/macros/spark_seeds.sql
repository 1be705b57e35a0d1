{#-
    Seeds on Spark. dbt-spark's own loader (1.11) inserts batches of VALUES rows through its
    session-mode cursor, which formats every value as Python text: an empty cell arrives as the text
    'None' instead of null, and a quote inside a value ("ST. MARY'S SURGERY") breaks the insert; and
    Spark's parser takes minutes over a 10,000-row VALUES statement. Here Spark reads the seed's CSV
    file itself (every column as text, an empty cell as null) and inserts it cast to the seed's column
    types: the same table, in seconds. Local Spark only (the file is on this machine); dbt-databricks
    loads seeds its own way.
-#}
{% macro spark__load_csv_rows(model, agate_table) %}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set csv_path = model['root_path'] ~ '/' ~ model['original_file_path'] -%}
    {%- set view_name = 'sprx_seed_' ~ model['name'] -%}
    {%- do adapter.add_query(
        "create or replace temporary view " ~ view_name ~ " using csv options (path '" ~ csv_path
        ~ "', header 'true', inferSchema 'false', encoding 'UTF-8', multiLine 'true', escape '\"')",
        abridge_sql_log=True
    ) -%}
    {%- set sql -%}
        insert into {{ this.render() }}
        select
        {%- for col_name in agate_table.column_names %}
            cast(`{{ col_name }}` as {{ column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) }})
            {{- "," if not loop.last }}
        {%- endfor %}
        from {{ view_name }}
    {%- endset -%}
    {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
    {{ return(sql) }}
{% endmacro %}
