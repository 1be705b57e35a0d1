-- One row per patient registered at an EMIS Web practice, from the practice's latest full-refresh
-- export (raw holds only that snapshot, so every row is current).

with

emis_patients as (

    select * from {{ source('raw', 'emis_patients') }}

),

final as (

    select
        practice_code || ':' || emis_number as patient_key,
        'emis' as gp_system,
        practice_code,
        emis_number as practice_patient_id,
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

    from emis_patients

)

select * from final
