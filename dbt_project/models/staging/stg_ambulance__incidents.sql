-- One row per ambulance incident (999 call), its latest version: weekly files overlap by 28 days
-- and raw keeps the latest. The call's date and month are UK local, as crews and callers count them.
-- Incremental (dbt_project.yml): a build takes only the raw rows written by files loaded since the
-- last build (the ingest stamps every inserted or revised incident with its file's id, and file ids
-- only grow) and replaces those incidents; the post-hook drops incidents no longer in raw.
-- On local Spark (plain Parquet tables: no delete, no merge) the table is rewritten whole from raw
-- instead (macros/cross_engine.sql, incremental_strategy).
{{ config(incremental_strategy=incremental_strategy(), post_hook=[delete_rows_gone_from_raw(
    "delete from {{ this }} as incidents where not exists (select 1 from "
    ~ "{{ source('raw', 'ambulance_incidents') }} as raw_incidents where "
    ~ "raw_incidents.trust_code = incidents.trust_code and raw_incidents.incident_id = incidents.incident_id)"
)]) }}

with

ambulance_incidents as (

    select * from {{ source('raw', 'ambulance_incidents') }}
    {% if incremental_reads_new_files() -%}
        where file_id > (select coalesce(max(file_id), -1) from {{ this }})
    {%- endif %}

),

with_local_date as (

    select
        *,
        cast({{ utc_to_uk_local('call_received_at') }} as date) as call_received_date
    from ambulance_incidents

),

final as (

    select
        trust_code || ':' || incident_id as incident_key,
        trust_code,
        incident_id,
        call_received_at,
        call_received_date,
        cast(date_trunc('month', call_received_date) as date) as call_month,
        nhs_number_token,
        nhs_number_token is not null as is_traced,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        cast(imd_decile as integer) as imd_decile,
        {{ imd_quintile('imd_decile') }} as imd_quintile,
        {{ standardise_sex('sex') }} as sex,
        cast(call_age as integer) as age_at_call,
        call_age_band as age_band_at_call,
        arp_category,
        call_outcome,
        call_outcome = 'see_and_convey' as is_see_and_convey,
        conveyed_to as conveyed_to_organisation_code,
        is_communal_address,
        trust_frequent_caller_flag as is_trust_frequent_caller,
        extract_date,
        file_id

    from with_local_date

)

select * from final
