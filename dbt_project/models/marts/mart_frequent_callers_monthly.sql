-- One row per calendar month (UK local date of the calls) with a traced 999 call or a communal
-- address call: frequent callers by the national definition recomputed from the calls, how many of
-- them were ever referred to social prescribing and how many before the month, agreement with the
-- ambulance trust's own flag, their calls, and frequently calling communal addresses.

with

frequent_caller_months as (

    select * from {{ ref('int_frequent_caller_months_flagged') }}

),

communal_address_months as (

    select * from {{ ref('int_communal_address_months_flagged') }}

),

referrals as (

    select * from {{ ref('fct_referrals') }}

),

first_referrals as (

    select
        person_key,
        min(referral_date) as first_referral_date
    from referrals
    group by person_key

),

callers_per_month as (

    select
        frequent_caller_months.call_month,
        count(*) as traced_callers,
        count(*) filter (where frequent_caller_months.is_frequent_caller) as frequent_callers,
        count(*) filter (
            where frequent_caller_months.is_frequent_caller and first_referrals.person_key is not null
        ) as frequent_callers_referred_ever,
        count(*) filter (
            where frequent_caller_months.is_frequent_caller
            and first_referrals.first_referral_date < frequent_caller_months.call_month
        ) as frequent_callers_referred_before_month,
        count(*) filter (where frequent_caller_months.is_trust_frequent_caller) as trust_flagged_callers,
        count(*) filter (
            where frequent_caller_months.is_frequent_caller and frequent_caller_months.is_trust_frequent_caller
        ) as callers_flagged_by_both,
        count(*) filter (where frequent_caller_months.is_trust_flag_in_agreement) as callers_in_agreement,
        coalesce(sum(frequent_caller_months.calls_in_month), 0) as traced_calls,
        coalesce(
            sum(frequent_caller_months.calls_in_month) filter (where frequent_caller_months.is_frequent_caller), 0
        ) as calls_by_frequent_callers
    from frequent_caller_months
    left join first_referrals
        on frequent_caller_months.person_key = first_referrals.person_key
    group by frequent_caller_months.call_month

),

communal_addresses_per_month as (

    select
        call_month,
        count(*) filter (where is_frequent_communal_address) as frequent_communal_addresses,
        coalesce(sum(communal_calls_in_month) filter (where is_frequent_communal_address), 0)
            as calls_from_frequent_communal_addresses
    from communal_address_months
    group by call_month

),

months as (

    select call_month from callers_per_month
    union
    select call_month from communal_addresses_per_month

),

final as (

    select
        months.call_month,
        coalesce(callers_per_month.traced_callers, 0) as traced_callers,
        coalesce(callers_per_month.frequent_callers, 0) as frequent_callers,
        coalesce(callers_per_month.frequent_callers_referred_ever, 0) as frequent_callers_referred_ever,
        coalesce(callers_per_month.frequent_callers_referred_before_month, 0)
            as frequent_callers_referred_before_month,
        coalesce(callers_per_month.trust_flagged_callers, 0) as trust_flagged_callers,
        coalesce(callers_per_month.callers_flagged_by_both, 0) as callers_flagged_by_both,
        coalesce(callers_per_month.callers_in_agreement, 0) as callers_in_agreement,
        cast(callers_per_month.callers_in_agreement as double) / nullif(callers_per_month.traced_callers, 0)
            as trust_flag_agreement_rate,
        cast(coalesce(callers_per_month.traced_calls, 0) as bigint) as traced_calls,
        cast(coalesce(callers_per_month.calls_by_frequent_callers, 0) as bigint) as calls_by_frequent_callers,
        coalesce(communal_addresses_per_month.frequent_communal_addresses, 0) as frequent_communal_addresses,
        cast(coalesce(communal_addresses_per_month.calls_from_frequent_communal_addresses, 0) as bigint)
            as calls_from_frequent_communal_addresses
    from months
    left join callers_per_month
        on months.call_month = callers_per_month.call_month
    left join communal_addresses_per_month
        on months.call_month = communal_addresses_per_month.call_month

)

select * from final
