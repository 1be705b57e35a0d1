-- One row per appointment in SystmOne (SRAppointment): the latest version of every RowIdentifier
-- (a booked appointment is re-sent with its outcome), deletions (tombstones) removed. Appointments
-- still booked are kept and flagged: they are not consultations yet.

with

systmone_appointments as (

    select * from {{ source('raw', 'systmone_appointments') }}

),

current_appointments as (

    select * from systmone_appointments
    where not is_removed

),

final as (

    select
        practice_code || ':' || row_identifier as appointment_key,
        practice_code || ':' || patient_id as patient_key,
        'systmone' as gp_system,
        practice_code,
        patient_id as practice_patient_id,
        row_identifier,
        appointment_start_at,
        cast({{ utc_to_uk_local('appointment_start_at') }} as date) as appointment_date,
        status as appointment_status,
        clinician_type,
        status = 'Finished' as is_attended,
        status = 'Did Not Attend' as is_did_not_attend,
        status in ('Cancelled by Patient', 'Cancelled by Unit') as is_cancelled,
        status = 'Booked' as is_booked,
        organisation_code,
        extract_date,
        file_id

    from current_appointments

)

select * from final
