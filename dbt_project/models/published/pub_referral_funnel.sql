-- One row per area (the ICS, each PCN, each practice) and period (month, quarter, financial year):
-- the referral funnel under disclosure control, with a status beside every figure. Counts 1-7 are
-- redacted and the rest rounded to the nearest 5; a count is also redacted where a published total
-- minus its visible parts would give a redacted count back (mart_referral_funnel_suppression).

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
    where funnel.breakdown = 'all'

),

final as (

    select
        area_level || ':' || area_code || ':' || period_type || ':' || cast(period_start as {{ dbt.type_string() }})
            as funnel_key,
        area_level,
        area_code,
        area_name,
        pcn_code,
        pcn_name,
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
