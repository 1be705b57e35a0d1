-- One row per referral episode x subject (the referred person, or a person matched to the referral
-- as a comparator under any specification of int_comparators_matched) x outcome x window: the
-- subject's events in the window days before the index date (the referral date),
-- [index - window, index), and in the window days from it, [index, index + window).
-- Outcomes: gp_consultations (attended GP consultations), calls_999 (linked 999 calls),
-- see_and_convey (those calls conveyed to hospital). Windows: var outcome_windows_days.
-- events_after counts the whole window: in the primary analysis a comparator referred later stays
-- in the comparison arm ("not referred now": usual care, which may include a later referral). For
-- the sensitivity analysis that censors them at their own later referral, follow_up_end_date is
-- that referral (or the window's end), follow_up_days the days up to it,
-- events_after_uncensored_days the events in them, and events_after_per_window those events
-- scaled to the whole window (a rate per window; events_after_per_person_year per 365.25 days).
-- The referred person's follow-up is complete when
-- [index - window, index + window) lies entirely inside their observed period for that outcome
-- (int_registration_periods_derived): observed_from_date <= index - window and
-- index + window - 1 <= observed_to_date. Deregistration and death are not in the feeds: the
-- population is the people on a practice list at the extract date (docs/methods.md).

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
        cast(null as date) as censored_date
    from episodes

    union all

    select distinct
        episode_key,
        person_key,
        index_date,
        'comparator' as subject_role,
        later_referral_date as censored_date
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
        cast({{ dbt.dateadd('day', 'windows.window_days', 'subjects.index_date') }} as date) as window_end_date,
        least(
            cast({{ dbt.dateadd('day', 'windows.window_days', 'subjects.index_date') }} as date),
            coalesce(
                subjects.censored_date,
                cast({{ dbt.dateadd('day', 'windows.window_days', 'subjects.index_date') }} as date)
            )
        ) as follow_up_end_date
    from subjects
    cross join outcomes
    cross join windows

),

counted as (

    select
        subject_windows.episode_key,
        subject_windows.person_key,
        subject_windows.subject_role,
        subject_windows.index_date,
        subject_windows.outcome,
        subject_windows.window_days,
        subject_windows.window_start_date,
        subject_windows.window_end_date,
        subject_windows.follow_up_end_date,
        {{ dbt.datediff('subject_windows.index_date', 'subject_windows.follow_up_end_date', 'day') }}
            as follow_up_days,
        count(case when outcome_events.event_date < subject_windows.index_date then 1 end) as events_before,
        count(case when outcome_events.event_date >= subject_windows.index_date then 1 end) as events_after,
        count(
            case
                when outcome_events.event_date >= subject_windows.index_date
                    and outcome_events.event_date < subject_windows.follow_up_end_date
                    then 1
            end
        ) as events_after_uncensored_days
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
        subject_windows.index_date,
        subject_windows.outcome,
        subject_windows.window_days,
        subject_windows.window_start_date,
        subject_windows.window_end_date,
        subject_windows.follow_up_end_date

),

final as (

    select
        counted.episode_key || '|' || counted.subject_role || '|' || counted.person_key || '|'
        || counted.outcome || '|' || cast(counted.window_days as {{ dbt.type_string() }}) as subject_outcome_key,
        counted.episode_key,
        counted.person_key,
        counted.subject_role,
        counted.index_date,
        counted.outcome,
        counted.window_days,
        counted.window_start_date,
        counted.window_end_date,
        counted.follow_up_end_date,
        counted.follow_up_days,
        counted.follow_up_end_date < counted.window_end_date as is_censored,
        counted.events_before,
        counted.events_after,
        counted.events_after_uncensored_days,
        case
            when counted.follow_up_days > 0
                then counted.events_after_uncensored_days * counted.window_days / cast(counted.follow_up_days as double)
        end as events_after_per_window,
        case
            when counted.follow_up_days > 0
                then counted.events_after_uncensored_days * 365.25 / cast(counted.follow_up_days as double)
        end as events_after_per_person_year,
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
