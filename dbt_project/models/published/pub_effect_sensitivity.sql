-- One row per matching specification x outcome x window: mart_effect_sensitivity under
-- disclosure control. The referral count is redacted when 1-7, else rounded to the nearest 5;
-- estimates, intervals and E-values come from the unrounded rows and are redacted when 7 or fewer
-- referrals are averaged over.

with

effect_sensitivity as (

    select * from {{ ref('mart_effect_sensitivity') }}

),

final as (

    select
        sensitivity_key,
        specification,
        outcome,
        window_days,
        {{ disclosure_count('matched_referral_count') }} as matched_referral_count,
        {{ disclosure_count('cluster_count') }} as cluster_count,
        {{ disclosure_statistic('matched_difference_in_differences', 'matched_referral_count') }}
            as matched_difference_in_differences,
        {{ disclosure_statistic('matched_standard_error', 'matched_referral_count') }} as matched_standard_error,
        {{ disclosure_statistic('matched_ci_lower', 'matched_referral_count') }} as matched_ci_lower,
        {{ disclosure_statistic('matched_ci_upper', 'matched_referral_count') }} as matched_ci_upper,
        {{ disclosure_statistic('change_from_primary', 'matched_referral_count') }} as change_from_primary,
        {{ disclosure_statistic('e_value', 'matched_referral_count') }} as e_value,
        {{ disclosure_statistic('e_value_ci', 'matched_referral_count') }} as e_value_ci
    from effect_sensitivity

)

select * from final
