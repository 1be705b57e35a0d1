-- Invariant: a first attendance falls from the referral date to engagement_window_days after it,
-- an engaged episode has at least that one session in its sustained window, and an episode not
-- engaged has none. Returns the episodes where that fails.

with

engagements as (

    select * from {{ ref('int_referral_engagements_measured') }}

)

select *
from engagements
where
    (
        is_engaged
        and (
            first_attendance_date < referral_date
            or days_to_first_attendance > {{ var('engagement_window_days') }}
            or sessions_in_sustained_window < 1
        )
    )
    or (not is_engaged and (first_attendance_date is not null or sessions_in_sustained_window != 0))
    or (is_sustained and not is_engaged)
