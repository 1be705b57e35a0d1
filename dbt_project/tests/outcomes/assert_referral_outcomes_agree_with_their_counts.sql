-- The effects mart is the sum of fct_referral_outcomes: for each outcome and window (all
-- quintiles), the referral counts and the naive mean agree, and the confidence interval holds
-- the estimate. Returns the disagreeing rows (must be none).

with

referral_outcomes as (

    select * from {{ ref('fct_referral_outcomes') }}

),

outcome_effects as (

    select * from {{ ref('mart_outcome_effects') }}

),

recounted as (

    select
        outcome,
        window_days,
        count(*) as referral_count,
        count(case when is_in_matched_analysis then 1 end) as matched_referral_count,
        avg(case when has_complete_follow_up then events_change end) as naive_mean_change
    from referral_outcomes
    group by outcome, window_days

)

select outcome_effects.outcome_effect_key
from outcome_effects
inner join recounted
    on outcome_effects.outcome = recounted.outcome
    and outcome_effects.window_days = recounted.window_days
where outcome_effects.imd_quintile = 'all'
    and (
        outcome_effects.referral_count != recounted.referral_count
        or outcome_effects.matched_referral_count != recounted.matched_referral_count
        or outcome_effects.naive_mean_change is distinct from recounted.naive_mean_change
        or outcome_effects.matched_ci_lower > outcome_effects.matched_difference_in_differences
        or outcome_effects.matched_ci_upper < outcome_effects.matched_difference_in_differences
    )
