-- Invariant: the call windows nest (month <= 3 months <= 6 months), a month is flagged exactly
-- when one of the rules for the caller's age group is met, and adults never meet the under-18
-- rule nor children the adult ones. Returns the person-months where that fails.

with

frequent_caller_months as (

    select * from {{ ref('int_frequent_caller_months_flagged') }}

)

select *
from frequent_caller_months
where calls_in_month < 1
    or calls_in_month > calls_in_3_months
    or calls_in_3_months > calls_in_6_months
    or is_frequent_caller != (meets_adult_month_rule or meets_adult_3_month_rule or meets_under_18_6_month_rule)
    or (is_under_18 and (meets_adult_month_rule or meets_adult_3_month_rule))
    or (not is_under_18 and meets_under_18_6_month_rule)
