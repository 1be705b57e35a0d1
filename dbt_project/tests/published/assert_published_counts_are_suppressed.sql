-- Every integer (count) column of every published model is 0, null (redacted) or a multiple of 5
-- of 10 or more: returns the rows that break disclosure control (a value from 1 to 7, or one not a
-- multiple of var('disclosure_rounding')). Integer columns whose description starts
-- "Organisational count (not redacted)" or "Not a count" are left out (files, rows, sessions, ids,
-- days: see models/published/_published__models.yml); every other integer is scanned. The columns
-- are read from the built relations, so a count added to a published model is scanned without
-- editing this test. The models are listed with ref() so that dbt build runs this test after all
-- of them; a published model missing from the list (any model of models/published/ in the graph)
-- fails the test with an error naming it,
-- so none escapes the scan (tests/dbt/test_marts.py checks every table of the schema too).

{%- set published_models = [
    ref('pub_referral_funnel'),
    ref('pub_referral_funnel_by_group'),
    ref('pub_frequent_callers_monthly'),
    ref('pub_vcse_activity'),
    ref('pub_vcse_wellbeing_by_service'),
    ref('pub_data_quality'),
    ref('pub_data_quality_reasons'),
    ref('pub_data_quality_coding'),
    ref('pub_outcomes_by_deprivation'),
    ref('pub_covariate_balance'),
    ref('pub_event_study'),
    ref('pub_effect_sensitivity'),
    ref('pub_practices'),
    ref('pub_feed_freshness'),
    ref('data_coverage'),
] %}
{%- set not_redacted_prefixes = ('Organisational count (not redacted)', 'Not a count') %}
{%- set integer_types = [
    'tinyint', 'smallint', 'integer', 'bigint', 'hugeint', 'int', 'int4', 'int8', 'ubigint', 'uinteger'
] %}

{%- set checks = [] %}
{%- if execute %}
    {%- set listed = published_models | map(attribute='identifier') | list %}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.package_name == project_name and 'published' in node.fqn %}
        {%- if node.alias not in listed %}
            {%- do exceptions.raise_compiler_error(
                'published model ' ~ node.name ~ ' is not scanned: add it to published_models in '
                ~ 'tests/published/assert_published_counts_are_suppressed.sql') %}
        {%- endif %}
    {%- endfor %}
    {%- for relation in published_models %}
        {%- set described = {} %}
        {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.alias == relation.identifier %}
            {%- for name, column in node.columns.items() %}
                {%- do described.update({name: column.description or ''}) %}
            {%- endfor %}
        {%- endfor %}
        {%- for column in adapter.get_columns_in_relation(relation) %}
            {%- if column.dtype | lower in integer_types
                and not (described.get(column.name, '')).startswith(not_redacted_prefixes) %}
                {%- do checks.append((relation, column.name)) %}
            {%- endif %}
        {%- endfor %}
    {%- endfor %}
{%- endif %}

{%- if checks | length == 0 %}
    select
        null as published_model,
        null as count_column,
        null as count_value
    where false
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
