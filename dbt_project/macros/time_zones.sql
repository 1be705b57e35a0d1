{#-
    Raw stores times in UTC (naive timestamps). People count days in UK local time: a call at
    23:30 UTC on 12 October is a call on 13 October to the crew and to the caller's GP.
    utc_to_uk_local turns a naive UTC timestamp into the naive UK local timestamp (GMT or BST as the
    date requires); the time zone is the var uk_time_zone.
-#}
{% macro utc_to_uk_local(utc_timestamp) -%}
    {{ return(adapter.dispatch('utc_to_uk_local', 'sprx')(utc_timestamp)) }}
{%- endmacro %}

{% macro default__utc_to_uk_local(utc_timestamp) -%}
    (({{ utc_timestamp }}) at time zone 'UTC') at time zone '{{ var("uk_time_zone") }}'
{%- endmacro %}

{% macro spark__utc_to_uk_local(utc_timestamp) -%}
    from_utc_timestamp({{ utc_timestamp }}, '{{ var("uk_time_zone") }}')
{%- endmacro %}
