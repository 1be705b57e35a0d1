-- Every matched comparator is a registered person agreeing with the referral on practice (or PCN,
-- var matching_area), sex and IMD quintile, and on the age band recorded for both; was not
-- referred within the washout; is not the referred person; and no referral has more than
-- matching_ratio comparators. Returns the offending rows (must be none).

with

comparators as (

    select * from {{ ref('int_comparators_matched') }}

),

episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

people as (

    select * from {{ ref('int_people_linked') }}

),

pcn_memberships as (

    select * from {{ ref('ref_pcn_memberships') }}

),

people_placed as (

    select
        people.*,
        pcn_memberships.pcn_code
    from people
    left join pcn_memberships
        on people.practice_code = pcn_memberships.practice_code
        and pcn_memberships.end_date is null

),

strata_mismatched as (

    select
        comparators.matched_comparator_key,
        'strata differ' as problem
    from comparators
    inner join episodes
        on comparators.episode_key = episodes.episode_key
    inner join people_placed as comparator_people
        on comparators.person_key = comparator_people.person_key
    where not comparator_people.is_registered
        or comparator_people.{{ 'pcn_code' if var('matching_area') == 'pcn' else 'practice_code' }}
        is distinct from comparators.matching_area_code
        or comparator_people.sex != episodes.sex
        or comparator_people.imd_quintile != episodes.imd_quintile
        or comparators.age_band != episodes.age_band_at_referral
        or comparators.index_date != episodes.referral_date
        or comparators.person_key = episodes.person_key

),

referred_in_washout as (

    select
        comparators.matched_comparator_key,
        'referred in washout' as problem
    from comparators
    inner join episodes
        on comparators.person_key = episodes.person_key
    where abs({{ dbt.datediff('comparators.index_date', 'episodes.referral_date', 'day') }})
        <= {{ var('matching_washout_days') }}

),

over_ratio as (

    select
        min(matched_comparator_key) as matched_comparator_key,
        'over the ratio' as problem
    from comparators
    group by episode_key
    having count(*) > {{ var('matching_ratio') }}

)

select * from strata_mismatched
union all
select * from referred_in_washout
union all
select * from over_ratio
