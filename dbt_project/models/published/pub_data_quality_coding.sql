-- One row per GP system and practice: mart_data_quality_coding under disclosure control (counts
-- 1-7 redacted to null, the rest rounded to the nearest 5; the coding rate from unrounded counts,
-- redacted when the practice has 7 or fewer patient records).

with

coding as (

    select * from {{ ref('mart_data_quality_coding') }}

),

practices as (

    select * from {{ ref('dim_practices') }}

),

final as (

    select
        coding.system_practice_key,
        coding.gp_system,
        coding.practice_code,
        practices.practice_name,
        practices.pcn_code,
        practices.pcn_name,
        {{ count_with_status('coding.registered_patients', 'registered_patients') }},
        {{ count_with_status('coding.patients_with_referral_code', 'patients_with_referral_code') }},
        {{ rate_with_status(
            'coding.patients_with_referral_code', 'coding.registered_patients', 'referral_coding_rate'
        ) }}
    from coding
    left join practices
        on coding.practice_code = practices.practice_code

)

select * from final
