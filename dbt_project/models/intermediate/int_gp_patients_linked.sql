-- One row per current GP patient record (EMIS and SystmOne), with the person it belongs to.
-- GP records are the anchors of the person spine. The linkage rule is stated once, in the
-- description of this model in _intermediate__models.yml: tier 1 (NHS number token) makes the
-- person; a record without an NHS number joins the one person its tier 2 or tier 3 token points
-- at, or is a person of its own.

with

emis_patients as (

    select * from {{ ref('stg_emis__patients') }}

),

systmone_patients as (

    select * from {{ ref('stg_systmone__patients') }}

),

gp_patients as (

    select
        patient_key,
        gp_system,
        practice_code,
        practice_patient_id,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        imd_decile,
        imd_quintile,
        sex,
        age_at_extract,
        age_band_at_extract,
        extract_date
    from emis_patients

    union all

    select
        patient_key,
        gp_system,
        practice_code,
        practice_patient_id,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        imd_decile,
        imd_quintile,
        sex,
        age_at_extract,
        age_band_at_extract,
        extract_date
    from systmone_patients

),

-- Tier 1: every NHS number token is one person, however many practices hold a record for it.
records_with_nhs_number as (

    select * from gp_patients
    where nhs_number_token is not null

),

records_without_nhs_number as (

    select * from gp_patients
    where nhs_number_token is null

),

-- The tier 2 and tier 3 tokens each NHS-number person is known by, from their own records.
name_dob_tokens_of_people as (

    select distinct
        name_dob_token,
        nhs_number_token as person_key
    from records_with_nhs_number
    where name_dob_token is not null

),

surname_dob_postcode_tokens_of_people as (

    select distinct
        surname_dob_postcode_token,
        nhs_number_token as person_key
    from records_with_nhs_number
    where surname_dob_postcode_token is not null

),

-- How many people each record's tier 2 token points at (two or more is a conflict).
name_dob_candidates as (

    select
        records.patient_key,
        count(distinct people.person_key) as candidate_people,
        min(people.person_key) as person_key
    from records_without_nhs_number as records
    inner join name_dob_tokens_of_people as people
        on records.name_dob_token = people.name_dob_token
    group by records.patient_key

),

surname_dob_postcode_candidates as (

    select
        records.patient_key,
        count(distinct people.person_key) as candidate_people,
        min(people.person_key) as person_key
    from records_without_nhs_number as records
    inner join surname_dob_postcode_tokens_of_people as people
        on records.surname_dob_postcode_token = people.surname_dob_postcode_token
    group by records.patient_key

),

records_without_nhs_number_linked as (

    select
        records.*,
        case
            when name_dob.candidate_people = 1 then name_dob.person_key
            when surname_dob_postcode.candidate_people = 1 then surname_dob_postcode.person_key
            else 'gp:' || records.patient_key
        end as person_key,
        case
            when name_dob.candidate_people = 1 then 2
            when surname_dob_postcode.candidate_people = 1 then 3
        end as link_tier,
        coalesce(name_dob.candidate_people > 1, false) as has_name_dob_conflict,
        coalesce(
            name_dob.candidate_people is distinct from 1 and surname_dob_postcode.candidate_people > 1, false
        ) as has_surname_dob_postcode_conflict
    from records_without_nhs_number as records
    left join name_dob_candidates as name_dob
        on records.patient_key = name_dob.patient_key
    left join surname_dob_postcode_candidates as surname_dob_postcode
        on records.patient_key = surname_dob_postcode.patient_key

),

final as (

    select
        patient_key,
        nhs_number_token as person_key,
        1 as link_tier,
        'nhs_number' as person_anchor,
        false as has_name_dob_conflict,
        false as has_surname_dob_postcode_conflict,
        gp_system,
        practice_code,
        practice_patient_id,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        imd_decile,
        imd_quintile,
        sex,
        age_at_extract,
        age_band_at_extract,
        extract_date
    from records_with_nhs_number

    union all

    select
        patient_key,
        person_key,
        link_tier,
        case when link_tier is null then 'gp_record' else 'nhs_number' end as person_anchor,
        has_name_dob_conflict,
        has_surname_dob_postcode_conflict,
        gp_system,
        practice_code,
        practice_patient_id,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token,
        postcode_token,
        lsoa21_code,
        imd_decile,
        imd_quintile,
        sex,
        age_at_extract,
        age_band_at_extract,
        extract_date
    from records_without_nhs_number_linked

)

select * from final
