-- One row per area (the ICS, each Primary Care Network, each practice), breakdown group and
-- reporting period (month; calendar quarter and NHS financial year when the data covers them whole):
-- the referral funnel (episodes,
-- declined, engaged, sustained, median days to the first attendance), unrounded. The ICS is also
-- broken down by IMD quintile, age band and sex, by quarter and financial year. Every combination
-- is present, zeros included, so that each total is exactly the sum of its parts: a PCN of its
-- practices, the ICS of its PCNs and of each breakdown's groups, a quarter of its months, a
-- financial year of its quarters. The parent keys name those totals, for disclosure control.

with

referrals as (

    select * from {{ ref('fct_referrals') }}

),

practices as (

    select * from {{ ref('dim_practices') }}

),

file_loads as (

    select * from {{ ref('stg_audit__file_loads') }}

),

-- The months the GP data covers: from the first referral month to the last GP extract loaded.
coverage as (

    select
        (select min(referral_month) from referrals) as first_month,
        (select max(referral_month) from referrals) as last_month,
        (
            select max(extract_date) from file_loads
            where source in ('emis', 'systmone') and is_loaded
        ) as last_covered_date

),

months as (

    select cast(month_series.month_start as date) as month_start
    from
        {{ month_series(
            '(select first_month from coverage)', '(select last_month from coverage)', 'month_series', 'month_start'
        ) }}

),

month_periods as (

    {{ month_periods('months', 'month_start') }}

),

periods as (

    select distinct
        month_periods.period_type,
        month_periods.period_start,
        month_periods.period_end,
        month_periods.period_label,
        coalesce(
            month_periods.period_start >= coverage.first_month
            and month_periods.period_end <= coverage.last_covered_date,
            false
        ) as is_complete_period
    from month_periods
    cross join coverage

),

-- Each practice that sends data, as itself, in its PCN and in its ICS.
practice_areas as (

    select
        practice_code,
        'practice' as area_level,
        practice_code as area_code,
        coalesce(practice_name, practice_code) as area_name,
        coalesce(pcn_code, 'none') as pcn_code,
        coalesce(pcn_name, 'No Primary Care Network') as pcn_name,
        coalesce(icb_code, 'unknown') as icb_code
    from practices
    where sends_data
    union all
    select
        practice_code,
        'pcn' as area_level,
        coalesce(pcn_code, 'none') as area_code,
        coalesce(pcn_name, 'No Primary Care Network') as area_name,
        coalesce(pcn_code, 'none') as pcn_code,
        coalesce(pcn_name, 'No Primary Care Network') as pcn_name,
        coalesce(icb_code, 'unknown') as icb_code
    from practices
    where sends_data
    union all
    select
        practice_code,
        'ics' as area_level,
        coalesce(icb_code, 'unknown') as area_code,
        'All practices of ICB ' || coalesce(icb_code, 'unknown') as area_name,
        null as pcn_code,
        null as pcn_name,
        coalesce(icb_code, 'unknown') as icb_code
    from practices
    where sends_data

),

areas as (

    select distinct
        area_level,
        area_code,
        area_name,
        case when area_level = 'practice' then pcn_code end as pcn_code,
        case when area_level = 'practice' then pcn_name end as pcn_name,
        icb_code
    from practice_areas

),

-- Each referral in its breakdown groups: everyone ('all'), and its IMD quintile, age band and sex.
referral_groups as (

    select
        episode_key,
        'all' as breakdown,
        'all' as group_value
    from referrals
    union all
    select
        episode_key,
        'imd_quintile' as breakdown,
        coalesce(cast(imd_quintile as {{ dbt.type_string() }}), 'unknown') as group_value
    from referrals
    union all
    select
        episode_key,
        'age_band' as breakdown,
        coalesce(age_band_at_referral, 'unknown') as group_value
    from referrals
    union all
    select
        episode_key,
        'sex' as breakdown,
        coalesce(sex, 'unknown') as group_value
    from referrals

),

-- Every group of each breakdown (the IMD quintiles always all five), so that zeros are rows.
breakdown_groups as (

    select distinct
        breakdown,
        group_value
    from referral_groups
    union
    select
        'imd_quintile' as breakdown,
        cast(quintile.quintile as {{ dbt.type_string() }}) as group_value
    from (values (1), (2), (3), (4), (5)) as quintile (quintile)

),

