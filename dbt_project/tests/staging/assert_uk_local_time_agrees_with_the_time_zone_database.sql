-- Invariant: utc_to_uk_local (on DuckDB, arithmetic on the UK's rule from 1996; macros/time_zones.sql)
-- gives the time the time zone database (ICU) gives, at every quarter hour of the last eight days of
-- March and October from 1990 to 2100, a microsecond either side of 01:00 UTC on each of those days,
-- and mid-month through the year. Returns the times where the two differ.
{{ config(enabled=target.type == 'duckdb') }}

with

days as (

    select cast(calendar.day_start as timestamp) as day_start
    from range(timestamp '1990-01-01', timestamp '2101-01-01', interval 1 day) as calendar (day_start)
    where (month(calendar.day_start) in (3, 10) and day(calendar.day_start) >= 24)
        or day(calendar.day_start) = 15

),

times as (

    select days.day_start + to_minutes(cast(quarters.quarter * 15 as integer)) as utc_time
    from days
    cross join range(96) as quarters (quarter)

    union all

    select days.day_start + interval 1 hour + to_microseconds(cast(offsets.offset_us as bigint)) as utc_time
    from days
    cross join (values (-1), (0), (1)) as offsets (offset_us)

    union all

    select cast(null as timestamp) as utc_time

),

compared as (

    select
        utc_time,
        {{ utc_to_uk_local('utc_time') }} as uk_local_time,
        {{ default__utc_to_uk_local('utc_time') }} as time_zone_database_time
    from times

)

select *
from compared
where uk_local_time is distinct from time_zone_database_time
