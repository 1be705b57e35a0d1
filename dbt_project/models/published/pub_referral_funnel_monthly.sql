-- One row per practice and referral month: mart_referral_funnel_monthly under disclosure control
-- (counts 1-7 redacted to null, the rest rounded to the nearest 5; the median redacted when fewer
-- than 8 episodes engaged).

with

referral_funnel as (

    select * from {{ ref('mart_referral_funnel_monthly') }}

),

final as (

    select
        practice_month_key,
        practice_code,
        pcn_code,
        referral_month,
        {{ disclosure_count('registered_people') }} as registered_people,
        {{ disclosure_count('referral_episodes') }} as referral_episodes,
        {{ disclosure_count('referred_people') }} as referred_people,
        {{ disclosure_count('declined_episodes') }} as declined_episodes,
        {{ disclosure_count('engaged_episodes') }} as engaged_episodes,
        {{ disclosure_count('sustained_episodes') }} as sustained_episodes,
        {{ disclosure_rate('engaged_episodes', 'referral_episodes') }} as engagement_rate,
        {{ disclosure_statistic('median_days_to_first_attendance', 'engaged_episodes') }}
            as median_days_to_first_attendance
    from referral_funnel

)

select * from final
