-- One row per calendar month: mart_frequent_callers_monthly under disclosure control (counts 1-7
-- redacted to null, the rest rounded to the nearest 5; rates from unrounded counts, redacted when
-- their denominator is 7 or fewer or their numerator 1 to 7).

with

frequent_callers as (

    select * from {{ ref('mart_frequent_callers_monthly') }}

),

final as (

    select
        call_month,
        {{ disclosure_count('traced_callers') }} as traced_callers,
        {{ disclosure_count('frequent_callers') }} as frequent_callers,
        {{ disclosure_count('frequent_callers_referred_ever') }} as frequent_callers_referred_ever,
        {{ disclosure_count('frequent_callers_referred_before_month') }} as frequent_callers_referred_before_month,
        {{ disclosure_count('trust_flagged_callers') }} as trust_flagged_callers,
        {{ disclosure_count('callers_flagged_by_both') }} as callers_flagged_by_both,
        {{ disclosure_count('callers_in_agreement') }} as callers_in_agreement,
        {{ disclosure_rate('callers_in_agreement', 'traced_callers') }} as trust_flag_agreement_rate,
        {{ disclosure_rate('frequent_callers_referred_ever', 'frequent_callers') }}
            as share_of_frequent_callers_referred,
        {{ disclosure_count('traced_calls') }} as traced_calls,
        {{ disclosure_count('calls_by_frequent_callers') }} as calls_by_frequent_callers,
        {{ disclosure_count('frequent_communal_addresses') }} as frequent_communal_addresses,
        {{ disclosure_count('calls_from_frequent_communal_addresses') }} as calls_from_frequent_communal_addresses
    from frequent_callers

)

select * from final
