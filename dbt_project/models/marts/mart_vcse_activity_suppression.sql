-- One row per row of mart_vcse_activity_periods: which of its additive counts of events about
-- people (attendances, did-not-attend rows, register rows) the published copy redacts, by the
-- 1-to-7 rule or by secondary suppression (macros/disclosure_control.sql). The relations: all
-- services and each service, a quarter and its months, a financial year and its quarters, and in
-- every row register rows = attendances + did-not-attend rows. Only totals of existing published
-- rows count: a relation whose total is not published (an incomplete quarter) is not a relation.

with

activity as (

    select * from {{ ref('mart_vcse_activity_periods') }}

),

measures as (

    -- one row per count that has a value (an unpivot, written as a union so that every engine runs it)
    select
        service_period_key,
        service_total_key,
        period_total_key,
        'attendances' as measure,
        attendances as value
    from activity
    where attendances is not null
    union all
    select
        service_period_key,
        service_total_key,
        period_total_key,
        'did_not_attend_rows' as measure,
        did_not_attend_rows as value
    from activity
    where did_not_attend_rows is not null
    union all
    select
        service_period_key,
        service_total_key,
        period_total_key,
        'register_rows' as measure,
        register_rows as value
    from activity
    where register_rows is not null

),

-- One cell per row and measure; the macro's measure column is constant.
cells as (

    select
        service_period_key || '#' || measure as row_key,
        'count' as measure,
        value
    from measures

),

published_keys as (

    select service_period_key from activity

),

parts as (

    select
        'service:' || service_total_key || '#' || measure as relation_key,
        service_total_key || '#' || measure as total_key,
        service_period_key || '#' || measure as row_key
    from measures
    where service_total_key in (select published_keys.service_period_key from published_keys)
    union all
    select
        'period:' || period_total_key || '#' || measure as relation_key,
        period_total_key || '#' || measure as total_key,
        service_period_key || '#' || measure as row_key
    from measures
    where period_total_key in (select published_keys.service_period_key from published_keys)
    union all
    select
        'register:' || service_period_key as relation_key,
        service_period_key || '#register_rows' as total_key,
        service_period_key || '#' || measure as row_key
    from measures
    where measure != 'register_rows'

),

relations as (

    select
        relation_key,
        row_key,
        false as is_total
    from parts
    union
    select distinct
        relation_key,
        total_key as row_key,
        true as is_total
    from parts

),

{{ secondary_suppression('cells', 'relations') }},

final as (

    select
        split_part(row_key, '#', 1) as service_period_key,
        bool_or(is_redacted) filter (where split_part(row_key, '#', 2) = 'attendances') as attendances_redacted,
        bool_or(is_redacted) filter (where split_part(row_key, '#', 2) = 'did_not_attend_rows')
            as did_not_attend_rows_redacted,
        bool_or(is_redacted) filter (where split_part(row_key, '#', 2) = 'register_rows') as register_rows_redacted,
        count(*) filter (where is_redacted and not is_primary) as secondary_suppressions
    from suppressed
    group by split_part(row_key, '#', 1)

)

select * from final
