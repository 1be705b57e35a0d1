-- One row per outcome x window x IMD quintile (plus the overall `all` row):
-- mart_outcomes_by_deprivation under disclosure control. Counts of referrals and comparators 1-7
-- are redacted (null), the rest rounded to the nearest 5; means, differences, standard errors and
-- confidence limits come from the unrounded rows and are redacted when their denominator (the
-- referrals they average over) is 7 or fewer. The effect among engaged people is redacted when 7
-- or fewer matched referrals engaged; the engaged share is a rate (rate_with_status). Cluster
-- counts are rounded like counts; degrees of freedom are published as numbers (double), since
-- every published integer is a count. Every redactable figure X has X_status ('shown', 'redacted',
-- 'not_applicable'); the heterogeneity test across quintiles is not about any one group and is
-- published as it is.

with

outcomes_by_deprivation as (

    select
        *,
        cast(round(coalesce(engaged_share, 0) * matched_referral_count) as bigint) as engaged_referral_count
    from {{ ref('mart_outcomes_by_deprivation') }}

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
        {{ count_with_status('target_referral_count') }},
        {{ statistic_with_status('naive_mean_change', 'target_referral_count', 'naive_mean_change') }},
        {{ count_with_status('matched_referral_count') }},
        {{ count_with_status('matched_comparator_count') }},
        {{ count_with_status('matched_cluster_count') }},
        {{ statistic_with_status(
            'naive_mean_change_matched', 'matched_referral_count', 'naive_mean_change_matched'
        ) }},
        {{ statistic_with_status(
            'matched_difference_in_differences', 'matched_referral_count', 'matched_difference_in_differences'
        ) }},
        {{ statistic_with_status('matched_standard_error', 'matched_referral_count', 'matched_standard_error') }},
        {{ statistic_with_status('matched_ci_lower', 'matched_referral_count', 'matched_ci_lower') }},
        {{ statistic_with_status('matched_ci_upper', 'matched_referral_count', 'matched_ci_upper') }},
        {{ statistic_with_status(
            'matched_unadjusted_difference_in_differences', 'matched_referral_count',
            'matched_unadjusted_difference_in_differences'
        ) }},
        {{ statistic_with_status(
            'matched_unadjusted_standard_error', 'matched_referral_count', 'matched_unadjusted_standard_error'
        ) }},
        {{ rate_with_status('engaged_referral_count', 'matched_referral_count', 'engaged_share') }},
        {{ statistic_with_status('effect_among_engaged', 'engaged_referral_count', 'effect_among_engaged') }},
        {{ statistic_with_status(
            'effect_among_engaged_standard_error', 'engaged_referral_count', 'effect_among_engaged_standard_error'
        ) }},
        {{ statistic_with_status(
            'effect_among_engaged_ci_lower', 'engaged_referral_count', 'effect_among_engaged_ci_lower'
        ) }},
        {{ statistic_with_status(
            'effect_among_engaged_ci_upper', 'engaged_referral_count', 'effect_among_engaged_ci_upper'
        ) }},
        imd_heterogeneity_chi_square,
        cast(imd_heterogeneity_degrees_of_freedom as double) as imd_heterogeneity_degrees_of_freedom,
        imd_heterogeneity_p_value
    from outcomes_by_deprivation

)

select * from final
