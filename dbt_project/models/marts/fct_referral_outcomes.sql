-- One row per referral episode x outcome x window: the referred person's events before and after
-- the referral date (see int_referral_outcomes_counted for the windows and the completeness rule),
-- whether the referral is eligible for the matched analysis (int_matching_risk_sets: two years of
-- observed history, and the person's first observed referral: the primary analysis's new users),
-- whether it engaged, and its primary
-- matched contrast (int_referral_contrasts, specification `primary`): the comparators' weighted
-- before and after counts (after as a rate over the days followed, comparators being censored at
-- their own later referral) and the difference in differences.

with

episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

engagements as (

    select * from {{ ref('int_referral_engagements_measured') }}

),

outcomes_counted as (

    select * from {{ ref('int_referral_outcomes_counted') }}

),

risk_sets as (

    select * from {{ ref('int_matching_risk_sets') }}

),

contrasts as (

    select * from {{ ref('int_referral_contrasts') }}
    where specification = 'primary'

),

referred as (

    select * from outcomes_counted
    where subject_role = 'referred'

),

eligible as (

    select distinct episode_key
    from risk_sets
    where is_referred
        and previous_referral_date is null

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
        episodes.{{ 'pcn_code' if var('matching_area') == 'pcn' else 'practice_code' }} as cluster_code,
        episodes.sex,
        episodes.age_band_at_referral,
        episodes.imd_quintile,
        episodes.is_declined,
        coalesce(engagements.is_engaged, false) as is_engaged,
        referred.outcome,
        referred.window_days,
        referred.window_start_date,
        referred.window_end_date,
        referred.events_before,
        referred.events_after,
        referred.events_change,
        referred.events_after_per_person_year,
        referred.has_complete_follow_up,
        eligible.episode_key is not null as is_eligible,
        referred.has_complete_follow_up and eligible.episode_key is not null as is_in_target_population,
        coalesce(contrasts.comparator_count, 0) as matched_comparator_count,
        coalesce(contrasts.comparator_count, 0) as complete_comparator_count,
        coalesce(contrasts.censored_comparator_count, 0) as censored_comparator_count,
        contrasts.comparator_mean_events_before,
        contrasts.comparator_mean_events_after,
        contrasts.comparator_mean_change,
        referred.has_complete_follow_up and eligible.episode_key is not null
        and contrasts.episode_key is not null as is_in_matched_analysis,
        case
            when referred.has_complete_follow_up and eligible.episode_key is not null
                then contrasts.difference_in_differences
        end as matched_difference_in_differences,
        case
            when referred.has_complete_follow_up and eligible.episode_key is not null
                then contrasts.unadjusted_difference_in_differences
        end as matched_unadjusted_difference_in_differences
    from referred
    inner join episodes
        on referred.episode_key = episodes.episode_key
    left join engagements
        on referred.episode_key = engagements.episode_key
    left join eligible
        on referred.episode_key = eligible.episode_key
    left join contrasts
        on referred.episode_key = contrasts.episode_key
        and referred.outcome = contrasts.outcome
        and referred.window_days = contrasts.window_days

)

select * from final
