-- One row per eligible referral episode x member of its risk set: the referred person and every
-- candidate comparator, each described only by what the warehouse knew on the index date (the
-- referral date). This is the "assignment at time zero" of the target trial (docs/methods.md).
-- A referral is eligible when it is the person's only episode opening in the washout
-- (matching_washout_days) before the index date, and matching_lookback_quarters (8) quarters of
-- matching_quarter_days (91) days of GP and 999 history before the index date lie inside the
-- observed periods (int_registration_periods_derived) of both the referred person and of every
-- candidate. A candidate is on a list in the referral's area (practice, or PCN with var
-- matching_area), of the same sex, not the referred person, and has no referral episode opening in
-- the washout before the index date or on it. A candidate referred later stays in the risk set
-- (usual care may include a later referral); later_referral_date serves the sensitivity analysis
-- that censors them there (int_referral_outcomes_counted). previous_referral_date (any earlier
-- episode) marks who is not a new user: the primary analysis (int_comparators_matched) leaves out
-- every member, referred or candidate, who has one; the washout_365 sensitivity analysis keeps them.
-- Covariates: attended GP consultations and linked 999 calls in each quarter q = 1..8 before the
-- index date ([index - 91q, index - 91(q - 1))), age in whole years at the index date, female, and
-- IMD quintile.
-- Bounded: a referral's candidates are drawn at random (md5 of episode and person key) with the
-- probability matching_candidates_per_referral / (people of its area and sex), at most 1, so a
-- risk set holds about that many candidates however large the practice (an ICS of 1.5 M people
-- has 861.6 M referral x same-practice, same-sex pairs a year; benchmarks/README.md). Each member
-- carries sampling_weight, the inverse of its chance of being drawn (1 for the referred person and
-- wherever every candidate is kept), which the propensity model and the balance table weight by.

{%- set quarter_days = var('matching_quarter_days') %}
{%- set quarters = var('matching_lookback_quarters') %}
{%- set lookback_days = quarter_days * quarters %}
{%- set washout_days = var('matching_washout_days') %}
{%- set area_column = 'pcn_code' if var('matching_area') == 'pcn' else 'practice_code' %}
{%- set candidates_per_referral = var('matching_candidates_per_referral') %}

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

-- Each registered person with the start of the span over which both their GP and 999 history are
-- observed, and its end.
people_observed as (

    select
        people.person_key,
        people.practice_code,
        current_pcn_memberships.pcn_code,
        people.sex,
        people.imd_quintile,
        people.age_at_extract,
        people.extract_date,
        max(registration_periods.observed_from_date) as history_observed_from_date,
        min(registration_periods.observed_to_date) as history_observed_to_date
    from people
    inner join registration_periods
        on people.person_key = registration_periods.person_key
    left join current_pcn_memberships
        on people.practice_code = current_pcn_memberships.practice_code
    where people.is_registered
    group by
        people.person_key,
        people.practice_code,
        current_pcn_memberships.pcn_code,
        people.sex,
        people.imd_quintile,
        people.age_at_extract,
        people.extract_date

),

-- People per area and sex: how many candidates a referral's draw is taken from (at most).
strata as (

    select
        {{ area_column }} as matching_area_code,
        sex,
        count(*) as stratum_people,
        least(1.0, {{ candidates_per_referral }} / count(*)) as draw_share
    from people_observed
    where {{ area_column }} is not null
    group by {{ area_column }}, sex

),

referrals as (

    select
        episodes.episode_key,
        episodes.person_key,
        episodes.referral_date as index_date,
        episodes.practice_code,
        episodes.pcn_code,
        episodes.{{ area_column }} as matching_area_code,
        episodes.sex,
        episodes.imd_quintile
    from episodes
    inner join people_observed
        on episodes.person_key = people_observed.person_key
    where episodes.{{ area_column }} is not null
        and episodes.sex in ('female', 'male')
        and people_observed.history_observed_from_date
        <= cast({{ dbt.dateadd('day', -lookback_days, 'episodes.referral_date') }} as date)
        and people_observed.history_observed_to_date >= episodes.referral_date
        and not exists (
            select 1
            from episodes as earlier
            where earlier.person_key = episodes.person_key
                and earlier.referral_date < episodes.referral_date
                and earlier.referral_date
                >= cast({{ dbt.dateadd('day', -washout_days, 'episodes.referral_date') }} as date)
        )

),

