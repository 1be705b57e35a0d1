-- One row per delivered file and what the ingest did with it (audit.file_loads, written only by
-- the ingest flows).

with

file_loads as (

    select * from {{ source('audit', 'file_loads') }}

),

final as (

    select
        file_id,
        source,
        path as file_path,
        sha256 as file_sha256,
        organisation_code,
        extract_date,
        received_at,
        loaded_at,
        rows_received,
        rows_loaded,
        rows_rejected,
        status as load_status,
        status = 'loaded' as is_loaded,
        message as load_message

    from file_loads

)

select * from final
