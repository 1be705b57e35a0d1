-- One row per primary matched referral x subject (the referred person or a matched comparator) x
-- outcome (gp_consultations, calls_999) x relative quarter: events in each quarter of
-- matching_quarter_days (91) days around the index date, and the days the subject was followed in
-- it. Quarters -8..-1 come from the risk set (int_matching_risk_sets: [index + 91q, index + 91(q + 1))),
-- fully observed for everyone; quarters 1..4 are [index + 91(q - 1), index + 91q) after it, a
-- comparator being followed only until their own later referral (censoring). Only referrals in the
-- primary 365-day matched analysis of the outcome (fct_referral_outcomes) are kept, so every
-- referred person is followed for all four quarters.

{%- set quarter_days = var('matching_quarter_days') %}
{%- set quarters = var('matching_lookback_quarters') %}

with

risk_sets as (

    select * from {{ ref('int_matching_risk_sets') }}

),

comparators as (

    select * from {{ ref('int_comparators_matched') }}
    where specification = 'primary'

),

referral_outcomes as (

    select * from {{ ref('fct_referral_outcomes') }}

),

outcome_events as (

    -- the events each outcome counts, tagged with it, so that the join below is on (person, outcome)
    select
        person_key,
        event_date,
        case when event_type = 'gp_consultation' then 'gp_consultations' else 'calls_999' end as outcome
    from {{ ref('int_activity_events_unioned') }}
    where (event_type = 'gp_consultation' and is_attended) or event_type = 'ambulance_call'

),

analysed as (

    select
        episode_key,
        outcome,
        cluster_code
    from referral_outcomes
    where window_days = 365
        and is_in_matched_analysis
        and outcome in ('gp_consultations', 'calls_999')

),

subjects as (

    select
        risk_sets.episode_key,
        risk_sets.person_key,
        risk_sets.index_date,
        case when risk_sets.is_referred then 'referred' else 'comparator' end as subject_role,
        coalesce(comparators.comparator_weight, 1.0) as subject_weight,
        comparators.later_referral_date,
        {% for quarter in range(1, quarters + 1) -%}
            risk_sets.gp_quarter_{{ quarter }},
            risk_sets.calls_999_quarter_{{ quarter }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from risk_sets
    left join comparators
        on risk_sets.episode_key = comparators.episode_key
        and risk_sets.person_key = comparators.person_key
    where risk_sets.is_referred or comparators.person_key is not null

),

pre_quarters as (

    {% for quarter in range(1, quarters + 1) -%}
        select
            subjects.episode_key,
            subjects.person_key,
            subjects.subject_role,
            subjects.subject_weight,
            analysed.outcome,
            analysed.cluster_code,
            -{{ quarter }} as relative_quarter,
            case
                when analysed.outcome = 'gp_consultations' then subjects.gp_quarter_{{ quarter }}
                else subjects.calls_999_quarter_{{ quarter }}
            end as events,
            {{ quarter_days }} as followed_days
        from subjects
        inner join analysed
            on subjects.episode_key = analysed.episode_key
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

post_windows as (

    select
        subjects.episode_key,
        subjects.person_key,
        subjects.subject_role,
        subjects.subject_weight,
        analysed.outcome,
        analysed.cluster_code,
        quarters.relative_quarter,
        cast({{ dbt.dateadd('day', 'quarters.start_offset', 'subjects.index_date') }} as date) as quarter_start_date,
        least(
            cast({{ dbt.dateadd('day', 'quarters.end_offset', 'subjects.index_date') }} as date),
            coalesce(
                subjects.later_referral_date,
                cast({{ dbt.dateadd('day', 'quarters.end_offset', 'subjects.index_date') }} as date)
            )
        ) as followed_until_date
    from subjects
    inner join analysed
        on subjects.episode_key = analysed.episode_key
    cross join (
        values
        (1, 0, {{ quarter_days }}),
        (2, {{ quarter_days }}, {{ 2 * quarter_days }}),
        (3, {{ 2 * quarter_days }}, {{ 3 * quarter_days }}),
        (4, {{ 3 * quarter_days }}, {{ 4 * quarter_days }})
    ) as quarters (relative_quarter, start_offset, end_offset)

),

post_quarters as (

    select
        post_windows.episode_key,
        post_windows.person_key,
        post_windows.subject_role,
        post_windows.subject_weight,
        post_windows.outcome,
        post_windows.cluster_code,
        post_windows.relative_quarter,
        count(outcome_events.event_date) as events,
        greatest({{ dbt.datediff('post_windows.quarter_start_date', 'post_windows.followed_until_date', 'day') }}, 0)
            as followed_days
    from post_windows
    left join outcome_events
        on post_windows.person_key = outcome_events.person_key
        and post_windows.outcome = outcome_events.outcome
        and outcome_events.event_date >= post_windows.quarter_start_date
        and outcome_events.event_date < post_windows.followed_until_date
    group by
        post_windows.episode_key,
        post_windows.person_key,
        post_windows.subject_role,
        post_windows.subject_weight,
        post_windows.outcome,
        post_windows.cluster_code,
        post_windows.relative_quarter,
        post_windows.quarter_start_date,
        post_windows.followed_until_date

),

unioned as (

    select * from pre_quarters
    union all
    select * from post_quarters

),

final as (

    select
        episode_key || '|' || person_key || '|' || outcome || '|' || cast(relative_quarter as {{ dbt.type_string() }})
            as event_study_count_key,
        *
    from unioned

)

select * from final
