-- One row per event row of each EMIS Web practice's latest export: consultations (with their
-- appointment outcome) and coded events; one row can be both. Raw holds only the latest snapshot.

with

emis_events as (

    select * from {{ source('raw', 'emis_events') }}

),

final as (

    select
        practice_code || ':' || cast(extract_date as {{ dbt.type_string() }}) || ':'
        || cast(row_number as {{ dbt.type_string() }}) as event_key,
        practice_code || ':' || emis_number as patient_key,
        'emis' as gp_system,
        practice_code,
        emis_number as practice_patient_id,
        event_date,
        snomed_code,
        code_term,
        consultation_type,
        appointment_status,
        consultation_type is not null as is_consultation,
        snomed_code is not null as is_coded_event,
        coalesce(appointment_status = 'Finished', false) as is_attended,
        coalesce(appointment_status = 'Did Not Attend', false) as is_did_not_attend,
        coalesce(appointment_status in ('Cancelled by Patient', 'Cancelled by Unit'), false) as is_cancelled,
        cast(event_age as integer) as age_at_event,
        event_age_band as age_band_at_event,
        extract_date,
        file_id,
        row_number as file_row_number

    from emis_events

)

select * from final
