-- One row per VCSE service (and `all` services) and period (month, quarter, financial year):
-- mart_vcse_activity_periods under disclosure control, with a status beside every redactable
-- figure. Sessions are an organisational count and are published as they are; counts of people and
-- of attendances 1-7 are redacted, the rest rounded to the nearest 5, with secondary suppression
-- (mart_vcse_activity_suppression) so that no redacted count can be worked out by subtraction.

with

activity as (

    select * from {{ ref('mart_vcse_activity_periods') }}

),

suppression as (

    select * from {{ ref('mart_vcse_activity_suppression') }}

),

joined as (

    select
        activity.*,
        suppression.attendances_redacted,
        suppression.did_not_attend_rows_redacted,
        suppression.register_rows_redacted
    from activity
    inner join suppression
        on activity.service_period_key = suppression.service_period_key

),

final as (

    select
        service_period_key,
        service_id,
        period_type,
        period_start,
        period_end,
        period_label,
        is_complete_period,
        sessions,
        {{ count_with_status('attendances', redacted='attendances_redacted') }},
        {{ count_with_status('did_not_attend_rows', redacted='did_not_attend_rows_redacted') }},
        {{ count_with_status('register_rows', redacted='register_rows_redacted') }},
        {{ rate_with_status('did_not_attend_rows', 'register_rows', 'did_not_attend_rate',
            redacted='(did_not_attend_rows_redacted or register_rows_redacted or attendances_redacted)') }},
        {{ count_with_status('unique_attendees') }},
        {{ count_with_status('unique_attendees_referred') }},
        {{ rate_with_status('unique_attendees_referred', 'unique_attendees', 'share_of_attendees_referred') }},
        {{ count_with_status('people_with_wellbeing_change') }},
        {{ statistic_with_status('mean_first_wellbeing_score', 'people_with_wellbeing_change',
            'mean_first_wellbeing_score') }},
        {{ statistic_with_status('mean_last_wellbeing_score', 'people_with_wellbeing_change',
            'mean_last_wellbeing_score') }},
        {{ statistic_with_status('mean_wellbeing_change', 'people_with_wellbeing_change', 'mean_wellbeing_change') }}
    from joined

)

select * from final
