-- One row per GP system and practice: mart_data_quality_coding under disclosure control (counts
-- 1-7 redacted to null, the rest rounded to the nearest 5; the coding rate from unrounded counts,
-- redacted when the practice has 7 or fewer patient records).

with

coding as (

    select * from {{ ref('mart_data_quality_coding') }}

),

final as (

    select
        system_practice_key,
        gp_system,
        practice_code,
        {{ disclosure_count('registered_patients') }} as registered_patients,
        {{ disclosure_count('patients_with_referral_code') }} as patients_with_referral_code,
        {{ disclosure_rate('patients_with_referral_code', 'registered_patients') }} as referral_coding_rate
    from coding

)

select * from final
