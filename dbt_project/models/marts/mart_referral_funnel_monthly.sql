-- One row per practice and calendar month (referral month): the people on the practice's list and
-- the referral funnel of the month's episodes (referred, declined, engaged, sustained, days to the
-- first attendance). Every practice that sends data here has a row for every month from the first
-- referral month to the last, zeros included, so a month without referrals is visible.

with

referrals as (

    select * from {{ ref('fct_referrals') }}

),

people as (

    select * from {{ ref('int_people_linked') }}

),

practices as (

    select * from {{ ref('dim_practices') }}

),

-- People on a practice's list now, each at the one practice whose record gives their details.
registered_people as (

    select
        practice_code,
        count(*) as registered_people
    from people
    where is_registered
    group by practice_code

),

months as (

    select cast(month_series.month_start as date) as referral_month
    from
        {{ month_series(
            '(select min(referral_month) from referrals)', '(select max(referral_month) from referrals)',
            'month_series', 'month_start'
        ) }}

),

practice_months as (

    select
        practices.practice_code,
        practices.pcn_code,
        months.referral_month
    from practices
    cross join months
    where practices.sends_data

),

funnel as (

    select
        practice_code,
        referral_month,
        count(*) as referral_episodes,
        count(distinct person_key) as referred_people,
        count(*) filter (where is_declined) as declined_episodes,
        count(*) filter (where is_engaged) as engaged_episodes,
        count(*) filter (where is_sustained) as sustained_episodes,
        median(days_to_first_attendance) as median_days_to_first_attendance
    from referrals
    group by practice_code, referral_month

),

final as (

    select
        practice_months.practice_code || ':'
        || substr(cast(practice_months.referral_month as {{ dbt.type_string() }}), 1, 7)
            as practice_month_key,
        practice_months.practice_code,
        practice_months.pcn_code,
        practice_months.referral_month,
        coalesce(registered_people.registered_people, 0) as registered_people,
        coalesce(funnel.referral_episodes, 0) as referral_episodes,
        coalesce(funnel.referred_people, 0) as referred_people,
        coalesce(funnel.declined_episodes, 0) as declined_episodes,
        coalesce(funnel.engaged_episodes, 0) as engaged_episodes,
        coalesce(funnel.sustained_episodes, 0) as sustained_episodes,
        cast(funnel.median_days_to_first_attendance as double) as median_days_to_first_attendance
    from practice_months
    left join registered_people
        on practice_months.practice_code = registered_people.practice_code
    left join funnel
        on practice_months.practice_code = funnel.practice_code
        and practice_months.referral_month = funnel.referral_month

)

select * from final
