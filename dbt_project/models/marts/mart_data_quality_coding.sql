-- One row per GP system and practice: social prescribing coding completeness, the share of the
-- practice's current patient records that carry a national social prescribing referral code.
-- A system's rate is the sum of its practices' numerators over the sum of their denominators.

with

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

social_prescribing_codes as (

    select * from {{ ref('int_social_prescribing_codes_unioned') }}

),

patients_with_referral_code as (

    select distinct patient_key
    from social_prescribing_codes
    where code_role = 'referral'

),

coding_per_practice as (

    select
        gp_patients.gp_system,
        gp_patients.practice_code,
        count(*) as registered_patients,
        count(patients_with_referral_code.patient_key) as patients_with_referral_code
    from gp_patients
    left join patients_with_referral_code
        on gp_patients.patient_key = patients_with_referral_code.patient_key
    group by gp_patients.gp_system, gp_patients.practice_code

),

final as (

    select
        gp_system || ':' || practice_code as system_practice_key,
        gp_system,
        practice_code,
        registered_patients,
        patients_with_referral_code,
        cast(patients_with_referral_code as double) / registered_patients as referral_coding_rate
    from coding_per_practice

)

select * from final
