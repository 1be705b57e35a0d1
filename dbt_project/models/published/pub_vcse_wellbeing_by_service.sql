-- One row per VCSE service and ONS4 wellbeing measure: mart_vcse_wellbeing_by_service under
-- disclosure control (counts 1-7 redacted to null, the rest rounded to the nearest 5; means and
-- shares redacted when 7 or fewer people answered twice, or when the count of people improved is
-- 1 to 7).

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
        {{ disclosure_count('people_answering') }} as people_answering,
        {{ disclosure_count('people_answering_twice') }} as people_answering_twice,
        {{ disclosure_statistic('round(mean_first_score, 1)', 'people_answering_twice') }} as mean_first_score,
        {{ disclosure_statistic('round(mean_latest_score, 1)', 'people_answering_twice') }} as mean_latest_score,
        {{ disclosure_statistic('round(mean_change, 1)', 'people_answering_twice') }} as mean_change,
        {{ disclosure_count('people_improved') }} as people_improved,
        {{ disclosure_rate('people_improved', 'people_answering_twice') }} as share_improved
    from wellbeing

)

select * from final
