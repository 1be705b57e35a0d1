-- One row per traced person and calendar month (UK local date of the call) in which they made at
-- least one 999 call, flagged by the national frequent-caller definition, recomputed here from the
-- calls and never taken from the trust's own flag (kept beside it only to report agreement):
--   adults (aged frequent_caller_adult_age or over at their last call in the month): calls in the
--   month >= frequent_caller_adult_calls_in_month, or calls in the month and the two calendar months
--   before it >= frequent_caller_adult_calls_in_3_months;
--   under-18s: calls in the month and the five calendar months before it
--   >= frequent_caller_under_18_calls_in_6_months.
-- Traced calls only: an untraced call (no NHS number) cannot be put to a person.

{%- set adult_age = var('frequent_caller_adult_age') %}
{%- set adult_calls_in_month = var('frequent_caller_adult_calls_in_month') %}
{%- set adult_calls_in_3_months = var('frequent_caller_adult_calls_in_3_months') %}
{%- set under_18_calls_in_6_months = var('frequent_caller_under_18_calls_in_6_months') %}

with

ambulance_incidents as (

    select * from {{ ref('stg_ambulance__incidents') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

traced_calls as (

    select
        feed_records.person_key,
        ambulance_incidents.incident_key,
        ambulance_incidents.call_received_at,
        ambulance_incidents.call_month,
        ambulance_incidents.age_at_call,
        coalesce(ambulance_incidents.is_trust_frequent_caller, false) as is_trust_frequent_caller
    from ambulance_incidents
    inner join feed_records
        on feed_records.feed = 'ambulance'
        and ambulance_incidents.incident_key = feed_records.record_key
    where ambulance_incidents.is_traced

),

-- The month's last call with a known age gives the age the rule is chosen by.
calls_ordered_in_month as (

    select
        *,
        row_number() over (
            partition by person_key, call_month
            order by case when age_at_call is null then 1 else 0 end, call_received_at desc, incident_key desc
        ) as order_from_last
    from traced_calls

),

calls_per_month as (

    select
        person_key,
        call_month,
        count(*) as calls_in_month,
        max(case when order_from_last = 1 then age_at_call end) as age_at_last_call,
        count(case when is_trust_frequent_caller then 1 end) as trust_flagged_calls_in_month
    from calls_ordered_in_month
    group by person_key, call_month

),

-- Calls in this month and the calendar months before it (months without calls add nothing).
calls_over_months as (

    select
        this_month.person_key,
        this_month.call_month,
        cast(sum(
            case
                when earlier_month.call_month
                    >= cast({{ dbt.dateadd('month', -2, 'this_month.call_month') }} as date)
                    then earlier_month.calls_in_month
                else 0
            end
        ) as bigint) as calls_in_3_months,
        cast(sum(earlier_month.calls_in_month) as bigint) as calls_in_6_months
    from calls_per_month as this_month
    inner join calls_per_month as earlier_month
        on this_month.person_key = earlier_month.person_key
        and earlier_month.call_month <= this_month.call_month
        and earlier_month.call_month >= cast({{ dbt.dateadd('month', -5, 'this_month.call_month') }} as date)
    group by this_month.person_key, this_month.call_month

),

months_assessed as (

    select
        calls_per_month.*,
        calls_over_months.calls_in_3_months,
        calls_over_months.calls_in_6_months,
        -- with no age on any call of the month, the adult rule applies
        coalesce(calls_per_month.age_at_last_call < {{ adult_age }}, false) as is_under_18
    from calls_per_month
    inner join calls_over_months
        on calls_per_month.person_key = calls_over_months.person_key
        and calls_per_month.call_month = calls_over_months.call_month

),

months_flagged as (

    select
        *,
        not is_under_18 and calls_in_month >= {{ adult_calls_in_month }} as meets_adult_month_rule,
        not is_under_18 and calls_in_3_months >= {{ adult_calls_in_3_months }} as meets_adult_3_month_rule,
        is_under_18 and calls_in_6_months >= {{ under_18_calls_in_6_months }} as meets_under_18_6_month_rule
    from months_assessed

),

final as (

    select
        person_key || ':' || cast(call_month as {{ dbt.type_string() }}) as frequent_caller_month_key,
        person_key,
        call_month,
        calls_in_month,
        calls_in_3_months,
        calls_in_6_months,
        age_at_last_call,
        is_under_18,
        meets_adult_month_rule,
        meets_adult_3_month_rule,
        meets_under_18_6_month_rule,
        meets_adult_month_rule or meets_adult_3_month_rule or meets_under_18_6_month_rule as is_frequent_caller,
        trust_flagged_calls_in_month,
        trust_flagged_calls_in_month > 0 as is_trust_frequent_caller,
        (
            (meets_adult_month_rule or meets_adult_3_month_rule or meets_under_18_6_month_rule)
            = (trust_flagged_calls_in_month > 0)
        ) as is_trust_flag_in_agreement
    from months_flagged

)

select * from final
