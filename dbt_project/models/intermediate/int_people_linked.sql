-- One row per person: the people of the GP records (int_gp_patients_linked), and the people known
-- only by an NHS number token in the ambulance or VCSE feeds (traced callers and attendees who are
-- not registered at a practice that sends data here).

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

-- A person with several GP records (registered at two practices) takes the details of one: the
-- record that carries the NHS number, then the latest extract, then the lowest patient key.
gp_records_ranked as (

    select
        *,
        count(*) over (partition by person_key) as gp_record_count,
        row_number() over (
            partition by person_key
            order by case when link_tier = 1 then 0 else 1 end asc, extract_date desc, patient_key asc
        ) as record_rank
    from gp_patients

),

registered_people as (

    select
        person_key,
        person_anchor,
        nhs_number_token,
        'gp' as identity_source,
        true as is_registered,
        gp_record_count,
        patient_key,
        gp_system,
        practice_code,
        sex,
        age_at_extract,
        age_band_at_extract,
        extract_date,
        lsoa21_code,
        imd_decile,
        imd_quintile
    from gp_records_ranked
    where record_rank = 1

),

feed_nhs_number_tokens as (

    select
        nhs_number_token,
        'ambulance' as identity_source,
        1 as source_order
    from ambulance_incidents
    where nhs_number_token is not null

    union

    select
        nhs_number_token,
        'vcse' as identity_source,
        2 as source_order
    from vcse_attendances
    where nhs_number_token is not null

),

-- People known only from the feeds, keyed by their NHS number token; named after the first feed
-- (ambulance before VCSE) that knows them.
unregistered_people as (

    select
        feed_tokens.nhs_number_token as person_key,
        'nhs_number' as person_anchor,
        feed_tokens.nhs_number_token,
        min_by(feed_tokens.identity_source, feed_tokens.source_order) as identity_source,
        false as is_registered,
        0 as gp_record_count,
        cast(null as {{ dbt.type_string() }}) as patient_key,
        cast(null as {{ dbt.type_string() }}) as gp_system,
        cast(null as {{ dbt.type_string() }}) as practice_code,
        'unknown' as sex,
        cast(null as integer) as age_at_extract,
        cast(null as {{ dbt.type_string() }}) as age_band_at_extract,
        cast(null as date) as extract_date,
        cast(null as {{ dbt.type_string() }}) as lsoa21_code,
        cast(null as integer) as imd_decile,
        cast(null as integer) as imd_quintile
    from feed_nhs_number_tokens as feed_tokens
    left join registered_people
        on feed_tokens.nhs_number_token = registered_people.person_key
    where registered_people.person_key is null
    group by feed_tokens.nhs_number_token

),

final as (

    select * from registered_people
    union all
    select * from unregistered_people

)

select * from final
