-- Every integer (count) column of every published model is 0, null (redacted) or a multiple of 5
-- of 10 or more: returns the rows that break disclosure control (a value from 1 to 7, or one not a
-- multiple of var('disclosure_rounding')). The columns are read from the built relations, so a
-- count added to a published model is scanned without editing this test; a new published model
-- must be added to the list (tests/dbt/test_marts.py checks every table of the schema too).

{%- set published_models = [
    ref('pub_referral_funnel_monthly'),
    ref('pub_frequent_callers_monthly'),
    ref('pub_vcse_activity_monthly'),
    ref('pub_data_quality'),
    ref('pub_data_quality_reasons'),
    ref('pub_data_quality_coding'),
] %}
{%- set integer_types = ['tinyint', 'smallint', 'integer', 'bigint', 'hugeint', 'int', 'int4', 'int8', 'ubigint', 'uinteger'] %}

{%- set checks = [] %}
{%- if execute %}
    {%- for relation in published_models %}
        {%- for column in adapter.get_columns_in_relation(relation) %}
            {%- if column.dtype | lower in integer_types and column.name not in ['file_id'] %}
                {%- do checks.append((relation, column.name)) %}
            {%- endif %}
        {%- endfor %}
    {%- endfor %}
{%- endif %}

{%- if checks | length == 0 %}
select null as published_model, null as count_column, null as count_value where false
{%- else %}
{%- for relation, column_name in checks %}
select
    '{{ relation.identifier }}' as published_model,
    '{{ column_name }}' as count_column,
    cast({{ adapter.quote(column_name) }} as bigint) as count_value
from {{ relation }}
where {{ adapter.quote(column_name) }} between 1 and {{ var('disclosure_threshold') }}
    or {{ adapter.quote(column_name) }} % {{ var('disclosure_rounding') }} != 0
{% if not loop.last %}union all{% endif %}
{%- endfor %}
{%- endif %}
