-- One row per calendar month: mart_frequent_callers_monthly under disclosure control, a status beside
-- every figure (counts 1-7
-- redacted to null, the rest rounded to the nearest 5; rates from unrounded counts, redacted when
-- their denominator is 7 or fewer or their numerator 1 to 7).

with

frequent_callers as (

    select * from {{ ref('mart_frequent_callers_monthly') }}

),

final as (

    select
        call_month,
        {{ count_with_status('traced_callers') }},
        {{ count_with_status('frequent_callers') }},
        {{ count_with_status('frequent_callers_referred_ever') }},
        {{ count_with_status('frequent_callers_referred_before_month') }},
        {{ count_with_status('trust_flagged_callers') }},
        {{ count_with_status('callers_flagged_by_both') }},
        {{ count_with_status('callers_in_agreement') }},
        {{ rate_with_status('callers_in_agreement', 'traced_callers', 'trust_flag_agreement_rate') }},
        {{ rate_with_status(
            'frequent_callers_referred_ever', 'frequent_callers', 'share_of_frequent_callers_referred'
        ) }},
        {{ count_with_status('traced_calls') }},
        {{ count_with_status('calls_by_frequent_callers') }},
        {{ count_with_status('frequent_communal_addresses') }},
        {{ count_with_status('calls_from_frequent_communal_addresses') }}
    from frequent_callers

)

select * from final
