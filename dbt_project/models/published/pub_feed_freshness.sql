-- One row per source and sender (practice, ambulance trust or VCSE service): mart_feed_freshness,
-- with the practice's name where the sender is a practice. File counts and days are organisational
-- figures, not redacted. Times are UTC (timestamp with time zone).

with

freshness as (

    select * from {{ ref('mart_feed_freshness') }}

),

practices as (

    select * from {{ ref('dim_practices') }}

),

final as (

    select
        freshness.feed_sender_key,
        freshness.source,
        freshness.organisation_code,
        practices.practice_name as organisation_name,
        freshness.expected_every_days,
        freshness.late_after_days,
        freshness.files_received,
        freshness.files_loaded,
        {{ utc_instant('freshness.first_received_at') }} as first_received_at,
        {{ utc_instant('freshness.last_received_at') }} as last_received_at,
        freshness.last_extract_date,
        {{ utc_instant('freshness.last_loaded_at') }} as last_loaded_at,
        freshness.last_load_status,
        freshness.as_of_date,
        freshness.days_silent,
        freshness.is_late
    from freshness
    left join practices
        on freshness.organisation_code = practices.practice_code

)

select * from final
