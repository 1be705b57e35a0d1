-- One row per covariate x IMD quintile (plus `all`): mart_covariate_balance under disclosure
-- control. Counts 1-7 are redacted (null), the rest rounded to the nearest 5; means and
-- standardised mean differences come from the unrounded rows and are redacted when the referrals
-- they describe number 7 or fewer.

with

covariate_balance as (

    select * from {{ ref('mart_covariate_balance') }}

),

final as (

    select
        covariate_balance_key,
        covariate,
        imd_quintile,
        {{ disclosure_count('referred_count') }} as referred_count,
        {{ disclosure_count('matched_referred_count') }} as matched_referred_count,
        {{ disclosure_count('candidate_count') }} as candidate_count,
        {{ disclosure_statistic('referred_mean_before', 'referred_count') }} as referred_mean_before,
        {{ disclosure_statistic('candidate_mean', 'referred_count') }} as candidate_mean,
        {{ disclosure_statistic('referred_mean_after', 'matched_referred_count') }} as referred_mean_after,
        {{ disclosure_statistic('comparator_mean_after', 'matched_referred_count') }} as comparator_mean_after,
        {{ disclosure_statistic('smd_before', 'referred_count') }} as smd_before,
        {{ disclosure_statistic('smd_after', 'matched_referred_count') }} as smd_after
    from covariate_balance

)

select * from final
