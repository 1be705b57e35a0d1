-- One row per outcome x window x IMD quintile, plus one overall row per outcome x window
-- (imd_quintile `all`, is_all_quintiles true, which also holds referrals of unknown deprivation):
-- the naive before/after change among referrals and the matched difference in differences against
-- their comparators, from fct_referral_outcomes.
-- Naive: the mean of (after - before) over referrals with complete follow-up.
-- Matched: over referrals with complete follow-up and at least one comparator with complete
-- follow-up, each referral gives one observation, its own change less the mean change of its
-- comparators (weighted to 1 per referral). The estimate is the mean of those observations, its
-- standard error their sample standard deviation over the square root of their number, and the
-- 95% confidence interval the estimate +/- 1.96 standard errors (normal approximation; comparators
-- reused across referrals make the observations slightly dependent, which this ignores).

with

referral_outcomes as (

    select * from {{ ref('fct_referral_outcomes') }}

),

by_quintile as (

    select
        outcome,
        window_days,
        cast(imd_quintile as {{ dbt.type_string() }}) as imd_quintile,
        has_complete_follow_up,
        is_in_matched_analysis,
        events_change,
        complete_comparator_count,
        matched_difference_in_differences
    from referral_outcomes
    where imd_quintile is not null

    union all

    select
        outcome,
        window_days,
        'all' as imd_quintile,
        has_complete_follow_up,
        is_in_matched_analysis,
        events_change,
        complete_comparator_count,
        matched_difference_in_differences
    from referral_outcomes

),

summarised as (

    select
        outcome,
        window_days,
        imd_quintile,
        count(*) as referral_count,
        count(case when has_complete_follow_up then 1 end) as complete_referral_count,
        avg(case when has_complete_follow_up then events_change end) as naive_mean_change,
        count(case when is_in_matched_analysis then 1 end) as matched_referral_count,
        coalesce(sum(case when is_in_matched_analysis then complete_comparator_count end), 0)
            as matched_comparator_count,
        avg(matched_difference_in_differences) as matched_difference_in_differences,
        stddev_samp(matched_difference_in_differences)
        / sqrt(count(matched_difference_in_differences)) as matched_standard_error
    from by_quintile
    group by outcome, window_days, imd_quintile

),

final as (

    select
        outcome || '|' || cast(window_days as {{ dbt.type_string() }}) || '|' || imd_quintile
            as outcome_deprivation_key,
        outcome,
        window_days,
        imd_quintile,
        imd_quintile = 'all' as is_all_quintiles,
        referral_count,
        complete_referral_count,
        naive_mean_change,
        matched_referral_count,
        matched_comparator_count,
        matched_difference_in_differences,
        matched_standard_error,
        matched_difference_in_differences - 1.96 * matched_standard_error as matched_ci_lower,
        matched_difference_in_differences + 1.96 * matched_standard_error as matched_ci_upper
    from summarised

)

select * from final
