-- One row per 2021 Lower Layer Super Output Area in England, with its deprivation (IMD 2025).

with

lsoas as (

    select * from {{ ref('ref_imd2025_lsoa21') }}

),

final as (

    select
        lsoa21_code,
        lsoa21_name,
        lad24_code,
        lad24_name,
        imd_score,
        imd_rank,
        imd_decile,
        {{ imd_quintile('imd_decile') }} as imd_quintile
    from lsoas

)

select * from final
