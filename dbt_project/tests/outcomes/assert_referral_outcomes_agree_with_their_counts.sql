-- mart_outcomes_by_deprivation is the sum of fct_referral_outcomes: for each outcome and window
-- (the overall row, every quintile together), the referral counts and the naive mean agree, and
-- the confidence interval holds the estimate. Returns the disagreeing rows (must be none).

with

referral_outcomes as (

    select * from {{ ref('fct_referral_outcomes') }}

),

outcomes_by_deprivation as (

    select * from {{ ref('mart_outcomes_by_deprivation') }}

),

recounted as (

    select
        outcome,
        window_days,
        count(*) as referral_count,
        count(case when is_in_matched_analysis then 1 end) as matched_referral_count,
        avg(case when is_in_target_population then events_change end) as naive_mean_change
    from referral_outcomes
    group by outcome, window_days

)

select outcomes_by_deprivation.outcome_deprivation_key
from outcomes_by_deprivation
inner join recounted
    on outcomes_by_deprivation.outcome = recounted.outcome
    and outcomes_by_deprivation.window_days = recounted.window_days
where outcomes_by_deprivation.is_all_quintiles
    and (
        outcomes_by_deprivation.referral_count != recounted.referral_count
        or outcomes_by_deprivation.matched_referral_count != recounted.matched_referral_count
        or abs(outcomes_by_deprivation.naive_mean_change - recounted.naive_mean_change) > 1e-9
        or (outcomes_by_deprivation.naive_mean_change is null) != (recounted.naive_mean_change is null)
        or outcomes_by_deprivation.matched_ci_lower > outcomes_by_deprivation.matched_difference_in_differences
        or outcomes_by_deprivation.matched_ci_upper < outcomes_by_deprivation.matched_difference_in_differences
    )
