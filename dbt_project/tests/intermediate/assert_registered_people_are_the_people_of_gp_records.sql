-- Invariant: a person is registered exactly when a current GP record belongs to them, and their
-- record count is the number of such records. Returns the people for whom that fails.

with

people as (

    select * from {{ ref('int_people_linked') }}

),

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

records_per_person as (

    select
        person_key,
        count(*) as gp_record_count
    from gp_patients
    group by person_key

)

select
    coalesce(people.person_key, records_per_person.person_key) as person_key,
    people.is_registered,
    people.gp_record_count,
    records_per_person.gp_record_count as records_found
from people
full outer join records_per_person
    on people.person_key = records_per_person.person_key
where people.person_key is null
    or people.is_registered != (records_per_person.person_key is not null)
    or people.gp_record_count != coalesce(records_per_person.gp_record_count, 0)
