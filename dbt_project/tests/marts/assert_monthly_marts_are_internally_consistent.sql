-- The parts of each monthly mart fit inside their wholes. Returns the rows that do not:
-- funnel: sustained <= engaged <= episodes, declined <= episodes, referred people <= episodes;
-- frequent callers: referred before the month <= referred ever <= frequent callers <= traced
-- callers, calls by frequent callers <= traced calls, agreement <= traced callers;
-- VCSE: attendances + did not attend = register rows, referred attendees <= attendees <= attendances.

select
    'mart_referral_funnel_monthly' as mart,
    practice_month_key as row_key
from {{ ref('mart_referral_funnel_monthly') }}
where sustained_episodes > engaged_episodes
    or engaged_episodes > referral_episodes
    or declined_episodes > referral_episodes
    or referred_people > referral_episodes

union all

select
    'mart_frequent_callers_monthly' as mart,
    cast(call_month as {{ dbt.type_string() }}) as row_key
from {{ ref('mart_frequent_callers_monthly') }}
where frequent_callers_referred_before_month > frequent_callers_referred_ever
    or frequent_callers_referred_ever > frequent_callers
    or frequent_callers > traced_callers
    or calls_by_frequent_callers > traced_calls
    or callers_in_agreement > traced_callers
    or callers_flagged_by_both > frequent_callers

union all

select
    'mart_vcse_activity_monthly' as mart,
    service_month_key as row_key
from {{ ref('mart_vcse_activity_monthly') }}
where attendances + did_not_attend_rows != register_rows
    or unique_attendees_referred > unique_attendees
    or unique_attendees > attendances
