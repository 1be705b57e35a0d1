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
        {{ count_with_status('referral_count') }},
        {{ count_with_status('complete_referral_count') }},
        {{ statistic_with_status('naive_mean_change', 'complete_referral_count', 'naive_mean_change') }},
        {{ count_with_status('matched_referral_count') }},
        {{ count_with_status('matched_comparator_count') }},
        {{ statistic_with_status(
            'matched_difference_in_differences', 'matched_referral_count', 'matched_difference_in_differences'
        ) }},
        {{ statistic_with_status('matched_standard_error', 'matched_referral_count', 'matched_standard_error') }},
        {{ statistic_with_status('matched_ci_lower', 'matched_referral_count', 'matched_ci_lower') }},
        {{ statistic_with_status('matched_ci_upper', 'matched_referral_count', 'matched_ci_upper') }}
    from outcomes_by_deprivation

)

select * from final
