-- Every matched comparator is a member of the referral's risk set (same area and sex, two years
-- observed, not referred in the washout before the index date or on it: int_matching_risk_sets),
-- is not the referred person, is matched at the referral's own index date, and no referral has
-- more comparators than its specification allows. Returns the offending rows (must be none).

with

comparators as (

    select * from {{ ref('int_comparators_matched') }}

),

risk_sets as (

    select * from {{ ref('int_matching_risk_sets') }}

),

episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

outside_risk_set as (

    select
        comparators.matched_comparator_key,
        'not a comparator in the risk set' as problem
    from comparators
    left join risk_sets
        on comparators.episode_key = risk_sets.episode_key
        and comparators.person_key = risk_sets.person_key
        and not risk_sets.is_referred
    where risk_sets.risk_set_member_key is null
        or risk_sets.index_date != comparators.index_date

),

referred_before as (

    select
        comparators.matched_comparator_key,
        'referred on or before the index date, in the washout' as problem
    from comparators
    inner join episodes
        on comparators.person_key = episodes.person_key
    where episodes.referral_date <= comparators.index_date
        and {{ dbt.datediff('episodes.referral_date', 'comparators.index_date', 'day') }}
        <= {{ var('matching_washout_days') }}

),

over_ratio as (

    select
        min(matched_comparator_key) as matched_comparator_key,
        'over the ratio' as problem
    from comparators
    group by specification, episode_key
    having count(*) > max(
            case specification
                when 'ratio_1' then 1
                when 'ratio_10' then 10
                else {{ var('matching_ratio') }}
            end
        )

)

select * from outside_risk_set
union all
select * from referred_before
union all
select * from over_ratio
