-- One row per referral episode, with the person's engagement with a VCSE service after it: the
-- first attended session from the referral date to engagement_window_days (180) days after it
-- (both days included), the days to it, and the sessions attended in the sustained_window_days (90)
-- days from that first attendance (the last day excluded); sustained_sessions (3) or more is
-- sustained engagement. Sessions of any service count, as long as the attendance row is linked to
-- the person.

{%- set engagement_window_days = var('engagement_window_days') %}
{%- set sustained_window_days = var('sustained_window_days') %}
{%- set sustained_sessions = var('sustained_sessions') %}

with

referral_episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

-- One row per person and session attended (a person listed twice on one register counts once).
sessions_attended as (

    select distinct
        feed_records.person_key,
        vcse_attendances.service_id,
        vcse_attendances.session_date,
        vcse_attendances.activity_key
    from vcse_attendances
    inner join feed_records
        on feed_records.feed = 'vcse'
        and vcse_attendances.attendance_key = feed_records.record_key
    where vcse_attendances.is_attended
        and feed_records.person_key is not null

),

-- Attended sessions from the referral date to engagement_window_days after it, first one first.
sessions_in_engagement_window as (

    select
        referral_episodes.episode_key,
        sessions_attended.session_date,
        sessions_attended.service_id,
        row_number() over (
            partition by referral_episodes.episode_key
            order by sessions_attended.session_date, sessions_attended.service_id, sessions_attended.activity_key
        ) as session_order
    from referral_episodes
    inner join sessions_attended
        on referral_episodes.person_key = sessions_attended.person_key
        and sessions_attended.session_date >= referral_episodes.referral_date
        and (
            sessions_attended.session_date
            <= cast({{ dbt.dateadd('day', engagement_window_days, 'referral_episodes.referral_date') }} as date)
        )

),

first_attendances as (

    select
        episode_key,
        session_date as first_attendance_date,
        service_id as first_service_id
    from sessions_in_engagement_window
    where session_order = 1

),

sessions_after_first as (

    select
        first_attendances.episode_key,
        count(*) as sessions_in_sustained_window
    from first_attendances
    inner join referral_episodes
        on first_attendances.episode_key = referral_episodes.episode_key
    inner join sessions_attended
        on referral_episodes.person_key = sessions_attended.person_key
        and sessions_attended.session_date >= first_attendances.first_attendance_date
        and (
            sessions_attended.session_date
            < cast({{ dbt.dateadd('day', sustained_window_days, 'first_attendances.first_attendance_date') }} as date)
        )
    group by first_attendances.episode_key

),

final as (

    select
        referral_episodes.episode_key,
        referral_episodes.person_key,
        referral_episodes.referral_date,
        first_attendances.first_attendance_date is not null as is_engaged,
        first_attendances.first_attendance_date,
        first_attendances.first_service_id,
        {{ dbt.datediff('referral_episodes.referral_date', 'first_attendances.first_attendance_date', 'day') }}
            as days_to_first_attendance,
        coalesce(sessions_after_first.sessions_in_sustained_window, 0) as sessions_in_sustained_window,
        coalesce(sessions_after_first.sessions_in_sustained_window, 0) >= {{ sustained_sessions }} as is_sustained
    from referral_episodes
    left join first_attendances
        on referral_episodes.episode_key = first_attendances.episode_key
    left join sessions_after_first
        on referral_episodes.episode_key = sessions_after_first.episode_key

)

select * from final
