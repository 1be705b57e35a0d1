-- One row per referral episode (int_referral_episodes_opened) with the person's engagement with
-- VCSE services after it (int_referral_engagements_measured): the fact every referral count reads.

with

referral_episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

referral_engagements as (

    select * from {{ ref('int_referral_engagements_measured') }}

),

final as (

    select
        referral_episodes.episode_key,
        referral_episodes.person_key,
        referral_episodes.episode_sequence,
        referral_episodes.referral_date,
        cast(date_trunc('month', referral_episodes.referral_date) as date) as referral_month,
        referral_episodes.practice_code,
        referral_episodes.pcn_code,
        referral_episodes.gp_system,
        referral_episodes.sex,
        referral_episodes.age_band_at_referral,
        referral_episodes.lsoa21_code,
        referral_episodes.imd_decile,
        referral_episodes.imd_quintile,
        referral_episodes.is_declined,
        referral_engagements.is_engaged,
        referral_engagements.first_attendance_date,
        referral_engagements.days_to_first_attendance,
        referral_engagements.sessions_in_sustained_window,
        referral_engagements.is_sustained
    from referral_episodes
    inner join referral_engagements
        on referral_episodes.episode_key = referral_engagements.episode_key

)

select * from final
