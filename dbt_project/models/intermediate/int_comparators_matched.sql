-- One row per referral episode x matched comparator. The index date is the referral date. A
-- comparator is a person on a practice list now (not the referred person) who had no referral
-- episode opening within matching_washout_days (365) either side of the index date, and who
-- matches the referral exactly on practice (or PCN, var matching_area), sex, age band, IMD
-- quintile and prior-year attended GP consultation band, all taken at the index date. The
-- prior-year band counts attended consultations in [index - 365 days, index) and needs that year
-- inside both people's observed GP period (int_registration_periods_derived); a referral whose own
-- prior year is not observed gets no comparators. Up to matching_ratio (5) comparators per
-- referral are kept, chosen by the lowest md5 of person key and episode key (deterministic, and
-- independent of the outcome).
-- Sampling is with replacement across referrals: one person can be a comparator for several
-- referrals (each time at that referral's index date), never twice for one.

{%- set prior_year_days = var('matching_prior_year_days') %}
{%- set washout_days = var('matching_washout_days') %}
{%- set area_column = 'pcn_code' if var('matching_area') == 'pcn' else 'practice_code' %}

with

episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

people as (

    select * from {{ ref('int_people_linked') }}

),

registration_periods as (

    select * from {{ ref('int_registration_periods_derived') }}

),

activity_events as (

    select * from {{ ref('int_activity_events_unioned') }}

),

pcn_memberships as (

    select * from {{ ref('ref_pcn_memberships') }}

),

current_pcn_memberships as (

    select
        practice_code,
        pcn_code
    from pcn_memberships
    where end_date is null

),

people_placed as (

    select
        people.*,
        current_pcn_memberships.pcn_code
    from people
    left join current_pcn_memberships
        on people.practice_code = current_pcn_memberships.practice_code

),

gp_periods as (

    select
        person_key,
        observed_from_date,
        observed_to_date
    from registration_periods
    where outcome = 'gp_consultations'

),

attended_consultations as (

    select
        person_key,
        event_date
    from activity_events
    where event_type = 'gp_consultation'
        and is_attended
        and person_key is not null

),

referrals as (

    select
        episode_key,
        person_key,
        referral_date as index_date,
        practice_code,
        pcn_code,
        {{ area_column }} as matching_area_code,
        sex,
        age_band_at_referral as age_band,
        imd_quintile
    from episodes
    where imd_quintile is not null
        and age_band_at_referral is not null
        and {{ area_column }} is not null

),

-- Candidates agreeing on practice, sex and IMD quintile, with their age at the index date (age on
-- the extract date moved by the whole years between, as for SystmOne referrals).
candidates_aged as (

    select
        referrals.episode_key,
        referrals.index_date,
        referrals.age_band as referral_age_band,
        people.person_key,
        people.age_at_extract + {{ whole_years_between('people.extract_date', 'referrals.index_date') }} as age_at_index
    from referrals
    inner join people_placed as people
        on referrals.matching_area_code = people.{{ area_column }}
        and referrals.sex = people.sex
        and referrals.imd_quintile = people.imd_quintile
        and referrals.person_key != people.person_key
    where people.is_registered

),

candidates_age_banded as (

    select
        *,
        case
            when age_at_index < 18 then '0-17'
            when age_at_index < 35 then '18-34'
            when age_at_index < 50 then '35-49'
            when age_at_index < 65 then '50-64'
            when age_at_index < 80 then '65-79'
            else '80+'
        end as age_band_at_index
    from candidates_aged
    where age_at_index >= 0

),

candidates_washed_out as (

    select candidates.*
    from candidates_age_banded as candidates
    where candidates.age_band_at_index = candidates.referral_age_band
        and not exists (
            select 1
            from episodes
            where episodes.person_key = candidates.person_key
                and episodes.referral_date
                between cast({{ dbt.dateadd('day', -washout_days, 'candidates.index_date') }} as date)
                and cast({{ dbt.dateadd('day', washout_days, 'candidates.index_date') }} as date)
        )

),

-- The referred person and their candidates, each to be given a prior-year band at the index date.
people_at_index as (

    select
        episode_key,
        index_date,
        person_key,
        true as is_referred
    from referrals

    union all

    select
        episode_key,
        index_date,
        person_key,
        false as is_referred
    from candidates_washed_out

),

prior_year_observed as (

    select people_at_index.*
    from people_at_index
    inner join gp_periods
        on people_at_index.person_key = gp_periods.person_key
    where gp_periods.observed_from_date
        <= cast({{ dbt.dateadd('day', -prior_year_days, 'people_at_index.index_date') }} as date)
        and gp_periods.observed_to_date >= people_at_index.index_date

),

prior_year_counted as (

    select
        prior_year_observed.episode_key,
        prior_year_observed.index_date,
        prior_year_observed.person_key,
        prior_year_observed.is_referred,
        count(attended_consultations.event_date) as prior_year_consultations
    from prior_year_observed
    left join attended_consultations
        on prior_year_observed.person_key = attended_consultations.person_key
        and attended_consultations.event_date
        >= cast({{ dbt.dateadd('day', -prior_year_days, 'prior_year_observed.index_date') }} as date)
        and attended_consultations.event_date < prior_year_observed.index_date
    group by
        prior_year_observed.episode_key,
        prior_year_observed.index_date,
        prior_year_observed.person_key,
        prior_year_observed.is_referred

),

prior_year_banded as (

    select
        *,
        case
            when prior_year_consultations = 0 then '0'
            when prior_year_consultations <= 2 then '1-2'
            when prior_year_consultations <= 5 then '3-5'
            when prior_year_consultations <= 9 then '6-9'
            when prior_year_consultations <= 14 then '10-14'
            else '15+'
        end as prior_year_consultation_band
    from prior_year_counted

),

comparators_ranked as (

    select
        comparators.episode_key,
        comparators.index_date,
        comparators.person_key,
        comparators.prior_year_consultations,
        comparators.prior_year_consultation_band,
        row_number() over (
            partition by comparators.episode_key
            order by md5(comparators.person_key || ':' || comparators.episode_key), comparators.person_key
        ) as comparator_rank
    from prior_year_banded as comparators
    inner join prior_year_banded as referred
        on comparators.episode_key = referred.episode_key
        and referred.is_referred
        and comparators.prior_year_consultation_band = referred.prior_year_consultation_band
    where not comparators.is_referred

),

comparators_kept as (

    select
        *,
        count(*) over (partition by episode_key) as comparator_count
    from comparators_ranked
    where comparator_rank <= {{ var('matching_ratio') }}

),

final as (

    select
        comparators_kept.episode_key || '|' || comparators_kept.person_key as matched_comparator_key,
        comparators_kept.episode_key,
        comparators_kept.person_key,
        comparators_kept.index_date,
        referrals.practice_code,
        referrals.pcn_code,
        referrals.matching_area_code,
        referrals.sex,
        referrals.age_band,
        referrals.imd_quintile,
        comparators_kept.prior_year_consultation_band,
        comparators_kept.prior_year_consultations,
        comparators_kept.comparator_rank,
        comparators_kept.comparator_count,
        1.0 / comparators_kept.comparator_count as comparator_weight
    from comparators_kept
    inner join referrals
        on comparators_kept.episode_key = referrals.episode_key

)

select * from final
