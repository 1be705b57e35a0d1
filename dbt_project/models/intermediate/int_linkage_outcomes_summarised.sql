-- One row per source and linkage outcome: how many GP patient records, ambulance incidents and
-- VCSE attendance rows were linked at each tier, stood as a person of their own, or stayed
-- unlinked, and how many of them met a conflicting token (one token pointing at two or more people).

with

gp_patients as (

    select * from {{ ref('int_gp_patients_linked') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

records as (

    select
        'gp' as source,
        case when link_tier is null then 'own_person' else 'tier_' || cast(link_tier as {{ dbt.type_string() }}) end
            as link_outcome,
        has_name_dob_conflict,
        has_surname_dob_postcode_conflict,
        nhs_number_token is not null or name_dob_token is not null or surname_dob_postcode_token is not null
            as has_linkage_token
    from gp_patients

    union all

    select
        feed as source,
        case when link_tier is null then 'unlinked' else 'tier_' || cast(link_tier as {{ dbt.type_string() }}) end
            as link_outcome,
        has_name_dob_conflict,
        has_surname_dob_postcode_conflict,
        has_linkage_token
    from feed_records

),

final as (

    select
        source || ':' || link_outcome as linkage_outcome_key,
        source,
        link_outcome,
        count(*) as record_count,
        count(case when has_name_dob_conflict then 1 end) as name_dob_conflict_count,
        count(case when has_surname_dob_postcode_conflict then 1 end) as surname_dob_postcode_conflict_count,
        count(case when not has_linkage_token then 1 end) as without_linkage_token_count
    from records
    group by source, link_outcome

)

select * from final
