-- One row per outcome x quarter relative to the referral: mart_event_study under disclosure
-- control. The referral count is redacted when 1-7, else rounded to the nearest 5; the estimate,
-- its interval and the pre-trend test come from the unrounded rows and are redacted when 7 or
-- fewer referrals are averaged over. Every published integer is a count, so the quarter and the
-- degrees of freedom are numbers (double) and the cluster count is rounded like a count.
-- Every redactable figure X has X_status ('shown', 'redacted', 'not_applicable').

with

event_study as (

    select * from {{ ref('mart_event_study') }}

),

final as (

    select
        event_study_key,
        outcome,
        cast(relative_quarter as double) as relative_quarter,
        is_before_index,
        {{ count_with_status('referral_count') }},
        {{ count_with_status('cluster_count') }},
        {{ statistic_with_status('estimate', 'referral_count', 'estimate') }},
        {{ statistic_with_status('standard_error', 'referral_count', 'standard_error') }},
        {{ statistic_with_status('ci_lower', 'referral_count', 'ci_lower') }},
        {{ statistic_with_status('ci_upper', 'referral_count', 'ci_upper') }},
        {{ statistic_with_status('pre_trend_chi_square', 'referral_count', 'pre_trend_chi_square') }},
        cast(pre_trend_degrees_of_freedom as double) as pre_trend_degrees_of_freedom,
        {{ statistic_with_status('pre_trend_p_value', 'referral_count', 'pre_trend_p_value') }}
    from event_study

)

select * from final
