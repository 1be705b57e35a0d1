-- One row per address (postcode token) and calendar month (UK local date of the call) with at least
-- one 999 call the trust marked as from a communal address (a care home, a hostel), flagged as a
-- frequently calling communal address when the month has communal_address_calls_in_month (15) or
-- more such calls. Traced and untraced calls both count: the address is what is counted, not the
-- person; a call with no postcode cannot be put to an address.

{%- set communal_address_calls_in_month = var('communal_address_calls_in_month') %}

with

ambulance_incidents as (

    select * from {{ ref('stg_ambulance__incidents') }}

),

communal_calls as (

    select
        postcode_token,
        call_month,
        lsoa21_code,
        imd_decile
    from ambulance_incidents
    where is_communal_address
        and postcode_token is not null

),

calls_per_month as (

    select
        postcode_token,
        call_month,
        count(*) as communal_calls_in_month,
        min(lsoa21_code) as lsoa21_code,
        min(imd_decile) as imd_decile
    from communal_calls
    group by postcode_token, call_month

),

final as (

    select
        postcode_token || ':' || cast(call_month as {{ dbt.type_string() }}) as communal_address_month_key,
        postcode_token,
        call_month,
        lsoa21_code,
        imd_decile,
        communal_calls_in_month,
        communal_calls_in_month >= {{ communal_address_calls_in_month }} as is_frequent_communal_address
    from calls_per_month

)

select * from final
