-- Invariant: every referral code of a person falls in exactly one of their episodes (from its
-- referral date to the day before its window ends), and the episode's code count says so.
-- Returns codes in no episode or in several, and episodes whose count disagrees.

with

social_prescribing_codes as (

    select * from {{ ref('int_social_prescribing_codes_unioned') }}

),

referral_episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

codes_in_episodes as (

    select
        social_prescribing_codes.coded_event_key,
        referral_episodes.episode_key
    from social_prescribing_codes
    left join referral_episodes
        on social_prescribing_codes.person_key = referral_episodes.person_key
        and social_prescribing_codes.event_date >= referral_episodes.referral_date
        and social_prescribing_codes.event_date < referral_episodes.episode_window_end_date
    where social_prescribing_codes.code_role = 'referral'

),

codes_not_in_one_episode as (

    select
        coded_event_key,
        count(episode_key) as episodes
    from codes_in_episodes
    group by coded_event_key
    having count(episode_key) != 1

),

episode_counts_disagreeing as (

    select
        referral_episodes.episode_key,
        count(codes_in_episodes.coded_event_key) as episodes
    from referral_episodes
    left join codes_in_episodes
        on referral_episodes.episode_key = codes_in_episodes.episode_key
    group by referral_episodes.episode_key, referral_episodes.referral_code_count
    having count(codes_in_episodes.coded_event_key) != referral_episodes.referral_code_count

)

select
    coded_event_key as failing_key,
    episodes
from codes_not_in_one_episode
union all
select
    episode_key as failing_key,
    episodes
from episode_counts_disagreeing
