-- One row per covariate x IMD quintile (plus `all`): mart_covariate_balance under disclosure
-- control. Counts 1-7 are redacted (null), the rest rounded to the nearest 5; means and
-- standardised mean differences come from the unrounded rows and are redacted when the referrals
-- they describe number 7 or fewer.
-- Every redactable figure X has X_status ('shown', 'redacted', 'not_applicable').

with

covariate_balance as (

    select * from {{ ref('mart_covariate_balance') }}

),

final as (

    select
        covariate_balance_key,
        covariate,
        imd_quintile,
        {{ count_with_status('referred_count') }},
        {{ count_with_status('matched_referred_count') }},
        {{ count_with_status('candidate_count') }},
        {{ statistic_with_status('referred_mean_before', 'referred_count', 'referred_mean_before') }},
        {{ statistic_with_status('candidate_mean', 'referred_count', 'candidate_mean') }},
        {{ statistic_with_status('referred_mean_after', 'matched_referred_count', 'referred_mean_after') }},
        {{ statistic_with_status('comparator_mean_after', 'matched_referred_count', 'comparator_mean_after') }},
        {{ statistic_with_status('smd_before', 'referred_count', 'smd_before') }},
        {{ statistic_with_status('smd_after', 'matched_referred_count', 'smd_after') }}
    from covariate_balance

)

select * from final
