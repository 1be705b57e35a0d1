-- One row per delivered file, field and rejection reason: mart_data_quality_reasons as it is (rows
-- of a file are an organisational count, not redacted: docs/analysts.md). The mart's
-- hashed row key is left out: analysts identify a row by its file, field and reason.

with

rejection_reasons as (

    select * from {{ ref('mart_data_quality_reasons') }}

),

final as (

    select
        file_id,
        source,
        organisation_code,
        field_name,
        rejection_reason,
        rejected_rows
    from rejection_reasons

)

select * from final
