-- One row per VCSE service, session date, activity and attendee, as the service's latest sheet
-- states it (a corrected sheet replaces each session it restates whole; raw keeps the latest). Rows that
-- cannot be linked to a person are kept: they still count as activity.
-- Incremental (dbt_project.yml): a build takes only the raw rows written by files loaded since the
-- last build (the ingest stamps every inserted or restated row with its file's id, and file ids
-- only grow) and replaces those attendances; the post-hook drops attendances no longer in raw.
-- On local Spark (plain Parquet tables: no delete, no merge) the table is rewritten whole from raw
-- instead (macros/cross_engine.sql, incremental_strategy).
{{ config(incremental_strategy=incremental_strategy(), post_hook=[delete_rows_gone_from_raw(
    "delete from {{ this }} as attendances where not exists (select 1 from "
    ~ "{{ source('raw', 'vcse_attendances') }} as raw_attendances where "
    ~ "raw_attendances.service_id = attendances.service_id "
    ~ "and raw_attendances.session_date = attendances.session_date "
    ~ "and raw_attendances.activity_key = attendances.activity_key "
    ~ "and raw_attendances.attendee_key = attendances.attendee_key)"
)]) }}

with

vcse_attendances as (

    select * from {{ source('raw', 'vcse_attendances') }}
    {% if incremental_reads_new_files() -%}
        where file_id > (select coalesce(max(file_id), -1) from {{ this }})
    {%- endif %}

),

final as (

    select
        md5(
            concat_ws('|', service_id, cast(session_date as {{ dbt.type_string() }}), activity_key, attendee_key)
        ) as attendance_key,
        service_id,
        session_date,
        activity_key,
        activity as activity_name,
        attendee_key,
        attended as is_attended,
        not attended as is_did_not_attend,
        is_linkable,
        linkage_basis,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        cast(imd_decile as integer) as imd_decile,
        {{ imd_quintile('imd_decile') }} as imd_quintile,
        cast(session_age as integer) as age_at_session,
        session_age_band as age_band_at_session,
        cast(wellbeing_score as integer) as wellbeing_score,
        cast(wellbeing_worthwhile as integer) as wellbeing_worthwhile,
        cast(wellbeing_happiness as integer) as wellbeing_happiness,
        cast(wellbeing_anxiety as integer) as wellbeing_anxiety,
        received_at,
        file_id,
        row_number as file_row_number

    from vcse_attendances

)

select * from final
