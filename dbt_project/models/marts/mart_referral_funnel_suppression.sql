-- One row per row of mart_referral_funnel_periods: which of its counts the published copy redacts,
-- by the 1-to-7 rule or by secondary suppression (macros/disclosure_control.sql), so that no
-- redacted count can be worked out from a published total minus its visible parts. The relations
-- are the funnel's totals: a PCN and its practices, the ICS and its PCNs, the ICS and the groups of
-- each breakdown, a quarter and its months, a financial year and its quarters.

with

funnel as (

    select * from {{ ref('mart_referral_funnel_periods') }}

),

cells as (

    -- one row per count that has a value (an unpivot, written as a union so that every engine runs it)
    select
        funnel_period_key as row_key,
        'referral_episodes' as measure,
        referral_episodes as value
    from funnel
    where referral_episodes is not null
    union all
    select
        funnel_period_key as row_key,
        'declined_episodes' as measure,
        declined_episodes as value
    from funnel
    where declined_episodes is not null
    union all
    select
        funnel_period_key as row_key,
        'engaged_episodes' as measure,
        engaged_episodes as value
    from funnel
    where engaged_episodes is not null
    union all
    select
        funnel_period_key as row_key,
        'sustained_episodes' as measure,
        sustained_episodes as value
    from funnel
    where sustained_episodes is not null

),

-- A total that is not published (an incomplete quarter) makes no relation.
published_keys as (

    select funnel_period_key from funnel

),

parts as (

    select
        'area:' || area_total_key as relation_key,
        area_total_key as total_key,
        funnel_period_key as row_key
    from funnel
    where area_total_key in (select published_keys.funnel_period_key from published_keys)
    union all
    select
        'period:' || period_total_key as relation_key,
        period_total_key as total_key,
        funnel_period_key as row_key
    from funnel
    where period_total_key in (select published_keys.funnel_period_key from published_keys)
    union all
    select
        'group:' || breakdown || ':' || group_total_key as relation_key,
        group_total_key as total_key,
        funnel_period_key as row_key
    from funnel
    where group_total_key in (select published_keys.funnel_period_key from published_keys)

),

relations as (

    select
        relation_key,
        row_key,
        false as is_total
    from parts
    union
    select distinct
        relation_key,
        total_key as row_key,
        true as is_total
    from parts

),

{{ secondary_suppression('cells', 'relations') }},

final as (

    select
        row_key as funnel_period_key,
        bool_or(is_redacted) filter (where measure = 'referral_episodes') as referral_episodes_redacted,
        bool_or(is_redacted) filter (where measure = 'declined_episodes') as declined_episodes_redacted,
        bool_or(is_redacted) filter (where measure = 'engaged_episodes') as engaged_episodes_redacted,
        bool_or(is_redacted) filter (where measure = 'sustained_episodes') as sustained_episodes_redacted,
        count(*) filter (where is_redacted and not is_primary) as secondary_suppressions
    from suppressed
    group by row_key

)

select * from final
