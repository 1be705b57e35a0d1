{#-
    Schemas are exactly the names set in dbt_project.yml (staging, intermediate, marts, reference),
    not dbt's default <target schema>_<custom schema>: analysts and the publish step rely on them.
    A node with no custom schema lands in the target's schema (main).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
