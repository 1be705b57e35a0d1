-- One row per patient currently registered at a SystmOne practice: the latest version of every
-- SRPatient RowIdentifier, deletions (tombstones) removed.

with

systmone_patients as (

    select * from {{ source('raw', 'systmone_patients') }}

),

current_patients as (

    select * from systmone_patients
    where not is_removed

),

final as (

    select
        practice_code || ':' || patient_id as patient_key,
        'systmone' as gp_system,
        practice_code,
        patient_id as practice_patient_id,
        row_identifier,
        registered_practice_code,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        cast(imd_decile as integer) as imd_decile,
        {{ imd_quintile('imd_decile') }} as imd_quintile,
        {{ standardise_sex('gender') }} as sex,
        cast(extract_age as integer) as age_at_extract,
        extract_age_band as age_band_at_extract,
        extract_date,
        file_id

    from current_patients

)

select * from final
