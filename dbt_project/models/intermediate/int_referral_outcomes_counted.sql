-- One row per referral episode x subject (the referred person, or one of their matched comparators)
-- x outcome x window: the subject's events in the window days before the index date (the referral
-- date), [index - window, index), and in the window days from it, [index, index + window).
-- Outcomes: gp_consultations (attended GP consultations), calls_999 (linked 999 calls),
-- see_and_convey (those calls conveyed to hospital). Windows: var outcome_windows_days.
-- Follow-up is complete when [index - window, index + window) lies entirely inside the subject's
-- observed period for that outcome (int_registration_periods_derived): observed_from_date <=
-- index - window and index + window - 1 <= observed_to_date. A subject with no observed period
-- (not on a practice list now) never has complete follow-up.

with

episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

comparators as (

    select * from {{ ref('int_comparators_matched') }}

),

registration_periods as (

    select * from {{ ref('int_registration_periods_derived') }}

),

activity_events as (

    select * from {{ ref('int_activity_events_unioned') }}

),

subjects as (

    select
        episode_key,
        person_key,
        referral_date as index_date,
        'referred' as subject_role,
        cast(1.0 as double) as subject_weight
    from episodes

    union all

    select
        episode_key,
        person_key,
        index_date,
        'comparator' as subject_role,
        comparator_weight as subject_weight
    from comparators

),

outcome_events as (

    select
        person_key,
        event_date,
        'gp_consultations' as outcome
    from activity_events
    where event_type = 'gp_consultation' and is_attended and person_key is not null

    union all

    select
        person_key,
        event_date,
        'calls_999' as outcome
    from activity_events
    where event_type = 'ambulance_call' and person_key is not null

    union all

    select
        person_key,
        event_date,
        'see_and_convey' as outcome
    from activity_events
    where event_type = 'ambulance_call' and is_see_and_convey and person_key is not null

),

windows as (

    {% for window_days in var('outcome_windows_days') -%}
        select {{ window_days }} as window_days
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

outcomes as (

    select outcome_names.outcome
    from (values ('gp_consultations'), ('calls_999'), ('see_and_convey')) as outcome_names (outcome)

),

subject_windows as (

    select
        subjects.*,
        outcomes.outcome,
        windows.window_days,
        cast({{ dbt.dateadd('day', '-windows.window_days', 'subjects.index_date') }} as date) as window_start_date,
        cast({{ dbt.dateadd('day', 'windows.window_days', 'subjects.index_date') }} as date) as window_end_date
    from subjects
    cross join outcomes
    cross join windows

),

counted as (

    select
        subject_windows.episode_key,
        subject_windows.person_key,
        subject_windows.subject_role,
        subject_windows.subject_weight,
        subject_windows.index_date,
        subject_windows.outcome,
        subject_windows.window_days,
        subject_windows.window_start_date,
        subject_windows.window_end_date,
        count(case when outcome_events.event_date < subject_windows.index_date then 1 end) as events_before,
        count(case when outcome_events.event_date >= subject_windows.index_date then 1 end) as events_after
    from subject_windows
    left join outcome_events
        on subject_windows.person_key = outcome_events.person_key
        and subject_windows.outcome = outcome_events.outcome
        and outcome_events.event_date >= subject_windows.window_start_date
        and outcome_events.event_date < subject_windows.window_end_date
    group by
        subject_windows.episode_key,
        subject_windows.person_key,
        subject_windows.subject_role,
        subject_windows.subject_weight,
        subject_windows.index_date,
        subject_windows.outcome,
        subject_windows.window_days,
        subject_windows.window_start_date,
        subject_windows.window_end_date

),

final as (

    select
        counted.episode_key || '|' || counted.subject_role || '|' || counted.person_key || '|'
        || counted.outcome || '|' || cast(counted.window_days as {{ dbt.type_string() }}) as subject_outcome_key,
        counted.episode_key,
        counted.person_key,
        counted.subject_role,
        counted.subject_weight,
        counted.index_date,
        counted.outcome,
        counted.window_days,
        counted.window_start_date,
        counted.window_end_date,
        counted.events_before,
        counted.events_after,
        counted.events_after - counted.events_before as events_change,
        coalesce(
            registration_periods.observed_from_date <= counted.window_start_date
            and registration_periods.observed_to_date >= counted.window_end_date - 1,
            false
        ) as has_complete_follow_up
    from counted
    left join registration_periods
        on counted.person_key = registration_periods.person_key
        and counted.outcome = registration_periods.outcome

)

select * from final
