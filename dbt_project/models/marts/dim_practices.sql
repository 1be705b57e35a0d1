-- One row per GP practice: the North West practices of the ODS seed, plus any practice that sends
-- data here without being in it, with its current Primary Care Network and the GP system its
-- extracts come from (null for a practice that sends nothing).

with

practices as (

    select * from {{ ref('ref_gp_practices') }}

),

pcn_memberships as (

    select * from {{ ref('ref_pcn_memberships') }}

),

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

current_pcn_memberships as (

    select
        practice_code,
        pcn_code,
        pcn_name
    from pcn_memberships
    where end_date is null

),

practice_systems as (

    select
        practice_code,
        min(gp_system) as gp_system
    from gp_patients
    group by practice_code

),

practice_codes as (

    select practice_code from practices
    union
    select practice_code from practice_systems

),

final as (

    select
        practice_codes.practice_code,
        practices.practice_name,
        current_pcn_memberships.pcn_code,
        current_pcn_memberships.pcn_name,
        practices.sub_icb_code,
        practices.icb_code,
        practices.status_code,
        practice_systems.gp_system,
        practice_systems.practice_code is not null as sends_data
    from practice_codes
    left join practices
        on practice_codes.practice_code = practices.practice_code
    left join current_pcn_memberships
        on practice_codes.practice_code = current_pcn_memberships.practice_code
    left join practice_systems
        on practice_codes.practice_code = practice_systems.practice_code

)

select * from final
