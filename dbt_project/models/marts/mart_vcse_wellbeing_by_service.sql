-- One row per VCSE service and ONS4 personal wellbeing measure (life satisfaction, worthwhile,
-- happiness, anxiety): among the people who answered at two or more attended sessions, their first
-- and latest answers and the change between them. A naive before/after, with no comparison group:
-- a person asked when things are at their worst tends to answer better later whatever happens
-- (regression to the mean), so read it beside the matched outcomes, not as an effect.

with

vcse_attendances as (

    select * from {{ ref('stg_vcse__attendances') }}

),

feed_records as (

    select * from {{ ref('int_feed_records_linked') }}

),

-- Each attended register row with a wellbeing answer, and the person it belongs to: the linked
-- person, else the attendee as the service's sheet names them.
answered_sessions as (

    select
        vcse_attendances.service_id,
        vcse_attendances.session_date,
        vcse_attendances.wellbeing_score,
        vcse_attendances.wellbeing_worthwhile,
        vcse_attendances.wellbeing_happiness,
        vcse_attendances.wellbeing_anxiety,
        coalesce(
            feed_records.person_key,
            'attendee:' || vcse_attendances.service_id || ':' || vcse_attendances.attendee_key
        ) as attendee_person_key
    from vcse_attendances
    left join feed_records
        on feed_records.feed = 'vcse'
        and vcse_attendances.attendance_key = feed_records.record_key
    where vcse_attendances.is_attended

),

answers as (

    select
        service_id,
        session_date,
        attendee_person_key,
        'life_satisfaction' as measure,
        wellbeing_score as score
    from answered_sessions
    where wellbeing_score is not null
    union all
    select
        service_id,
        session_date,
        attendee_person_key,
        'worthwhile' as measure,
        wellbeing_worthwhile as score
    from answered_sessions
    where wellbeing_worthwhile is not null
    union all
    select
        service_id,
        session_date,
        attendee_person_key,
        'happiness' as measure,
        wellbeing_happiness as score
    from answered_sessions
    where wellbeing_happiness is not null
    union all
    select
        service_id,
        session_date,
        attendee_person_key,
        'anxiety' as measure,
        wellbeing_anxiety as score
    from answered_sessions
    where wellbeing_anxiety is not null

),

-- Two answers on one day (two activities) are ordered by score, so first and latest are stable.
answers_ordered as (

    select
        service_id,
        measure,
        attendee_person_key,
        session_date,
        score,
        row_number() over (
            partition by service_id, measure, attendee_person_key order by session_date asc, score asc
        ) as answer_from_first,
        row_number() over (
            partition by service_id, measure, attendee_person_key order by session_date desc, score desc
        ) as answer_from_latest
    from answers

),

people_answering as (

    select
        service_id,
        measure,
        attendee_person_key,
        count(distinct session_date) as answered_sessions,
        max(score) filter (where answer_from_first = 1) as first_score,
        max(score) filter (where answer_from_latest = 1) as latest_score
    from answers_ordered
    group by service_id, measure, attendee_person_key

),

change_per_service as (

    select
        service_id,
        measure,
        count(*) as people_answering,
        count(*) filter (where answered_sessions >= 2) as people_answering_twice,
        avg(first_score) filter (where answered_sessions >= 2) as mean_first_score,
        avg(latest_score) filter (where answered_sessions >= 2) as mean_latest_score,
        avg(latest_score - first_score) filter (where answered_sessions >= 2) as mean_change,
        count(*) filter (
            where answered_sessions >= 2
            and (
                (measure = 'anxiety' and latest_score < first_score)
                or (measure != 'anxiety' and latest_score > first_score)
            )
        ) as people_improved
    from people_answering
    group by service_id, measure

),

final as (

    select
        service_id || ':' || measure as service_measure_key,
        service_id,
        measure,
        measure = 'anxiety' as is_lower_better,
        people_answering,
        people_answering_twice,
        mean_first_score,
        mean_latest_score,
        mean_change,
        people_improved,
        cast(people_improved as double) / nullif(people_answering_twice, 0) as share_improved
    from change_per_service

)

select * from final
