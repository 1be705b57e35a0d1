-- One row per VCSE service (and for all services together) and reporting period (month; calendar
-- quarter and NHS financial year when the sheets cover them whole): sessions held, attendances,
-- did-not-attend rows, register rows, distinct attendees and how many had been referred, and the
-- change in wellbeing score (first to last scored attendance in the period) where sheets carry
-- scores. Unrounded. Every service has a row for every period, zeros included, so that totals are
-- exact sums of their parts: all services of each service, a quarter of its months, a financial
-- year of its quarters, register rows of attendances and did-not-attend rows.

with

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

referrals as (

    select * from {{ ref('fct_referrals') }}

),

first_referrals as (

    select
        person_key,
        min(referral_date) as first_referral_date
    from referrals
    group by person_key

),

coverage as (

    select
        cast(date_trunc('month', min(session_date)) as date) as first_month,
        cast(date_trunc('month', max(session_date)) as date) as last_month,
        max(session_date) as last_covered_date
    from vcse_attendances

),

months as (

    select cast(month_series.month_start as date) as month_start
    from
        {{ month_series(
            '(select first_month from coverage)', '(select last_month from coverage)', 'month_series', 'month_start'
        ) }}

),

month_periods as (

    {{ month_periods('months', 'month_start') }}

),

periods as (

    select distinct
        month_periods.period_type,
        month_periods.period_start,
        month_periods.period_end,
        month_periods.period_label,
        coalesce(
            month_periods.period_start >= coverage.first_month
            and month_periods.period_end <= coverage.last_covered_date,
            false
        ) as is_complete_period,
        cast(
            cast({{ dbt.date_trunc('quarter', 'month_periods.period_start') }} as date) as {{ dbt.type_string() }}
        ) as quarter_day,
        cast(
            make_date(
                year(month_periods.period_start) - (case when month(month_periods.period_start) < 4 then 1 else 0 end),
                4,
                1
            )
            as {{ dbt.type_string() }}
        ) as financial_year_day
    from month_periods
    cross join coverage
    where month_periods.period_type = 'month'
        or (
            month_periods.period_start >= coverage.first_month
            and month_periods.period_end <= coverage.last_covered_date
        )

),

-- Each row is counted under its own service and under all services together.
scopes as (

    select 'own' as scope
    union all
    select 'all' as scope

),

-- Each register row with its month and person (the linked person, else the attendee as the
-- sheet names them), under its own service and under all services.
attendances_described as (

    select
        case when scopes.scope = 'all' then 'all' else vcse_attendances.service_id end as service_id,
        cast(date_trunc('month', vcse_attendances.session_date) as date) as session_month,
        vcse_attendances.service_id as own_service_id,
        vcse_attendances.session_date,
        vcse_attendances.activity_key,
        vcse_attendances.is_attended,
        vcse_attendances.is_did_not_attend,
        vcse_attendances.wellbeing_score,
        coalesce(
            feed_records.person_key,
            'attendee:' || vcse_attendances.service_id || ':' || vcse_attendances.attendee_key
        ) as attendee_person_key,
        (
            first_referrals.first_referral_date is not null
            and first_referrals.first_referral_date <= vcse_attendances.session_date
        ) as is_referred_by_session
    from vcse_attendances
    cross join scopes
    left join feed_records
        on feed_records.feed = 'vcse'
        and vcse_attendances.attendance_key = feed_records.record_key
    left join first_referrals
        on feed_records.person_key = first_referrals.person_key

),

in_periods as (

    select
        attendances_described.*,
        month_periods.period_type,
        month_periods.period_start
    from attendances_described
    inner join month_periods
        on attendances_described.session_month = month_periods.month_start

),

activity as (

    select
        service_id,
        period_type,
        period_start,
        -- a distinct triple: the brackets make a row value (sqlfluff takes them for grouping)
        count(distinct (own_service_id, session_date, activity_key)) as sessions,  -- noqa: LT01, LT06, ST08
        count(*) filter (where is_attended) as attendances,
        count(*) filter (where is_did_not_attend) as did_not_attend_rows,
        count(*) as register_rows,
        count(distinct attendee_person_key) filter (where is_attended) as unique_attendees,
        count(distinct attendee_person_key) filter (where is_attended and is_referred_by_session)
            as unique_attendees_referred
    from in_periods
    group by all

),

-- Wellbeing: each person's first and last scored attendance at a service in the period.
scored as (

    select
        service_id,
        period_type,
        period_start,
        own_service_id,
        attendee_person_key,
        min_by(wellbeing_score, session_date) as first_score,
        max_by(wellbeing_score, session_date) as last_score,
        count(distinct session_date) as scored_sessions
    from in_periods
    where is_attended and wellbeing_score is not null
    group by all

),

wellbeing as (

    select
        service_id,
        period_type,
        period_start,
        count(*) as people_with_wellbeing_change,
        avg(first_score) as mean_first_wellbeing_score,
        avg(last_score) as mean_last_wellbeing_score,
        avg(last_score - first_score) as mean_wellbeing_change
    from scored
    where scored_sessions >= 2
    group by all

),

services as (

    select distinct service_id from vcse_attendances
    union all
    select 'all' as service_id

),

final as (

    select
        services.service_id || ':' || periods.period_type || ':'
        || cast(periods.period_start as {{ dbt.type_string() }}) as service_period_key,
        services.service_id,
        periods.period_type,
        periods.period_start,
        periods.period_end,
        periods.period_label,
        periods.is_complete_period,
        cast(coalesce(activity.sessions, 0) as bigint) as sessions,
        cast(coalesce(activity.attendances, 0) as bigint) as attendances,
        cast(coalesce(activity.did_not_attend_rows, 0) as bigint) as did_not_attend_rows,
        cast(coalesce(activity.register_rows, 0) as bigint) as register_rows,
        cast(coalesce(activity.unique_attendees, 0) as bigint) as unique_attendees,
        cast(coalesce(activity.unique_attendees_referred, 0) as bigint) as unique_attendees_referred,
        cast(coalesce(wellbeing.people_with_wellbeing_change, 0) as bigint) as people_with_wellbeing_change,
        wellbeing.mean_first_wellbeing_score,
        wellbeing.mean_last_wellbeing_score,
        wellbeing.mean_wellbeing_change,
        case
            when services.service_id != 'all'
                then 'all:' || periods.period_type || ':' || cast(periods.period_start as {{ dbt.type_string() }})
        end as service_total_key,
        case
            when periods.period_type = 'month'
                then services.service_id || ':quarter:' || periods.quarter_day
            when periods.period_type = 'quarter'
                then services.service_id || ':financial_year:' || periods.financial_year_day
        end as period_total_key
    from services
    cross join periods
    left join activity
        on services.service_id = activity.service_id
        and periods.period_type = activity.period_type
        and periods.period_start = activity.period_start
    left join wellbeing
        on services.service_id = wellbeing.service_id
        and periods.period_type = wellbeing.period_type
        and periods.period_start = wellbeing.period_start

)

select * from final
