-- One row per delivered file, field and rejection reason: mart_data_quality_reasons under
-- disclosure control (counts 1-7 redacted to null, the rest rounded to the nearest 5). The mart's
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
        {{ disclosure_count('rejected_rows') }} as rejected_rows
    from rejection_reasons

)

select * from final
