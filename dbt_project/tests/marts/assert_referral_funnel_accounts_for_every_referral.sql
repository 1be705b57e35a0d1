-- The funnel counts every referral episode of fct_referrals exactly once: per practice, its months
-- sum to the practice's episodes, declined, engaged and sustained. Returns practices that differ.

with

funnel as (

    select
        practice_code,
        sum(referral_episodes) as referral_episodes,
        sum(declined_episodes) as declined_episodes,
        sum(engaged_episodes) as engaged_episodes,
        sum(sustained_episodes) as sustained_episodes
    from {{ ref('mart_referral_funnel_monthly') }}
    group by practice_code

),

referrals as (

    select
        practice_code,
        count(*) as referral_episodes,
        count(*) filter (where is_declined) as declined_episodes,
        count(*) filter (where is_engaged) as engaged_episodes,
        count(*) filter (where is_sustained) as sustained_episodes
    from {{ ref('fct_referrals') }}
    group by practice_code

)

select
    coalesce(funnel.practice_code, referrals.practice_code) as practice_code,
    funnel.referral_episodes as funnel_episodes,
    referrals.referral_episodes as fact_episodes
from funnel
full outer join referrals
    on funnel.practice_code = referrals.practice_code
where coalesce(funnel.referral_episodes, 0) != coalesce(referrals.referral_episodes, 0)
    or coalesce(funnel.declined_episodes, 0) != coalesce(referrals.declined_episodes, 0)
    or coalesce(funnel.engaged_episodes, 0) != coalesce(referrals.engaged_episodes, 0)
    or coalesce(funnel.sustained_episodes, 0) != coalesce(referrals.sustained_episodes, 0)
