-- One row per referral episode: a person's social prescribing referral code opens an episode unless
-- an episode of theirs opened in the previous episode_window_days (180) days. The gap is measured
-- from the episode's start, not from the previous code, so the codes are walked in date order by a
-- recursive CTE (a rolling window over codes would let a chain of codes 100 days apart extend one
-- episode for ever).

{%- set episode_window_days = var('episode_window_days') %}

with recursive

social_prescribing_codes as (

    select * from {{ ref('int_social_prescribing_codes_unioned') }}

),

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

pcn_memberships as (

    select * from {{ ref('ref_pcn_memberships') }}

),

referral_codes as (

    select
        *,
        row_number() over (partition by person_key order by event_date, coded_event_key) as code_sequence
    from social_prescribing_codes
    where code_role = 'referral'

),

declined_codes as (

    select
        person_key,
        event_date
    from social_prescribing_codes
    where code_role = 'declined'

),

-- Each referral code in date order, with the start of the episode it belongs to: the first code
-- opens one, and a later code opens a new one when it falls episode_window_days or more after the
-- start of the episode in force.
codes_walked as (

    select
        person_key,
        code_sequence,
        coded_event_key,
        event_date,
        event_date as episode_start_date,
        true as opens_episode
    from referral_codes
    where code_sequence = 1

    union all

    select
        next_code.person_key,
        next_code.code_sequence,
        next_code.coded_event_key,
        next_code.event_date,
        case
            when {{ dbt.datediff('codes_walked.episode_start_date', 'next_code.event_date', 'day') }}
                >= {{ episode_window_days }}
                then next_code.event_date
            else codes_walked.episode_start_date
        end as episode_start_date,
        (
            {{ dbt.datediff('codes_walked.episode_start_date', 'next_code.event_date', 'day') }}
            >= {{ episode_window_days }}
        ) as opens_episode
    from codes_walked
    inner join referral_codes as next_code
        on codes_walked.person_key = next_code.person_key
        and next_code.code_sequence = codes_walked.code_sequence + 1

),

codes_per_episode as (

    select
        person_key,
        episode_start_date,
        count(*) as referral_code_count
    from codes_walked
    group by person_key, episode_start_date

),

episode_openings as (

    select
        codes_walked.person_key,
        codes_walked.episode_start_date,
        cast({{ dbt.dateadd('day', episode_window_days, 'codes_walked.episode_start_date') }} as date)
            as episode_window_end_date,
        row_number() over (
            partition by codes_walked.person_key order by codes_walked.episode_start_date
        ) as episode_sequence,
        referral_codes.patient_key,
        referral_codes.gp_system,
        referral_codes.practice_code,
        referral_codes.age_at_event,
        referral_codes.coded_event_key as opening_coded_event_key
    from codes_walked
    inner join referral_codes
        on codes_walked.coded_event_key = referral_codes.coded_event_key
    where codes_walked.opens_episode

),

-- Declined: a declined code from the episode's start to the day before its window ends.
episodes_declined as (

    select
        episode_openings.person_key,
        episode_openings.episode_start_date,
        min(declined_codes.event_date) as declined_date
    from episode_openings
    inner join declined_codes
        on episode_openings.person_key = declined_codes.person_key
        and declined_codes.event_date >= episode_openings.episode_start_date
        and declined_codes.event_date < episode_openings.episode_window_end_date
    group by episode_openings.person_key, episode_openings.episode_start_date

),

current_pcn_memberships as (

    select
        practice_code,
        pcn_code,
        pcn_name
    from pcn_memberships
    where end_date is null

),

-- Age at referral: EMIS gives the age on the coded event itself. SystmOne codes carry no age, so
-- it is the age on the patient's extract date moved by the whole years between that date and the
-- referral (date_sub counts whole years, towards zero either way): exact to within one year, as
-- the birthday's place in the year is not known.
episodes_described as (

    select
        episode_openings.*,
        gp_patients.sex,
        gp_patients.lsoa21_code,
        gp_patients.imd_decile,
        gp_patients.imd_quintile,
        coalesce(
            episode_openings.age_at_event,
            gp_patients.age_at_extract
            + {{ whole_years_between('gp_patients.extract_date', 'episode_openings.episode_start_date') }}
        ) as age_at_referral,
        episode_openings.age_at_event is null as is_age_at_referral_estimated
    from episode_openings
    inner join gp_patients
        on episode_openings.patient_key = gp_patients.patient_key

),

final as (

    select
        episodes_described.person_key || ':' || cast(episodes_described.episode_start_date as {{ dbt.type_string() }})
            as episode_key,
        episodes_described.person_key,
        episodes_described.episode_sequence,
        episodes_described.episode_start_date as referral_date,
        episodes_described.episode_window_end_date,
        codes_per_episode.referral_code_count,
        episodes_described.opening_coded_event_key,
        episodes_described.patient_key,
        episodes_described.gp_system,
        episodes_described.practice_code,
        current_pcn_memberships.pcn_code,
        current_pcn_memberships.pcn_name,
        episodes_described.sex,
        episodes_described.age_at_referral,
        {{ age_band('episodes_described.age_at_referral') }} as age_band_at_referral,
        episodes_described.is_age_at_referral_estimated,
        episodes_described.lsoa21_code,
        episodes_described.imd_decile,
        episodes_described.imd_quintile,
        episodes_declined.declined_date is not null as is_declined,
        episodes_declined.declined_date
    from episodes_described
    inner join codes_per_episode
        on episodes_described.person_key = codes_per_episode.person_key
        and episodes_described.episode_start_date = codes_per_episode.episode_start_date
    left join episodes_declined
        on episodes_described.person_key = episodes_declined.person_key
        and episodes_described.episode_start_date = episodes_declined.episode_start_date
    left join current_pcn_memberships
        on episodes_described.practice_code = current_pcn_memberships.practice_code

)

select * from final
