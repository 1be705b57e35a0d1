-- One row per VCSE service and ONS4 wellbeing measure: mart_vcse_wellbeing_by_service under
-- disclosure control, with a status beside every redactable figure: counts of people 1-7 redacted,
-- the rest rounded to the nearest 5; means and shares redacted when 7 or fewer people answered
-- twice, or when the count of people improved is 1 to 7. One row per service and measure, with no
-- total beside it, so no secondary suppression is needed.

with

wellbeing as (

    select * from {{ ref('mart_vcse_wellbeing_by_service') }}

),

final as (

    select
        service_measure_key,
        service_id,
        measure,
        is_lower_better,
        {{ count_with_status('people_answering') }},
        {{ count_with_status('people_answering_twice') }},
        {{ statistic_with_status('round(mean_first_score, 1)', 'people_answering_twice', 'mean_first_score') }},
        {{ statistic_with_status('round(mean_latest_score, 1)', 'people_answering_twice', 'mean_latest_score') }},
        {{ statistic_with_status('round(mean_change, 1)', 'people_answering_twice', 'mean_change') }},
        {{ count_with_status('people_improved') }},
        {{ rate_with_status('people_improved', 'people_answering_twice', 'share_improved') }}
    from wellbeing

)

select * from final
