-- One row per delivered file: mart_data_quality under disclosure control (row counts 1-7 redacted
-- to null, the rest rounded to the nearest 5). The file's path and checksum are not published.

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
        received_at,
        loaded_at,
        {{ disclosure_count('rows_received') }} as rows_received,
        {{ disclosure_count('rows_loaded') }} as rows_loaded,
        {{ disclosure_count('rows_rejected') }} as rows_rejected,
        {{ disclosure_rate('rows_rejected', 'rows_received') }} as rejection_rate,
        load_status
    from file_loads

)

select * from final
