-- One row per delivered file, field and rejection reason: how many rows of the file the ingest
-- quarantined for that fault (a row with two faults counts under both).

with

rejected_rows as (

    select * from {{ ref('stg_audit__rejected_rows') }}

),

file_loads as (

    select * from {{ ref('mart_data_quality') }}

),

rejections_per_reason as (

    select
        file_id,
        field_name,
        rejection_reason,
        -- a distinct pair: the brackets make a row value (sqlfluff takes them for grouping)
        count(distinct (file_path, file_row_number)) as rejected_rows  -- noqa: LT01, LT06, ST08
    from rejected_rows
    group by file_id, field_name, rejection_reason

),

final as (

    select
        md5(concat_ws(
            '|',
            cast(rejections_per_reason.file_id as {{ dbt.type_string() }}),
            rejections_per_reason.field_name,
            rejections_per_reason.rejection_reason
        )) as file_rejection_reason_key,
        rejections_per_reason.file_id,
        file_loads.source,
        file_loads.organisation_code,
        rejections_per_reason.field_name,
        rejections_per_reason.rejection_reason,
        rejections_per_reason.rejected_rows
    from rejections_per_reason
    inner join file_loads
        on rejections_per_reason.file_id = file_loads.file_id

)

select * from final
