-- One row per VCSE service, session date, activity and attendee, as the service's latest sheet
-- states it (a corrected sheet replaces the rows it restates; raw keeps the latest). Rows that
-- cannot be linked to a person are kept: they still count as activity.

with

vcse_attendances as (

    select * from {{ source('raw', 'vcse_attendances') }}

),

final as (

    select
        md5(concat_ws('|', service_id, cast(session_date as varchar), activity_key, attendee_key)) as attendance_key,
        service_id,
        session_date,
        activity_key,
        activity as activity_name,
        attendee_key,
        attended as is_attended,
        not attended as is_did_not_attend,
        is_linkable,
        linkage_basis,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        cast(imd_decile as integer) as imd_decile,
        {{ imd_quintile('imd_decile') }} as imd_quintile,
        cast(session_age as integer) as age_at_session,
        session_age_band as age_band_at_session,
        cast(wellbeing_score as integer) as wellbeing_score,
        received_at,
        file_id,
        row_number as file_row_number

    from vcse_attendances

)

select * from final
