-- One row per ambulance incident and per VCSE attendance row, linked to a person by the first
-- linkage tier whose token points at exactly one person (see the model description for the rule).

with

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

ambulance_incidents as (

    select * from {{ ref('stg_ambulance__incidents') }}

),

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

feed_records as (

    select
        'ambulance' as feed,
        incident_key as record_key,
        call_received_date as record_date,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token
    from ambulance_incidents

    union all

    select
        'vcse' as feed,
        attendance_key as record_key,
        session_date as record_date,
        nhs_number_token,
        name_dob_token,
        surname_dob_postcode_token
    from vcse_attendances

),

-- Every tier 2 and tier 3 token each person is known by: from their GP records, and from the feed
-- records that carry their NHS number (tier 1 links, which name the person themselves). A pair can
-- appear more than once: token_people counts distinct people and takes the least, which repeats do
-- not change, so no union removes them first (1.5 M GP records: a hash of 64-character pairs saved).
person_tokens as (

    select
        person_key,
        2 as link_tier,
        name_dob_token as token
    from gp_patients
    where name_dob_token is not null

    union all

    select
        person_key,
        3 as link_tier,
        surname_dob_postcode_token as token
    from gp_patients
    where surname_dob_postcode_token is not null

    union all

    select
        nhs_number_token as person_key,
        2 as link_tier,
        name_dob_token as token
    from feed_records
    where nhs_number_token is not null and name_dob_token is not null

    union all

    select
        nhs_number_token as person_key,
        3 as link_tier,
        surname_dob_postcode_token as token
    from feed_records
    where nhs_number_token is not null and surname_dob_postcode_token is not null

),

-- How many people each token points at; only a token that points at exactly one person links.
token_people as (

    select
        link_tier,
        token,
        count(distinct person_key) as people_count,
        min(person_key) as person_key
    from person_tokens
    group by link_tier, token

),

records_matched as (

    select
        feed_records.*,
        name_dob.people_count as name_dob_people_count,
        name_dob.person_key as name_dob_person_key,
        surname_dob_postcode.people_count as surname_dob_postcode_people_count,
        surname_dob_postcode.person_key as surname_dob_postcode_person_key
    from feed_records
    left join token_people as name_dob
        on name_dob.link_tier = 2
        and feed_records.name_dob_token = name_dob.token
    left join token_people as surname_dob_postcode
        on surname_dob_postcode.link_tier = 3
        and feed_records.surname_dob_postcode_token = surname_dob_postcode.token

),

records_linked as (

    select
        *,
        case
            when nhs_number_token is not null then 1
            when name_dob_people_count = 1 then 2
            when surname_dob_postcode_people_count = 1 then 3
        end as link_tier
    from records_matched

),

final as (

    select
        feed || ':' || record_key as feed_record_key,
        feed,
        record_key,
        record_date,
        case link_tier
            when 1 then nhs_number_token
            when 2 then name_dob_person_key
            when 3 then surname_dob_postcode_person_key
        end as person_key,
        link_tier,
        link_tier is not null as is_linked,
        nhs_number_token is null and coalesce(name_dob_people_count, 0) > 1 as has_name_dob_conflict,
        link_tier is null and coalesce(surname_dob_postcode_people_count, 0) > 1
            as has_surname_dob_postcode_conflict,
        (
            nhs_number_token is not null
            or name_dob_token is not null
            or surname_dob_postcode_token is not null
        ) as has_linkage_token
    from records_linked

)

select * from final
