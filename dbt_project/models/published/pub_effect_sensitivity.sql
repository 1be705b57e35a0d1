-- One row per matching specification x outcome x window: mart_effect_sensitivity under
-- disclosure control. The referral count is redacted when 1-7, else rounded to the nearest 5;
-- estimates, intervals and E-values come from the unrounded rows and are redacted when 7 or fewer
-- referrals are averaged over.
-- Every redactable figure X has X_status ('shown', 'redacted', 'not_applicable').

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
        {{ count_with_status('matched_referral_count') }},
        {{ count_with_status('cluster_count') }},
        {{ statistic_with_status(
            'matched_difference_in_differences', 'matched_referral_count', 'matched_difference_in_differences'
        ) }},
        {{ statistic_with_status('matched_standard_error', 'matched_referral_count', 'matched_standard_error') }},
        {{ statistic_with_status('matched_ci_lower', 'matched_referral_count', 'matched_ci_lower') }},
        {{ statistic_with_status('matched_ci_upper', 'matched_referral_count', 'matched_ci_upper') }},
        {{ statistic_with_status('change_from_primary', 'matched_referral_count', 'change_from_primary') }},
        {{ statistic_with_status('e_value', 'matched_referral_count', 'e_value') }},
        {{ statistic_with_status('e_value_ci', 'matched_referral_count', 'e_value_ci') }}
    from effect_sensitivity

)

select * from final
