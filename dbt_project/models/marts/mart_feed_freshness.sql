-- One row per source and sender (practice, ambulance trust or VCSE service) that has ever sent a
-- file: what it last sent, when that arrived and loaded, and how long it has been silent.
-- Silence is measured as `sprx status` measures it, from when the sender's newest loaded delivery
-- was received (a sender whose files are all rejected or held is silent), but up to the UK day on
-- which the newest loaded delivery of any sender of the same source was received (as_of_date), not
-- up to the build's clock: the mart then says the same thing whenever it is rebuilt, and a practice
-- that stopped while the others kept sending stands out. A whole feed that stops is what
-- `dbt source freshness` and `sprx status` (against the wall clock) report.
-- Files whose name gave no organisation cannot be attributed to a sender and are left out.

with

file_loads as (

    select * from {{ ref('stg_audit__file_loads') }}

),

feed_cadence as (

    select * from {{ ref('feed_cadence') }}

),

attributed_files as (

    select
        file_id,
        source,
        organisation_code,
        extract_date,
        received_at,
        loaded_at,
        load_status,
        is_loaded
    from file_loads
    where organisation_code is not null

),

senders as (

    select
        source,
        organisation_code,
        count(*) as files_received,
        count(case when is_loaded then 1 end) as files_loaded,
        min(received_at) as first_received_at,
        max(received_at) as last_received_at,
        max(case when is_loaded then extract_date end) as last_extract_date,
        max(case when is_loaded then received_at end) as data_received_at,
        max(loaded_at) as last_loaded_at,
        max_by(load_status, file_id) as last_load_status
    from attributed_files
    group by source, organisation_code

),

source_newest_deliveries as (

    select
        source,
        cast(max(case when is_loaded then {{ utc_to_uk_local('received_at') }} end) as date) as as_of_date
    from attributed_files
    group by source

),

silences as (

    select
        senders.*,
        source_newest_deliveries.as_of_date,
        feed_cadence.expected_every_days,
        feed_cadence.late_after_days,
        {{ dbt.datediff(
            'cast(' ~ utc_to_uk_local('senders.data_received_at') ~ ' as date)',
            'source_newest_deliveries.as_of_date',
            'day'
        ) }} as days_silent
    from senders
    inner join source_newest_deliveries
        on senders.source = source_newest_deliveries.source
    left join feed_cadence
        on senders.source = feed_cadence.source

),

final as (

    select
        source || ':' || organisation_code as feed_sender_key,
        source,
        organisation_code,
        expected_every_days,
        late_after_days,
        files_received,
        files_loaded,
        first_received_at,
        last_received_at,
        last_extract_date,
        data_received_at,
        last_loaded_at,
        last_load_status,
        as_of_date,
        days_silent,
        coalesce(days_silent > late_after_days, true) as is_late
    from silences

)

select * from final
