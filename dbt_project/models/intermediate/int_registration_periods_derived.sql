-- One row per registered person x outcome (gp_consultations, calls_999, see_and_convey): the
-- period over which the warehouse observes that outcome for the person. The warehouse holds
-- current GP snapshots only, so registration start dates are not known; the observed period is the
-- span the feeds cover, for a person on a practice list at the extract date:
--   GP consultations: EMIS Web, from the extract date less emis_history_months (36) to the
--     extract date. SystmOne (a delta feed: a record unchanged since an earlier extract is still
--     current), to the practice's latest loaded extract date, from the practice's earliest loaded
--     extract, or from the practice's earliest SystmOne appointment when that is earlier: the
--     first delta extract carries the practice's back history, which the earliest extract date
--     alone would throw away.
--   999 calls and see-and-convey: from the first loaded ambulance file's extract date less
--     ambulance_file_coverage_days (28) to the last loaded file's extract date.
-- A person with several GP records takes the record int_people_linked chose.

with

people as (

    select * from {{ ref('int_people_linked') }}

),

file_loads as (

    select * from {{ ref('stg_audit__file_loads') }}

),

activity_events as (

    select * from {{ ref('int_activity_events_unioned') }}

),

systmone_history as (

    select
        practice_code,
        min(event_date) as first_event_date
    from activity_events
    where source = 'systmone' and event_type = 'gp_consultation'
    group by practice_code

),

systmone_coverage as (

    select
        organisation_code as practice_code,
        min(extract_date) as first_extract_date,
        max(extract_date) as last_extract_date
    from file_loads
    where source = 'systmone' and is_loaded
    group by organisation_code

),

ambulance_coverage as (

    select
        cast(
            {{ dbt.dateadd('day', -var('ambulance_file_coverage_days'), 'min(extract_date)') }} as date
        ) as observed_from_date,
        max(extract_date) as observed_to_date
    from file_loads
    where source = 'ambulance' and is_loaded

),

gp_periods as (

    select
        people.person_key,
        'gp_consultations' as outcome,
        case
            when people.gp_system = 'emis'
                then cast({{ dbt.dateadd('month', -var('emis_history_months'), 'people.extract_date') }} as date)
            else
                least(
                    coalesce(systmone_coverage.first_extract_date, people.extract_date),
                    coalesce(systmone_history.first_event_date, people.extract_date)
                )
        end as observed_from_date,
        case
            when people.gp_system = 'emis' then people.extract_date
            else greatest(people.extract_date, coalesce(systmone_coverage.last_extract_date, people.extract_date))
        end as observed_to_date
    from people
    left join systmone_coverage
        on people.practice_code = systmone_coverage.practice_code
    left join systmone_history
        on people.practice_code = systmone_history.practice_code
    where people.is_registered

),

ambulance_periods as (

    select
        people.person_key,
        outcomes.outcome,
        ambulance_coverage.observed_from_date,
        ambulance_coverage.observed_to_date
    from people
    cross join ambulance_coverage
    cross join (values ('calls_999'), ('see_and_convey')) as outcomes (outcome)
    where people.is_registered

),

unioned as (

    select * from gp_periods
    union all
    select * from ambulance_periods

),

final as (

    select
        person_key || ':' || outcome as registration_period_key,
        person_key,
        outcome,
        observed_from_date,
        observed_to_date
    from unioned

)

select * from final
