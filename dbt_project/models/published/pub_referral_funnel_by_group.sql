-- One row per breakdown (IMD quintile, age band, sex), group and period (quarter, financial year)
-- for the whole ICS: the referral funnel under disclosure control, with a status beside every
-- figure. The ICS totals these groups add up to are the `ics` rows of pub_referral_funnel, and
-- secondary suppression covers both tables together.

with

funnel as (

    select * from {{ ref('mart_referral_funnel_periods') }}

),

suppression as (

    select * from {{ ref('mart_referral_funnel_suppression') }}

),

joined as (

    select
        funnel.*,
        suppression.referral_episodes_redacted,
        suppression.declined_episodes_redacted,
        suppression.engaged_episodes_redacted,
        suppression.sustained_episodes_redacted
    from funnel
    inner join suppression
        on funnel.funnel_period_key = suppression.funnel_period_key
    where funnel.breakdown != 'all'

),

final as (

    select
        breakdown || ':' || group_value || ':' || period_type || ':' || cast(period_start as {{ dbt.type_string() }})
            as funnel_group_key,
        area_code,
        breakdown,
        group_value,
        period_type,
        period_start,
        period_end,
        period_label,
        is_complete_period,
        {{ count_with_status('referral_episodes', redacted='referral_episodes_redacted') }},
        {{ count_with_status('declined_episodes', redacted='declined_episodes_redacted') }},
        {{ count_with_status('engaged_episodes', redacted='engaged_episodes_redacted') }},
        {{ count_with_status('sustained_episodes', redacted='sustained_episodes_redacted') }},
        {{ rate_with_status('engaged_episodes', 'referral_episodes', 'engagement_rate',
            redacted='(engaged_episodes_redacted or referral_episodes_redacted)') }},
        {{ statistic_with_status('median_days_to_first_attendance', 'engaged_episodes',
            'median_days_to_first_attendance') }}
    from joined

)

select * from final
