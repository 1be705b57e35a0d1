-- One row per national social prescribing code (referral or declined) recorded for a patient on a
-- practice list now, from EMIS Web events and SystmOne coded events, with the person it belongs to.
-- Codes of patients no longer registered are left out: a removed registration carries no tokens,
-- so its person is unknown (and the population is the people on a practice list now).

with

emis_events as (

    select * from {{ ref('stg_emis__events') }}

),

systmone_codes as (

    select * from {{ ref('stg_systmone__codes') }}

),

social_prescribing_codes as (

    select * from {{ ref('ref_social_prescribing_codes') }}

),

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

coded_events as (

    select
        'emis:' || event_key as coded_event_key,
        patient_key,
        gp_system,
        practice_code,
        event_date,
        snomed_code,
        age_at_event
    from emis_events
    where snomed_code is not null

    union all

    select
        'systmone:' || code_key as coded_event_key,
        patient_key,
        gp_system,
        practice_code,
        event_date,
        snomed_code,
        cast(null as integer) as age_at_event
    from systmone_codes
    where snomed_code is not null and event_date is not null

),

final as (

    select
        coded_events.coded_event_key,
        gp_patients.person_key,
        coded_events.patient_key,
        coded_events.gp_system,
        coded_events.practice_code,
        coded_events.event_date,
        coded_events.snomed_code,
        social_prescribing_codes.code_role,
        coded_events.age_at_event
    from coded_events
    inner join social_prescribing_codes
        on coded_events.snomed_code = social_prescribing_codes.snomed_code
    inner join gp_patients
        on coded_events.patient_key = gp_patients.patient_key

)

select * from final
