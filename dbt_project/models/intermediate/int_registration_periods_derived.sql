-- One row per registered person x outcome (gp_consultations, calls_999, see_and_convey): the
-- period over which the warehouse observes that outcome for the person. The warehouse holds
-- current GP snapshots only, so registration start dates are not known; the observed period is the
-- span the feeds cover, for a person on a practice list at the extract date:
--   GP consultations: from the practice's earliest GP consultation in the warehouse (an EMIS Web
--     report carries its report period, 36 to 60 months; the first SystmOne delta carries the back
--     history) to the practice's latest extract date (EMIS: the snapshot's; SystmOne: the latest
--     loaded delta, a record unchanged since an earlier delta being still current).
--   999 calls and see-and-convey: the ambulance feed's true coverage. Each file holds the calls of
--     the ambulance_file_coverage_days (28) days before its extract date, so the feed covers
--     [first file's extract date - 28 days, last file's extract date - 1 day].
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

practice_history as (

    select
        practice_code,
        min(event_date) as first_event_date
    from activity_events
    where event_type = 'gp_consultation'
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
        cast({{ dbt.dateadd('day', -1, 'max(extract_date)') }} as date) as observed_to_date
    from file_loads
    where source = 'ambulance' and is_loaded

),

gp_periods as (

    select
        people.person_key,
        'gp_consultations' as outcome,
        case
            when people.gp_system = 'emis'
                then coalesce(
                        practice_history.first_event_date,
                        cast({{ dbt.dateadd('month', -var('emis_history_months'), 'people.extract_date') }} as date)
                    )
            else
                least(
                    coalesce(systmone_coverage.first_extract_date, people.extract_date),
                    coalesce(practice_history.first_event_date, people.extract_date)
                )
        end as observed_from_date,
        case
            when people.gp_system = 'emis' then people.extract_date
            else greatest(people.extract_date, coalesce(systmone_coverage.last_extract_date, people.extract_date))
        end as observed_to_date
    from people
    left join systmone_coverage
        on people.practice_code = systmone_coverage.practice_code
    left join practice_history
        on people.practice_code = practice_history.practice_code
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
