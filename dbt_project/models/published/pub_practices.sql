-- One row per GP practice that sends data here: its name, Primary Care Network and GP system, for
-- naming practices and PCNs in the other published tables. Public reference data (ODS).

with

practices as (

    select * from {{ ref('dim_practices') }}

),

final as (

    select
        practice_code,
        practice_name,
        pcn_code,
        pcn_name,
        sub_icb_code,
        icb_code,
        gp_system
    from practices
    where sends_data

)

select * from final
