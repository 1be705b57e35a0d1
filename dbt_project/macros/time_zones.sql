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

{#-
    On DuckDB, Europe/London from 1996 by the rule in force since then (Summer Time Order 2002, the EU
    rule): BST, UTC+1, from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
    October. ICU's conversion costs about three times as much (10.3 M SystmOne appointments: 5.1 s
    against 1.6 s, benchmarks/README.md), and the build converts every appointment and call. Earlier
    years, and any other uk_time_zone, go through ICU. The test
    assert_uk_local_time_agrees_with_the_time_zone_database checks the two agree around every change
    of the clocks from 1990 to 2100.
    The last Sunday of a 31-day month falls on day 31 - (weekday of the 31st), Sunday = 0; the 31st's
    weekday is found from the timestamp's own day and weekday, so no date is built per row.
-#}
{% macro duckdb__utc_to_uk_local(utc_timestamp) -%}
    {%- if var("uk_time_zone") != 'Europe/London' -%}
        {{ default__utc_to_uk_local(utc_timestamp) }}
    {%- else -%}
        {%- set ts = '(' ~ utc_timestamp ~ ')' -%}
        {%- set last_sunday = '(31 - (dayofweek(' ~ ts ~ ') + 31 - day(' ~ ts ~ ')) % 7)' -%}
        {%- set past_last_sunday_1am = '(day(' ~ ts ~ ') > ' ~ last_sunday ~ ' or (day(' ~ ts ~ ') = '
            ~ last_sunday ~ ' and hour(' ~ ts ~ ') >= 1))' -%}
        case
            when year({{ ts }}) >= 1996
                then {{ ts }} + to_hours(cast(
                    month({{ ts }}) between 4 and 9
                    or (month({{ ts }}) = 3 and {{ past_last_sunday_1am }})
                    or (month({{ ts }}) = 10 and not {{ past_last_sunday_1am }})
                as integer))
            else {{ default__utc_to_uk_local(utc_timestamp) }}
        end
    {%- endif -%}
{%- endmacro %}

{% macro spark__utc_to_uk_local(utc_timestamp) -%}
    from_utc_timestamp({{ utc_timestamp }}, '{{ var("uk_time_zone") }}')
{%- endmacro %}
