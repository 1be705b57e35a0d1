-- One row per coded event in SystmOne (SRCode): the latest version of every RowIdentifier,
-- deletions (tombstones) removed.

with

systmone_codes as (

    select * from {{ source('raw', 'systmone_codes') }}

),

current_codes as (

    select * from systmone_codes
    where not is_removed

),

final as (

    select
        practice_code || ':' || row_identifier as code_key,
        practice_code || ':' || patient_id as patient_key,
        'systmone' as gp_system,
        practice_code,
        patient_id as practice_patient_id,
        row_identifier,
        event_date,
        snomed_code,
        ctv3_code,
        ctv3_text as code_term,
        organisation_code,
        extract_date,
        file_id

    from current_codes

)

select * from final
