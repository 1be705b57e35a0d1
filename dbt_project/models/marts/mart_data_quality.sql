-- One row per delivered file: its source, the practice, trust or service it came from, and what the
-- ingest did with it (rows received, loaded and rejected, status). Rejections by reason are in
-- mart_data_quality_reasons, social prescribing coding completeness in mart_data_quality_coding.

with

file_loads as (

    select * from {{ ref('stg_audit__file_loads') }}

),

final as (

    select
        file_id,
        source,
        organisation_code,
        extract_date,
        received_at,
        loaded_at,
        cast(coalesce(rows_received, 0) as bigint) as rows_received,
        cast(coalesce(rows_loaded, 0) as bigint) as rows_loaded,
        cast(coalesce(rows_rejected, 0) as bigint) as rows_rejected,
        load_status,
        is_loaded
    from file_loads

)

select * from final
