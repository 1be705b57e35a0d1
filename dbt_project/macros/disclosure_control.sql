{#-
    Disclosure control for the published schema (NHS England / OpenSAFELY rule): a count of people
    or events from 1 to var('disclosure_threshold') (7) is redacted (null); 0 stays 0; every other
    count is rounded to the nearest var('disclosure_rounding') (5), halves up (12 -> 10, 13 -> 15).
    The unrounded marts feed the published copies; nothing reads back from published.
    In the marts every count is a number (never null), so in a published model null means redacted.
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
    A statistic (a median, a mean) of a group, kept as it is when the group has more than
    var('disclosure_threshold') (7) members, else redacted (null).
-#}
{% macro disclosure_statistic(statistic, group_size) -%}
    case
        when {{ group_size }} is null or {{ group_size }} <= {{ var('disclosure_threshold') }} then null
        else {{ statistic }}
    end
{%- endmacro %}
