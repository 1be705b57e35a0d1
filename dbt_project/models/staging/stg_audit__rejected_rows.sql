-- One row per quarantined row and field at fault (audit.rejected_rows, written only by the ingest
-- flows). The value is there only when it is not an identifier.

with

rejected_rows as (

    select * from {{ source('audit', 'rejected_rows') }}

),

final as (

    select
        cast(file_id as {{ dbt.type_string() }}) || ':' || path || ':'
        || cast(row_number as {{ dbt.type_string() }}) || ':' || field
            as rejection_key,
        file_id,
        path as file_path,
        row_number as file_row_number,
        field as field_name,
        reason as rejection_reason,
        value as rejected_value

    from rejected_rows

)

select * from final
