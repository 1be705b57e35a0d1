-- One row per outcome x window x IMD quintile (plus the overall `all` row):
-- mart_outcomes_by_deprivation under disclosure control. Counts of referrals and comparators 1-7
-- are redacted (null), the rest rounded to the nearest 5; means, differences, standard errors and
-- confidence limits come from the unrounded rows and are redacted when their denominator (the
-- referrals they average over) is 7 or fewer. The effect among engaged people is redacted when 7
-- or fewer matched referrals engaged; the engaged share is a rate (disclosure_rate). Cluster
-- counts are rounded like counts; degrees of freedom are published as numbers (double), since
-- every published integer is a count.

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
        {{ disclosure_count('referral_count') }} as referral_count,
        {{ disclosure_count('complete_referral_count') }} as complete_referral_count,
        {{ disclosure_count('target_referral_count') }} as target_referral_count,
        {{ disclosure_statistic('naive_mean_change', 'target_referral_count') }} as naive_mean_change,
        {{ disclosure_count('matched_referral_count') }} as matched_referral_count,
        {{ disclosure_count('matched_comparator_count') }} as matched_comparator_count,
        {{ disclosure_count('matched_cluster_count') }} as matched_cluster_count,
        {{ disclosure_statistic('naive_mean_change_matched', 'matched_referral_count') }} as naive_mean_change_matched,
        {{ disclosure_statistic('matched_difference_in_differences', 'matched_referral_count') }}
            as matched_difference_in_differences,
        {{ disclosure_statistic('matched_standard_error', 'matched_referral_count') }} as matched_standard_error,
        {{ disclosure_statistic('matched_ci_lower', 'matched_referral_count') }} as matched_ci_lower,
        {{ disclosure_statistic('matched_ci_upper', 'matched_referral_count') }} as matched_ci_upper,
        {{ disclosure_statistic('matched_unadjusted_difference_in_differences', 'matched_referral_count') }}
            as matched_unadjusted_difference_in_differences,
        {{ disclosure_statistic('matched_unadjusted_standard_error', 'matched_referral_count') }}
            as matched_unadjusted_standard_error,
        {{ disclosure_rate('engaged_referral_count', 'matched_referral_count') }} as engaged_share,
        {{ disclosure_statistic('effect_among_engaged', 'engaged_referral_count') }} as effect_among_engaged,
        {{ disclosure_statistic('effect_among_engaged_standard_error', 'engaged_referral_count') }}
            as effect_among_engaged_standard_error,
        {{ disclosure_statistic('effect_among_engaged_ci_lower', 'engaged_referral_count') }}
            as effect_among_engaged_ci_lower,
        {{ disclosure_statistic('effect_among_engaged_ci_upper', 'engaged_referral_count') }}
            as effect_among_engaged_ci_upper,
        imd_heterogeneity_chi_square,
        cast(imd_heterogeneity_degrees_of_freedom as double) as imd_heterogeneity_degrees_of_freedom,
        imd_heterogeneity_p_value
    from outcomes_by_deprivation

)

select * from final
