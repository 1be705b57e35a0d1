-- One row per outcome x quarter relative to the referral: mart_event_study under disclosure
-- control. The referral count is redacted when 1-7, else rounded to the nearest 5; the estimate,
-- its interval and the pre-trend test come from the unrounded rows and are redacted when 7 or
-- fewer referrals are averaged over. Every published integer is a count, so the quarter and the
-- degrees of freedom are numbers (double) and the cluster count is rounded like a count.

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
        {{ disclosure_count('referral_count') }} as referral_count,
        {{ disclosure_count('cluster_count') }} as cluster_count,
        {{ disclosure_statistic('estimate', 'referral_count') }} as estimate,
        {{ disclosure_statistic('standard_error', 'referral_count') }} as standard_error,
        {{ disclosure_statistic('ci_lower', 'referral_count') }} as ci_lower,
        {{ disclosure_statistic('ci_upper', 'referral_count') }} as ci_upper,
        {{ disclosure_statistic('pre_trend_chi_square', 'referral_count') }} as pre_trend_chi_square,
        cast(pre_trend_degrees_of_freedom as double) as pre_trend_degrees_of_freedom,
        {{ disclosure_statistic('pre_trend_p_value', 'referral_count') }} as pre_trend_p_value
    from event_study

)

select * from final
