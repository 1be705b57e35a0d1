{{ config(severity='warn') }}

-- A warning, never a build failure: every sender whose feed has gone quiet for longer than its
-- cadence allows (mart_feed_freshness.is_late, thresholds in seeds/feed_cadence.csv). Returns the
-- late senders, each with how long it has been silent; none when every feed is on time.

with

feed_freshness as (

    select * from {{ ref('mart_feed_freshness') }}

),

final as (

    select
        feed_sender_key,
        last_extract_date,
        as_of_date,
        days_silent,
        late_after_days
    from feed_freshness
    where is_late

)

select * from final
