-- One row per VCSE service and calendar month of its sessions: sessions held, attendances,
-- did-not-attend rows and rate, unique people attending, and how many of them had been referred to
-- social prescribing (a referral episode opened on or before the session).

with

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

referrals as (

    select * from {{ ref('fct_referrals') }}

),

first_referrals as (

    select
        person_key,
        min(referral_date) as first_referral_date
    from referrals
    group by person_key

),

-- Each register row with its month and the person it belongs to: the linked person, else the
-- attendee as the service's sheet names them (an unlinked attendee is still one person).
attendances_described as (

    select
        vcse_attendances.service_id,
        cast(date_trunc('month', vcse_attendances.session_date) as date) as session_month,
        vcse_attendances.session_date,
        vcse_attendances.activity_key,
        vcse_attendances.is_attended,
        vcse_attendances.is_did_not_attend,
        coalesce(
            feed_records.person_key,
            'attendee:' || vcse_attendances.service_id || ':' || vcse_attendances.attendee_key
        ) as attendee_person_key,
        (
            first_referrals.first_referral_date is not null
            and first_referrals.first_referral_date <= vcse_attendances.session_date
        ) as is_referred_by_session
    from vcse_attendances
    left join feed_records
        on feed_records.feed = 'vcse'
        and vcse_attendances.attendance_key = feed_records.record_key
    left join first_referrals
        on feed_records.person_key = first_referrals.person_key

),

activity_per_month as (

    select
        service_id,
        session_month,
        -- a distinct pair: the brackets make a row value (sqlfluff takes them for grouping)
        count(distinct (session_date, activity_key)) as sessions,  -- noqa: LT01, LT06, ST08
        count(*) filter (where is_attended) as attendances,
        count(*) filter (where is_did_not_attend) as did_not_attend_rows,
        count(*) as register_rows,
        count(distinct attendee_person_key) filter (where is_attended) as unique_attendees,
        count(distinct attendee_person_key) filter (where is_attended and is_referred_by_session)
            as unique_attendees_referred
    from attendances_described
    group by service_id, session_month

),

final as (

    select
        service_id || ':' || substr(cast(session_month as {{ dbt.type_string() }}), 1, 7) as service_month_key,
        service_id,
        session_month,
        sessions,
        attendances,
        did_not_attend_rows,
        register_rows,
        cast(did_not_attend_rows as double) / register_rows as did_not_attend_rate,
        unique_attendees,
        unique_attendees_referred,
        cast(unique_attendees_referred as double) / nullif(unique_attendees, 0) as share_of_attendees_referred
    from activity_per_month

)

select * from final
