-- One row per delivered file: mart_data_quality as it is. Rows of a file are an organisational
-- count (what a sender delivered, not people), so they are not redacted (docs/analysts.md). The
-- file's path and checksum are not published.

with

file_loads as (

    select * from {{ ref('mart_data_quality') }}

),

final as (

    select
        file_id,
        source,
        organisation_code,
        extract_date,
        {{ utc_instant('received_at') }} as received_at,
        {{ utc_instant('loaded_at') }} as loaded_at,
        rows_received,
        rows_loaded,
        rows_rejected,
        cast(rows_rejected as double) / nullif(rows_received, 0) as rejection_rate,
        load_status
    from file_loads

)

select * from final
