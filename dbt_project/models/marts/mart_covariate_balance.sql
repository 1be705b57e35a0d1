-- One row per covariate x IMD quintile (plus `all`): how far the referred people are from the
-- people they could have been compared with, before matching, and from their matched comparators,
-- after (the primary specification of int_comparators_matched). Before: every eligible referral's
-- referred person against every candidate of its risk set (int_matching_risk_sets; drawn candidates
-- weighted by their sampling_weight, so it is the whole risk set). After: the
-- matched referrals against their comparators, each referral's comparators weighted to 1.
-- Standardised mean difference (SMD) = (referred mean - comparator mean) / pooled standard
-- deviation before matching, sqrt((referred variance + candidate variance) / 2), the same
-- denominator before and after, so that the two can be compared. |SMD| < 0.1 is the usual mark of
-- balance. Covariates: attended GP consultations and linked 999 calls in each quarter q = 1..8
-- before the index date, age at the index date, female, IMD quintile.

{%- set quarters = var('matching_lookback_quarters') %}
{%- set covariates = [] %}
{%- for quarter in range(1, quarters + 1) %}{% do covariates.append('gp_quarter_' ~ quarter) %}{% endfor %}
{%- for quarter in range(1, quarters + 1) %}{% do covariates.append('calls_999_quarter_' ~ quarter) %}{% endfor %}
{%- do covariates.extend(['age_at_index', 'is_female', 'imd_quintile']) %}

with

risk_sets as (

    select * from {{ ref('int_matching_risk_sets') }}

),

comparators as (

    select * from {{ ref('int_comparators_matched') }}
    where specification = 'primary'

),

referred as (

    select
        risk_sets.*,
        cast(risk_sets.imd_quintile as {{ dbt.type_string() }}) as referral_quintile
    from risk_sets
    where risk_sets.is_referred

),

-- every member with the referral's quintile (the group it counts in), its role and its weight
members as (

    select
        referred.referral_quintile,
        'referred' as member_role,
        cast(1.0 as double) as member_weight,
        referred.episode_key in (select comparators.episode_key from comparators) as is_matched,
        {% for covariate in covariates -%}
            cast(referred.{{ covariate }} as double) as {{ covariate }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from referred

    union all

    select
        referred.referral_quintile,
        'candidate' as member_role,
        cast(risk_sets.sampling_weight as double) as member_weight,  -- a drawn candidate stands for 1 / its chance
        false as is_matched,
        {% for covariate in covariates -%}
            cast(risk_sets.{{ covariate }} as double) as {{ covariate }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from risk_sets
    inner join referred
        on risk_sets.episode_key = referred.episode_key
    where not risk_sets.is_referred

    union all

    select
        referred.referral_quintile,
        'comparator' as member_role,
        comparators.comparator_weight as member_weight,
        true as is_matched,
        {% for covariate in covariates -%}
            cast(risk_sets.{{ covariate }} as double) as {{ covariate }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from comparators
    inner join risk_sets
        on comparators.episode_key = risk_sets.episode_key
        and comparators.person_key = risk_sets.person_key
    inner join referred
        on comparators.episode_key = referred.episode_key

),

grouped as (

    select
        *,
        coalesce(referral_quintile, 'unknown') as imd_group
    from members
    where referral_quintile is not null
    union all
    select
        *,
        'all' as imd_group
    from members

),

long as (

    {% for covariate in covariates -%}
        select
            imd_group,
            member_role,
            member_weight,
            is_matched,
            '{{ covariate }}' as covariate,
            {{ covariate }} as covariate_value
        from grouped
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

summarised as (

    select
        covariate,
        imd_group as imd_quintile,
        count(case when member_role = 'referred' then 1 end) as referred_count,
        count(case when member_role = 'referred' and is_matched then 1 end) as matched_referred_count,
        count(case when member_role = 'candidate' then 1 end) as candidate_count,
        avg(case when member_role = 'referred' then covariate_value end) as referred_mean_before,
        var_samp(case when member_role = 'referred' then covariate_value end) as referred_variance,
        -- the whole risk set's mean and (frequency-weighted sample) variance, from its drawn candidates
        sum(case when member_role = 'candidate' then member_weight * covariate_value end)
        / nullif(sum(case when member_role = 'candidate' then member_weight end), 0) as candidate_mean,
        (
            sum(case when member_role = 'candidate' then member_weight * covariate_value * covariate_value end)
            - power(sum(case when member_role = 'candidate' then member_weight * covariate_value end), 2)
            / nullif(sum(case when member_role = 'candidate' then member_weight end), 0)
        ) / nullif(sum(case when member_role = 'candidate' then member_weight end) - 1, 0) as candidate_variance,
        avg(case when member_role = 'referred' and is_matched then covariate_value end) as referred_mean_after,
        sum(case when member_role = 'comparator' then member_weight * covariate_value end)
        / nullif(sum(case when member_role = 'comparator' then member_weight end), 0) as comparator_mean_after
    from long
    group by covariate, imd_group

),

final as (

    select
        covariate || '|' || imd_quintile as covariate_balance_key,
        covariate,
        imd_quintile,
        referred_count,
        matched_referred_count,
        candidate_count,
        referred_mean_before,
        candidate_mean,
        referred_mean_after,
        comparator_mean_after,
        (referred_mean_before - candidate_mean)
        / nullif(sqrt((referred_variance + candidate_variance) / 2), 0) as smd_before,
        (referred_mean_after - comparator_mean_after)
        / nullif(sqrt((referred_variance + candidate_variance) / 2), 0) as smd_after
    from summarised

)

select * from final
