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
--
-- How, at an ICS's size (tens of millions of referral x candidate pairs): the candidates of a
-- referral are its stratum's people whose age band at the index date matches, found through
-- strata of (area, sex, IMD quintile, extract date, age on the extract date) so that only matching
-- ages are paired; counting each candidate's prior-year consultations is the expensive step. Each
-- referral first bands only a prefix of its candidates in draw order (those whose md5 falls below a
-- per-referral threshold, about matching_first_draws of them); a referral that finds at least
-- matching_ratio comparators in that prefix has found its lowest draws among all its candidates,
-- because every candidate outside the prefix draws higher. Only the others band all their
-- candidates. The comparators chosen are those of banding everyone.

{%- set prior_year_days = var('matching_prior_year_days') %}
{%- set washout_days = var('matching_washout_days') %}
{%- set area_column = 'pcn_code' if var('matching_area') == 'pcn' else 'practice_code' %}
{%- set years_since_index = whole_years_between('strata.extract_date', 'referrals_banded.index_date') %}
{%- set age_at_index = 'strata.age_at_extract + ' ~ years_since_index %}

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

-- The referrals whose own prior year is observed, with its consultation band.
referrals_banded as (

    select
        referrals_counted.*,
        {{ consultation_band('referrals_counted.prior_year_consultations') }} as prior_year_consultation_band
    from (
        select
            referrals.episode_key,
            referrals.person_key,
            referrals.index_date,
            referrals.matching_area_code,
            referrals.sex,
            referrals.imd_quintile,
            referrals.age_band,
            count(attended_consultations.event_date) as prior_year_consultations
        from referrals
        inner join gp_periods
            on referrals.person_key = gp_periods.person_key
        left join attended_consultations
            on referrals.person_key = attended_consultations.person_key
            and attended_consultations.event_date
            >= cast({{ dbt.dateadd('day', -prior_year_days, 'referrals.index_date') }} as date)
            and attended_consultations.event_date < referrals.index_date
        where gp_periods.observed_from_date
            <= cast({{ dbt.dateadd('day', -prior_year_days, 'referrals.index_date') }} as date)
            and gp_periods.observed_to_date >= referrals.index_date
        group by
            referrals.episode_key,
            referrals.person_key,
            referrals.index_date,
            referrals.matching_area_code,
            referrals.sex,
            referrals.imd_quintile,
            referrals.age_band
    ) as referrals_counted

),

-- People on a practice list now with their observed GP period: everyone who can be a comparator.
registered_observed as (

    select
        people_placed.person_key,
        people_placed.{{ area_column }} as matching_area_code,
        people_placed.sex,
        people_placed.imd_quintile,
        people_placed.extract_date,
        people_placed.age_at_extract,
        gp_periods.observed_from_date,
        gp_periods.observed_to_date
    from people_placed
    inner join gp_periods
        on people_placed.person_key = gp_periods.person_key
    where people_placed.is_registered

),

strata as (

    select
        matching_area_code,
        sex,
        imd_quintile,
        extract_date,
        age_at_extract,
        count(*) as stratum_size
    from registered_observed
    group by
        matching_area_code,
        sex,
        imd_quintile,
        extract_date,
        age_at_extract

),

-- Each referral with the strata whose people are in its age band at the index date (age on the
-- extract date moved by the whole years between, as for SystmOne referrals), and how many
-- candidates that makes (at most; the washout and the observed year are not yet applied).
referral_strata as (

    select
        referral_strata_aged.*,
        sum(referral_strata_aged.stratum_size) over (partition by referral_strata_aged.episode_key) as candidate_count
    from (
        select
            referrals_banded.episode_key,
            referrals_banded.person_key,
            referrals_banded.index_date,
            referrals_banded.prior_year_consultation_band,
            strata.matching_area_code,
            strata.sex,
            strata.imd_quintile,
            strata.extract_date,
            strata.age_at_extract,
            strata.stratum_size
        from referrals_banded
        inner join strata
            on referrals_banded.matching_area_code = strata.matching_area_code
            and referrals_banded.sex = strata.sex
            and referrals_banded.imd_quintile = strata.imd_quintile
        where {{ age_at_index }} >= 0
            and {{ age_band(age_at_index) }} = referrals_banded.age_band
    ) as referral_strata_aged

),

first_draws as (

    {{ eligible_candidates('referral_strata', 'registered_observed', 'episodes', first_draws_only=true) }}

),

first_draws_matched as (

    select
        *,
        count(*) over (partition by episode_key) as matches_in_first_draws
    from ({{ band_matched('first_draws', 'attended_consultations') }}) as matched

),

referrals_settled as (

    select episode_key
    from first_draws_matched
    where matches_in_first_draws >= {{ var('matching_ratio') }}
    group by episode_key

),

-- Referrals that found fewer than matching_ratio comparators among their first draws: all their
-- candidates are banded.
referral_strata_unsettled as (

    select referral_strata.*
    from referral_strata
    left join referrals_settled
        on referral_strata.episode_key = referrals_settled.episode_key
    where referrals_settled.episode_key is null

),

all_draws_unsettled as (

    {{ eligible_candidates('referral_strata_unsettled', 'registered_observed', 'episodes', first_draws_only=false) }}

),

comparators_matched as (

    select
        episode_key,
        index_date,
        person_key,
        draw,
        prior_year_consultations,
        prior_year_consultation_band
    from first_draws_matched
    where matches_in_first_draws >= {{ var('matching_ratio') }}

    union all

    select
        episode_key,
        index_date,
        person_key,
        draw,
        prior_year_consultations,
        prior_year_consultation_band
    from ({{ band_matched('all_draws_unsettled', 'attended_consultations') }}) as matched

),

comparators_ranked as (

    select
        episode_key,
        index_date,
        person_key,
        prior_year_consultations,
        prior_year_consultation_band,
        row_number() over (
            partition by episode_key
            order by draw, person_key
        ) as comparator_rank
    from comparators_matched

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
