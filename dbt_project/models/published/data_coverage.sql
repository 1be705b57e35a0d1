-- One row per source feed: the first and last date its loaded data covers, the extract date of the
-- newest loaded file, when its last file was received and loaded (UTC), and how many files and
-- senders it has. "Data up to" for every published figure: a month after last_date_covered is not
-- in the data yet. Organisational counts (files, senders), not redacted.

with

emis_events as (

    select * from {{ ref('stg_emis__events') }}

),

systmone_codes as (

    select * from {{ ref('stg_systmone__codes') }}

),

systmone_appointments as (

    select * from {{ ref('stg_systmone__appointments') }}

),

ambulance_incidents as (

    select * from {{ ref('stg_ambulance__incidents') }}

),

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

file_loads as (

    select * from {{ ref('stg_audit__file_loads') }}

),

data_dates as (

    select
        'emis' as source,
        min(event_date) as first_date_covered,
        max(event_date) as last_date_covered
    from emis_events
    union all
    select
        'systmone' as source,
        min(event_date) as first_date_covered,
        max(event_date) as last_date_covered
    from (
        select event_date from systmone_codes
        union all
        select appointment_date as event_date from systmone_appointments
    ) as systmone_dates
    union all
    select
        'ambulance' as source,
        min(call_received_date) as first_date_covered,
        max(call_received_date) as last_date_covered
    from ambulance_incidents
    union all
    select
        'vcse' as source,
        min(session_date) as first_date_covered,
        max(session_date) as last_date_covered
    from vcse_attendances

),

deliveries as (

    select
        source,
        max(extract_date) filter (where is_loaded) as last_extract_date,
        max(received_at) as last_file_received_at,
        max(loaded_at) as last_file_loaded_at,
        count(*) as files_received,
        count(*) filter (where is_loaded) as files_loaded,
        count(distinct organisation_code) as senders
    from file_loads
    group by source

),

final as (

    select
        data_dates.source,
        data_dates.first_date_covered,
        data_dates.last_date_covered,
        deliveries.last_extract_date,
        {{ utc_instant('deliveries.last_file_received_at') }} as last_file_received_at,
        {{ utc_instant('deliveries.last_file_loaded_at') }} as last_file_loaded_at,
        coalesce(deliveries.files_received, 0) as files_received,
        coalesce(deliveries.files_loaded, 0) as files_loaded,
        coalesce(deliveries.senders, 0) as senders
    from data_dates
    left join deliveries
        on data_dates.source = deliveries.source

)

select * from final
