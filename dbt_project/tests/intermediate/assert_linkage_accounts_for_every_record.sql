-- Invariant: linkage keeps every record. The outcomes summary counts, per source, exactly the
-- current GP patient records, ambulance incidents and VCSE register rows of staging; and every
-- feed record with an NHS number token is linked at tier 1 to the person that token names.
-- Returns one row per source and problem found.

with

linkage_outcomes as (

    select * from {{ ref('int_linkage_outcomes_summarised') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

ambulance_incidents as (

    select * from {{ ref('stg_ambulance__incidents') }}

),

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

staged_records as (

    select
        'gp' as source,
        patient_key as record_key
    from {{ ref('stg_emis__patients') }}
    union all
    select
        'gp' as source,
        patient_key as record_key
    from {{ ref('stg_systmone__patients') }}
    union all
    select
        'ambulance' as source,
        incident_key as record_key
    from ambulance_incidents
    union all
    select
        'vcse' as source,
        attendance_key as record_key
    from vcse_attendances

),

staged_per_source as (

    select
        source,
        count(*) as staged_record_count
    from staged_records
    group by source

),

summarised_per_source as (

    select
        source,
        sum(record_count) as summarised_record_count
    from linkage_outcomes
    group by source

),

counts_disagreeing as (

    select
        coalesce(staged_per_source.source, summarised_per_source.source) as source,
        'the summary does not count every staged record once' as problem
    from staged_per_source
    full outer join summarised_per_source
        on staged_per_source.source = summarised_per_source.source
    where coalesce(staged_per_source.staged_record_count, 0)
        != coalesce(summarised_per_source.summarised_record_count, 0)

),

feed_nhs_number_tokens as (

    select
        'ambulance' as feed,
        incident_key as record_key,
        nhs_number_token
    from ambulance_incidents
    where nhs_number_token is not null

    union all

    select
        'vcse' as feed,
        attendance_key as record_key,
        nhs_number_token
    from vcse_attendances
    where nhs_number_token is not null

),

numbered_records_not_at_tier_1 as (

    select distinct
        feed_nhs_number_tokens.feed as source,
        'a record with an NHS number token is not linked at tier 1 to it' as problem
    from feed_nhs_number_tokens
    left join feed_records
        on feed_nhs_number_tokens.feed = feed_records.feed
        and feed_nhs_number_tokens.record_key = feed_records.record_key
    where feed_records.link_tier is distinct from 1
        or feed_records.person_key is distinct from feed_nhs_number_tokens.nhs_number_token

)

select * from counts_disagreeing
union all
select * from numbered_records_not_at_tier_1
