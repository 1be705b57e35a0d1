{#-
    Disclosure control for the published schema (NHS England / OpenSAFELY rule): a count of people
    or of events about people from 1 to var('disclosure_threshold') (7) is redacted (null); 0 stays
    0; every other count is rounded to the nearest var('disclosure_rounding') (5), halves up
    (12 -> 10, 13 -> 15). Organisational counts (files, rows of a file, sessions) are not about
    people and are published as they are. The unrounded marts feed the published copies; nothing
    reads back from published. In the marts every count is a number (never null).

    Every redactable figure X is published with X_status: 'shown', 'redacted' or 'not_applicable'
    (a rate with no denominator, a median of nothing). A null X is never ambiguous: its status says
    why. The *_with_status macros emit both columns, `X` and `X_status`.
-#}
{% macro disclosure_count(column) -%}
    {%- set threshold = var('disclosure_threshold') -%}
    {%- set rounding = var('disclosure_rounding') -%}
    case
        when {{ column }} is null then null
        when {{ column }} = 0 then cast(0 as bigint)
        when {{ column }} between 1 and {{ threshold }} then null
        else cast(floor(({{ column }} + {{ rounding }} / 2.0) / {{ rounding }}) * {{ rounding }} as bigint)
    end
{%- endmacro %}

{#-
    A count and its status. `redacted` is an extra condition (a secondary suppression decided in
    the marts, see secondary_suppression below); without it only the 1-to-7 rule applies.
-#}
{% macro count_with_status(column, alias=none, redacted=none) -%}
    {%- set name = alias or column -%}
    {%- set redacted_condition = '(' ~ column ~ ' between 1 and ' ~ var('disclosure_threshold') ~ ')'
        ~ (' or coalesce(' ~ redacted ~ ', false)' if redacted else '') -%}
    case when {{ redacted_condition }} then null else {{ disclosure_count(column) }} end as {{ name }},
    case
        when {{ column }} is null then 'not_applicable'
        when {{ redacted_condition }} then 'redacted'
        else 'shown'
    end as {{ name }}_status
{%- endmacro %}

{#-
    A rate (or share) computed from the unrounded numerator and denominator, redacted (null) when
    the denominator is var('disclosure_threshold') (7) or fewer, or unknown, and also when the
    numerator is from 1 to var('disclosure_threshold'): the numerator is a count that is itself
    redacted, and a rate beside its (rounded) denominator would give it back (5 of 65 is 0.077,
    and 0.077 x 63..67 can only be 5). 0 of many stays 0.
-#}
{% macro disclosure_rate(numerator, denominator) -%}
    case
        when {{ denominator }} is null or {{ denominator }} <= {{ var('disclosure_threshold') }} then null
        when {{ numerator }} between 1 and {{ var('disclosure_threshold') }} then null
        else cast({{ numerator }} as double) / {{ denominator }}
    end
{%- endmacro %}

{#-
    A rate and its status: not_applicable when the denominator is 0 (or unknown); redacted by the
    rule above, or when its numerator or denominator was suppressed to stop differencing (a rate
    beside one of its counts gives the other back).
-#}
{% macro rate_with_status(numerator, denominator, alias, redacted=none) -%}
    {%- set redacted_condition = '(' ~ denominator ~ ' <= ' ~ var('disclosure_threshold')
        ~ ' or ' ~ numerator ~ ' between 1 and ' ~ var('disclosure_threshold') ~ ')'
        ~ (' or coalesce(' ~ redacted ~ ', false)' if redacted else '') -%}
    case
        when coalesce({{ denominator }}, 0) = 0 or {{ redacted_condition }} then null
        else cast({{ numerator }} as double) / {{ denominator }}
    end as {{ alias }},
    case
        when coalesce({{ denominator }}, 0) = 0 then 'not_applicable'
        when {{ redacted_condition }} then 'redacted'
        else 'shown'
    end as {{ alias }}_status
{%- endmacro %}

{#-
    A statistic (a median, a mean) of a group, kept as it is when the group has more than
    var('disclosure_threshold') (7) members, else redacted (null).
-#}
{% macro disclosure_statistic(statistic, group_size) -%}
    case
        when {{ group_size }} is null or {{ group_size }} <= {{ var('disclosure_threshold') }} then null
        else {{ statistic }}
    end
{%- endmacro %}

{#- A statistic and its status: not_applicable when the statistic is null with members (or none). -#}
{% macro statistic_with_status(statistic, group_size, alias) -%}
    case
        when {{ group_size }} is null or {{ group_size }} <= {{ var('disclosure_threshold') }} then null
        else {{ statistic }}
    end as {{ alias }},
    case
        when coalesce({{ group_size }}, 0) = 0 or ({{ statistic }} is null
            and {{ group_size }} > {{ var('disclosure_threshold') }}) then 'not_applicable'
        when {{ group_size }} <= {{ var('disclosure_threshold') }} then 'redacted'
        else 'shown'
    end as {{ alias }}_status
{%- endmacro %}

{#-
    Secondary suppression: guards published totals against differencing. `cells` has one row per
    (row_key, measure, value); `relations` one row per (relation_key, row_key, is_total): each
    relation is a total and the parts it is the exact sum of. A relation with exactly one redacted
    non-zero cell would give that cell back (total minus the visible parts), so, pass after pass,
    the smallest shown non-zero part of such a relation (its total when no part is left) is
    redacted too, until no relation has exactly one. Emits CTEs ending in `suppressed`:
    (row_key, measure, value, is_primary, is_redacted). Preceded by `with` and other CTEs.
-#}
{% macro secondary_suppression(cells, relations, passes=12) -%}
    {{ return(adapter.dispatch('secondary_suppression', 'sprx')(cells, relations, passes)) }}
{%- endmacro %}

{% macro default__secondary_suppression(cells, relations, passes=12) -%}
suppression_pass_0 as (

    select
        row_key,
        measure,
        value,
        coalesce(value between 1 and {{ var('disclosure_threshold') }}, false) as is_primary,
        coalesce(value between 1 and {{ var('disclosure_threshold') }}, false) as is_redacted
    from {{ cells }}

),
{% for step in range(1, passes + 1) %}
suppression_offending_{{ step }} as (

    select
        relations.relation_key,
        cells.measure
    from {{ relations }} as relations
    inner join suppression_pass_{{ step - 1 }} as cells
        on relations.row_key = cells.row_key
    group by relations.relation_key, cells.measure
    having count(*) filter (where cells.is_redacted and cells.value > 0) = 1

),

suppression_chosen_{{ step }} as (

    select
        cells.measure,
        min_by(
            cells.row_key,
            {{ ordered_record([
                ('total_last', 'relations.is_total'), ('value', 'cells.value'), ('row_key', 'cells.row_key')
            ]) }}
        ) as row_key
    from suppression_offending_{{ step }} as offending
    inner join {{ relations }} as relations
        on offending.relation_key = relations.relation_key
    inner join suppression_pass_{{ step - 1 }} as cells
        on relations.row_key = cells.row_key
        and offending.measure = cells.measure
    where not cells.is_redacted and cells.value > 0
    group by offending.relation_key, cells.measure

),

suppression_pass_{{ step }} as (

    select
        cells.row_key,
        cells.measure,
        cells.value,
        cells.is_primary,
        cells.is_redacted or chosen.row_key is not null as is_redacted
    from suppression_pass_{{ step - 1 }} as cells
    left join (select distinct row_key, measure from suppression_chosen_{{ step }}) as chosen
        on cells.row_key = chosen.row_key
        and cells.measure = chosen.measure

),
{% endfor %}
suppressed as (

    select * from suppression_pass_{{ passes }}

)
{%- endmacro %}


{#-
    The same passes for Spark, which inlines every CTE where it is used: above, each pass reads the one
    before three times, so twelve passes would plan 3^12 copies of the first. Here each pass reads the
    one before once (the cells joined to their relations, the counts and the first candidate by window
    functions, then one row per cell again), so the plan grows with the passes, not exponentially.
    Same rule, same choice, same result (tests/spark compares the published tables).
-#}
{% macro spark__secondary_suppression(cells, relations, passes=12) -%}
suppression_pass_0 as (

    select
        row_key,
        measure,
        value,
        coalesce(value between 1 and {{ var('disclosure_threshold') }}, false) as is_primary,
        coalesce(value between 1 and {{ var('disclosure_threshold') }}, false) as is_redacted
    from {{ cells }}

),
{% for step in range(1, passes + 1) %}
suppression_ranked_{{ step }} as (

    select
        cells.row_key,
        cells.measure,
        cells.value,
        cells.is_primary,
        cells.is_redacted,
        relations.relation_key,
        count(case when cells.is_redacted and cells.value > 0 then 1 end)
            over (partition by relations.relation_key, cells.measure) as redacted_in_relation,
        min(
            case when not cells.is_redacted and cells.value > 0 then {{ ordered_record([
                ('total_last', 'relations.is_total'), ('value', 'cells.value'), ('row_key', 'cells.row_key')
            ]) }} end
        ) over (partition by relations.relation_key, cells.measure) as first_candidate
    from suppression_pass_{{ step - 1 }} as cells
    left join {{ relations }} as relations
        on cells.row_key = relations.row_key

),

suppression_pass_{{ step }} as (

    select
        row_key,
        measure,
        max(value) as value,
        bool_or(is_primary) as is_primary,
        bool_or(
            is_redacted
            or coalesce(relation_key is not null and redacted_in_relation = 1 and first_candidate.row_key = row_key, false)
        ) as is_redacted
    from suppression_ranked_{{ step }}
    group by row_key, measure

),
{% endfor %}
suppressed as (

    select * from suppression_pass_{{ passes }}

)
{%- endmacro %}
