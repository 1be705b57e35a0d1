-- One row per activity event of the outcome measures, across sources: GP consultations held or
-- missed (EMIS consultation rows and SystmOne appointments; cancelled and still-booked appointments
-- are not consultations and are left out), 999 calls (see-and-convey conveyances flagged) and VCSE
-- register rows (attended or did not attend), each with the person it is linked to, when known.

with

emis_events as (

    select * from {{ ref('stg_emis__events') }}

),

systmone_appointments as (

    select * from {{ ref('stg_systmone__appointments') }}

),

ambulance_incidents as (

    select * from {{ ref('stg_ambulance__incidents') }}

),

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

gp_consultations as (

    select
        'gp_consultation' as event_type,
        gp_system as source,
        patient_key,
        event_date,
        practice_code,
        cast(null as {{ dbt.type_string() }}) as service_id,
        is_attended,
        is_did_not_attend,
        false as is_see_and_convey
    from emis_events
    where is_consultation
        and (is_attended or is_did_not_attend)

    union all

    select
        'gp_consultation' as event_type,
        gp_system as source,
        patient_key,
        appointment_date as event_date,
        practice_code,
        cast(null as {{ dbt.type_string() }}) as service_id,
        is_attended,
        is_did_not_attend,
        false as is_see_and_convey
    from systmone_appointments
    where is_attended or is_did_not_attend

),

-- A SystmOne patient removed from the list keeps their appointments, but no person (the removed
-- registration carries no tokens).
gp_consultations_linked as (

    select
        gp_consultations.event_type,
        gp_consultations.source,
        gp_patients.person_key,
        gp_patients.link_tier,
        gp_consultations.event_date,
        gp_consultations.practice_code,
        gp_consultations.service_id,
        gp_consultations.is_attended,
        gp_consultations.is_did_not_attend,
        gp_consultations.is_see_and_convey
    from gp_consultations
    left join gp_patients
        on gp_consultations.patient_key = gp_patients.patient_key

),

ambulance_calls_linked as (

    select
        'ambulance_call' as event_type,
        'ambulance' as source,
        feed_records.person_key,
        feed_records.link_tier,
        ambulance_incidents.call_received_date as event_date,
        cast(null as {{ dbt.type_string() }}) as practice_code,
        cast(null as {{ dbt.type_string() }}) as service_id,
        false as is_attended,
        false as is_did_not_attend,
        ambulance_incidents.is_see_and_convey
    from ambulance_incidents
    inner join feed_records
        on feed_records.feed = 'ambulance'
        and ambulance_incidents.incident_key = feed_records.record_key

),

vcse_sessions_linked as (

    select
        'vcse_session' as event_type,
        'vcse' as source,
        feed_records.person_key,
        feed_records.link_tier,
        vcse_attendances.session_date as event_date,
        cast(null as {{ dbt.type_string() }}) as practice_code,
        vcse_attendances.service_id,
        vcse_attendances.is_attended,
        vcse_attendances.is_did_not_attend,
        false as is_see_and_convey
    from vcse_attendances
    inner join feed_records
        on feed_records.feed = 'vcse'
        and vcse_attendances.attendance_key = feed_records.record_key

),

final as (

    select * from gp_consultations_linked
    union all
    select * from ambulance_calls_linked
    union all
    select * from vcse_sessions_linked

)

select * from final
