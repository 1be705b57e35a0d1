-- One row per VCSE service and month: mart_vcse_activity_monthly under disclosure control (counts
-- 1-7 redacted to null, the rest rounded to the nearest 5; rates from unrounded counts, redacted
-- when their denominator is 7 or fewer or their numerator 1 to 7).

with

vcse_activity as (

    select * from {{ ref('mart_vcse_activity_monthly') }}

),

final as (

    select
        service_month_key,
        service_id,
        session_month,
        {{ disclosure_count('sessions') }} as sessions,
        {{ disclosure_count('attendances') }} as attendances,
        {{ disclosure_count('did_not_attend_rows') }} as did_not_attend_rows,
        {{ disclosure_count('register_rows') }} as register_rows,
        {{ disclosure_rate('did_not_attend_rows', 'register_rows') }} as did_not_attend_rate,
        {{ disclosure_count('unique_attendees') }} as unique_attendees,
        {{ disclosure_count('unique_attendees_referred') }} as unique_attendees_referred,
        {{ disclosure_rate('unique_attendees_referred', 'unique_attendees') }} as share_of_attendees_referred
    from vcse_activity

)

select * from final