-- The grid of rows: breakdowns only for the ICS, and not by month (too few referrals a month);
-- quarters and financial years only when the data covers them whole (a part-year total misleads).
grid as (

    select
        areas.*,
        breakdown_groups.breakdown,
        breakdown_groups.group_value,
        periods.*
    from areas
    cross join breakdown_groups
    cross join periods
    where (breakdown_groups.breakdown = 'all' or areas.area_level = 'ics')
        and (breakdown_groups.breakdown = 'all' or periods.period_type != 'month')
        and (periods.period_type = 'month' or periods.is_complete_period)

),

counted as (

    select
        practice_areas.area_level,
        practice_areas.area_code,
        referral_groups.breakdown,
        referral_groups.group_value,
        month_periods.period_type,
        month_periods.period_start,
        count(*) as referral_episodes,
        count(*) filter (where referrals.is_declined) as declined_episodes,
        count(*) filter (where referrals.is_engaged) as engaged_episodes,
        count(*) filter (where referrals.is_sustained) as sustained_episodes,
        median(referrals.days_to_first_attendance) as median_days_to_first_attendance
    from referrals
    inner join practice_areas
        on referrals.practice_code = practice_areas.practice_code
    inner join referral_groups
        on referrals.episode_key = referral_groups.episode_key
    inner join month_periods
        on referrals.referral_month = month_periods.month_start
    group by all

),

keyed as (

    select
        grid.*,
        coalesce(counted.referral_episodes, 0) as referral_episodes,
        coalesce(counted.declined_episodes, 0) as declined_episodes,
        coalesce(counted.engaged_episodes, 0) as engaged_episodes,
        coalesce(counted.sustained_episodes, 0) as sustained_episodes,
        cast(counted.median_days_to_first_attendance as double) as median_days_to_first_attendance
    from grid
    inner join counted
        on grid.area_level = counted.area_level
        and grid.area_code = counted.area_code
        and grid.breakdown = counted.breakdown
        and grid.group_value = counted.group_value
        and grid.period_type = counted.period_type
        and grid.period_start = counted.period_start
    union all
    select
        grid.*,
        0 as referral_episodes,
        0 as declined_episodes,
        0 as engaged_episodes,
        0 as sustained_episodes,
        cast(null as double) as median_days_to_first_attendance
    from grid
    anti join counted
        on grid.area_level = counted.area_level
        and grid.area_code = counted.area_code
        and grid.breakdown = counted.breakdown
        and grid.group_value = counted.group_value
        and grid.period_type = counted.period_type
        and grid.period_start = counted.period_start

),

-- The period's first day, its quarter's and its financial year's, as text for the keys.
dated as (

    select
        keyed.*,
        cast(keyed.period_start as {{ dbt.type_string() }}) as period_day,
        cast(
            cast({{ dbt.date_trunc('quarter', 'keyed.period_start') }} as date) as {{ dbt.type_string() }}
        ) as quarter_day,
        cast(
            make_date(year(keyed.period_start) - (case when month(keyed.period_start) < 4 then 1 else 0 end), 4, 1)
            as {{ dbt.type_string() }}
        ) as financial_year_day
    from keyed

),

final as (

    select
        concat_ws('|', area_level, area_code, breakdown, group_value, period_type, period_day) as funnel_period_key,
        area_level,
        area_code,
        area_name,
        pcn_code,
        pcn_name,
        icb_code,
        breakdown,
        group_value,
        period_type,
        period_start,
        period_end,
        period_label,
        is_complete_period,
        cast(referral_episodes as bigint) as referral_episodes,
        cast(declined_episodes as bigint) as declined_episodes,
        cast(engaged_episodes as bigint) as engaged_episodes,
        cast(sustained_episodes as bigint) as sustained_episodes,
        median_days_to_first_attendance,
        -- the totals this row is a part of (null where it is not a part)
        case
            when breakdown != 'all' then null
            when area_level = 'practice'
                then concat_ws('|', 'pcn', pcn_code, breakdown, group_value, period_type, period_day)
            when area_level = 'pcn'
                then concat_ws('|', 'ics', icb_code, breakdown, group_value, period_type, period_day)
        end as area_total_key,
        case
            when period_type = 'month'
                then concat_ws('|', area_level, area_code, breakdown, group_value, 'quarter', quarter_day)
            when period_type = 'quarter'
                then concat_ws('|', area_level, area_code, breakdown, group_value, 'financial_year', financial_year_day)
        end as period_total_key,
        case
            when breakdown != 'all'
                then concat_ws('|', area_level, area_code, 'all', 'all', period_type, period_day)
        end as group_total_key
    from dated

)

select * from final