members as (

    select
        referrals.episode_key,
        referrals.index_date,
        referrals.matching_area_code,
        people_observed.person_key,
        people_observed.person_key = referrals.person_key as is_referred,
        people_observed.sex,
        people_observed.imd_quintile,
        people_observed.age_at_extract
        + {{ whole_years_between('people_observed.extract_date', 'referrals.index_date') }} as age_at_index,
        case
            when people_observed.person_key = referrals.person_key then 1.0
            else 1.0 / strata.draw_share
        end as sampling_weight
    from referrals
    inner join strata
        on referrals.matching_area_code = strata.matching_area_code
        and referrals.sex = strata.sex
    inner join people_observed
        on referrals.matching_area_code = people_observed.{{ area_column }}
        and referrals.sex = people_observed.sex
    where (
        people_observed.person_key = referrals.person_key
        or strata.draw_share >= 1.0
        or substr(md5(referrals.episode_key || '|' || people_observed.person_key), 1, 8)
        < lower(lpad(hex(cast(floor(4294967296.0 * strata.draw_share) as bigint)), 8, '0'))
    )
    and people_observed.history_observed_from_date
    <= cast({{ dbt.dateadd('day', -lookback_days, 'referrals.index_date') }} as date)
    and people_observed.history_observed_to_date >= referrals.index_date
    and (
        people_observed.person_key = referrals.person_key
        or not exists (
            select 1
            from episodes
            where episodes.person_key = people_observed.person_key
                and episodes.referral_date <= referrals.index_date
                and episodes.referral_date
                >= cast({{ dbt.dateadd('day', -washout_days, 'referrals.index_date') }} as date)
        )
    )

),

members_aged as (

    select * from members
    where age_at_index >= 0

),

later_referrals as (

    select
        members_aged.episode_key,
        members_aged.person_key,
        min(episodes.referral_date) as later_referral_date
    from members_aged
    inner join episodes
        on members_aged.person_key = episodes.person_key
        and episodes.referral_date > members_aged.index_date
    where not members_aged.is_referred
    group by members_aged.episode_key, members_aged.person_key

),

previous_referrals as (

    select
        members_aged.episode_key,
        members_aged.person_key,
        max(episodes.referral_date) as previous_referral_date
    from members_aged
    inner join episodes
        on members_aged.person_key = episodes.person_key
        and episodes.referral_date < members_aged.index_date
    group by members_aged.episode_key, members_aged.person_key

),

history_events as (

    select
        person_key,
        event_date,
        case when event_type = 'gp_consultation' then 'gp' else 'calls' end as history_outcome
    from activity_events
    where person_key is not null
        and (
            (event_type = 'gp_consultation' and is_attended)
            or event_type = 'ambulance_call'
        )

),

history_counted as (

    select
        members_aged.episode_key,
        members_aged.person_key,
        {% for quarter in range(1, quarters + 1) -%}
            count(case
                when history_events.history_outcome = 'gp'
                    and history_events.event_date
                    >= cast({{ dbt.dateadd('day', -quarter_days * quarter, 'members_aged.index_date') }} as date)
                    and history_events.event_date
                    < cast({{ dbt.dateadd('day', -quarter_days * (quarter - 1), 'members_aged.index_date') }} as date)
                    then 1
            end) as gp_quarter_{{ quarter }},
            count(case
                when history_events.history_outcome = 'calls'
                    and history_events.event_date
                    >= cast({{ dbt.dateadd('day', -quarter_days * quarter, 'members_aged.index_date') }} as date)
                    and history_events.event_date
                    < cast({{ dbt.dateadd('day', -quarter_days * (quarter - 1), 'members_aged.index_date') }} as date)
                    then 1
            end) as calls_999_quarter_{{ quarter }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from members_aged
    left join history_events
        on members_aged.person_key = history_events.person_key
        and history_events.event_date
        >= cast({{ dbt.dateadd('day', -lookback_days, 'members_aged.index_date') }} as date)
        and history_events.event_date < members_aged.index_date
    group by members_aged.episode_key, members_aged.person_key

),

final as (

    select
        members_aged.episode_key || '|' || members_aged.person_key as risk_set_member_key,
        members_aged.episode_key,
        members_aged.person_key,
        members_aged.index_date,
        members_aged.matching_area_code,
        members_aged.is_referred,
        members_aged.sampling_weight,
        later_referrals.later_referral_date,
        previous_referrals.previous_referral_date,
        members_aged.age_at_index,
        members_aged.sex = 'female' as is_female,
        members_aged.imd_quintile,
        {% for quarter in range(1, quarters + 1) -%}
            history_counted.gp_quarter_{{ quarter }},
        {% endfor -%}
        {% for quarter in range(1, quarters + 1) -%}
            history_counted.calls_999_quarter_{{ quarter }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from members_aged
    inner join history_counted
        on members_aged.episode_key = history_counted.episode_key
        and members_aged.person_key = history_counted.person_key
    left join later_referrals
        on members_aged.episode_key = later_referrals.episode_key
        and members_aged.person_key = later_referrals.person_key
    left join previous_referrals
        on members_aged.episode_key = previous_referrals.episode_key
        and members_aged.person_key = previous_referrals.person_key

)

select * from final
