{#-
    Reporting periods of a month (a date, the month's first day): the month itself, its calendar
    quarter and its NHS financial year (1 April to 31 March). Each row: period_type, period_start,
    period_end (the period's last day), period_label. Used by the period marts so that a quarter is
    exactly the sum of its months and a financial year of its quarters.
-#}
{% macro month_periods(relation, month_column) -%}
    select
        {{ month_column }} as month_start,
        'month' as period_type,
        {{ month_column }} as period_start,
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('month', 1, month_column)) }} as date) as period_end,
        substr(cast({{ month_column }} as {{ dbt.type_string() }}), 1, 7) as period_label
    from {{ relation }}
    union all
    select
        {{ month_column }} as month_start,
        'quarter' as period_type,
        cast({{ dbt.date_trunc('quarter', month_column) }} as date) as period_start,
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('month', 3, dbt.date_trunc('quarter', month_column))) }} as date)
            as period_end,
        cast(year({{ month_column }}) as {{ dbt.type_string() }}) || ' Q' || cast(quarter({{ month_column }}) as {{ dbt.type_string() }}) as period_label
    from {{ relation }}
    union all
    select
        {{ month_column }} as month_start,
        'financial_year' as period_type,
        make_date(year({{ month_column }}) - (case when month({{ month_column }}) < 4 then 1 else 0 end), 4, 1)
            as period_start,
        make_date(year({{ month_column }}) - (case when month({{ month_column }}) < 4 then 1 else 0 end) + 1, 3, 31)
            as period_end,
        cast(year({{ month_column }}) - (case when month({{ month_column }}) < 4 then 1 else 0 end) as {{ dbt.type_string() }})
        || '/' || right(
            cast(year({{ month_column }}) - (case when month({{ month_column }}) < 4 then 1 else 0 end) + 1 as {{ dbt.type_string() }}), 2
        ) as period_label
    from {{ relation }}
{%- endmacro %}
