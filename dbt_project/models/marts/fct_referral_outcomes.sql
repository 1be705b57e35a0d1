-- One row per referral episode x outcome x window: the referred person's events before and after
-- the referral date (see int_referral_outcomes_counted for the windows and the completeness rule),
-- beside the same counts for their matched comparators (int_comparators_matched) that have
-- complete follow-up, each referral's comparators weighted to 1 (their plain mean).

with

episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

outcomes_counted as (

    select * from {{ ref('int_referral_outcomes_counted') }}

),

referred as (

    select * from outcomes_counted
    where subject_role = 'referred'

),

comparators_summarised as (

    select
        episode_key,
        outcome,
        window_days,
        count(*) as matched_comparator_count,
        count(case when has_complete_follow_up then 1 end) as complete_comparator_count,
        avg(case when has_complete_follow_up then events_before end) as comparator_mean_events_before,
        avg(case when has_complete_follow_up then events_after end) as comparator_mean_events_after,
        avg(case when has_complete_follow_up then events_change end) as comparator_mean_change
    from outcomes_counted
    where subject_role = 'comparator'
    group by episode_key, outcome, window_days

),

final as (

    select
        referred.episode_key || '|' || referred.outcome || '|' || cast(referred.window_days as {{ dbt.type_string() }})
            as referral_outcome_key,
        referred.episode_key,
        referred.person_key,
        referred.index_date as referral_date,
        episodes.practice_code,
        episodes.pcn_code,
        episodes.sex,
        episodes.age_band_at_referral,
        episodes.imd_quintile,
        episodes.is_declined,
        referred.outcome,
        referred.window_days,
        referred.window_start_date,
        referred.window_end_date,
        referred.events_before,
        referred.events_after,
        referred.events_change,
        referred.has_complete_follow_up,
        coalesce(comparators_summarised.matched_comparator_count, 0) as matched_comparator_count,
        coalesce(comparators_summarised.complete_comparator_count, 0) as complete_comparator_count,
        comparators_summarised.comparator_mean_events_before,
        comparators_summarised.comparator_mean_events_after,
        comparators_summarised.comparator_mean_change,
        referred.has_complete_follow_up
        and coalesce(comparators_summarised.complete_comparator_count, 0) > 0 as is_in_matched_analysis,
        case
            when referred.has_complete_follow_up and comparators_summarised.complete_comparator_count > 0
                then referred.events_change - comparators_summarised.comparator_mean_change
        end as matched_difference_in_differences
    from referred
    inner join episodes
        on referred.episode_key = episodes.episode_key
    left join comparators_summarised
        on referred.episode_key = comparators_summarised.episode_key
        and referred.outcome = comparators_summarised.outcome
        and referred.window_days = comparators_summarised.window_days

)

select * from final
