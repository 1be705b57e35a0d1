-- One row per outcome x window x IMD quintile (plus the overall `all` row):
-- mart_outcomes_by_deprivation under disclosure control. Counts of referrals and comparators 1-7
-- are redacted (null), the rest rounded to the nearest 5; means, differences, standard errors and
-- confidence limits come from the unrounded rows and are redacted when their denominator (the
-- referrals they average over) is 7 or fewer.

with

outcomes_by_deprivation as (

    select * from {{ ref('mart_outcomes_by_deprivation') }}

),

final as (

    select
        outcome_deprivation_key,
        outcome,
        window_days,
        imd_quintile,
        is_all_quintiles,
        {{ disclosure_count('referral_count') }} as referral_count,
        {{ disclosure_count('complete_referral_count') }} as complete_referral_count,
        {{ disclosure_statistic('naive_mean_change', 'complete_referral_count') }} as naive_mean_change,
        {{ disclosure_count('matched_referral_count') }} as matched_referral_count,
        {{ disclosure_count('matched_comparator_count') }} as matched_comparator_count,
        {{ disclosure_statistic('matched_difference_in_differences', 'matched_referral_count') }}
            as matched_difference_in_differences,
        {{ disclosure_statistic('matched_standard_error', 'matched_referral_count') }} as matched_standard_error,
        {{ disclosure_statistic('matched_ci_lower', 'matched_referral_count') }} as matched_ci_lower,
        {{ disclosure_statistic('matched_ci_upper', 'matched_referral_count') }} as matched_ci_upper
    from outcomes_by_deprivation

)

select * from final
