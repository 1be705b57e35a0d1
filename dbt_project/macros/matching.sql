{#- The bands that comparator matching compares: shared by the referral episodes and the matching. -#}

{#- Age band from an age in whole years (null stays null). -#}
{% macro age_band(age) -%}
    case
        when {{ age }} is null then null
        when {{ age }} < 18 then '0-17'
        when {{ age }} < 35 then '18-34'
        when {{ age }} < 50 then '35-49'
        when {{ age }} < 65 then '50-64'
        when {{ age }} < 80 then '65-79'
        else '80+'
    end
{%- endmacro %}

{#- Band of a count of attended GP consultations in the year before the index date. -#}
{% macro consultation_band(count) -%}
    case
        when {{ count }} = 0 then '0'
        when {{ count }} <= 2 then '1-2'
        when {{ count }} <= 5 then '3-5'
        when {{ count }} <= 9 then '6-9'
        when {{ count }} <= 14 then '10-14'
        else '15+'
    end
{%- endmacro %}

{#- The first 8 hex digits of an md5 below which a draw falls with probability `share` (0 to 1): a
    threshold to compare with substr(md5(...), 1, 8), both lower-case hex. -#}
{% macro md5_prefix_below(share) -%}
    lower(lpad(hex(cast(floor(4294967296.0 * {{ share }}) as bigint)), 8, '0'))
{%- endmacro %}

{#- Comparator matching (int_comparators_matched). The candidates of the referrals in `referral_strata`
    (one row per referral x matching stratum, with its candidate_count): the stratum's `people`
    (registered, with their observed GP period) other than the referred person, whose prior year is
    observed and who have no referral in `referrals` within the washout, each with their draw (md5 of
    person and episode key); only those among a referral's first draws (about matching_first_draws of
    them, the lowest) if `first_draws_only`. -#}
{% macro eligible_candidates(referral_strata, people, referrals, first_draws_only) %}
    {%- set prior_year_days = var('matching_prior_year_days') %}
    {%- set washout_days = var('matching_washout_days') %}
    select
        drawn.episode_key,
        drawn.index_date,
        drawn.referral_band,
        drawn.person_key,
        drawn.draw
    from (
        select
            referral_strata.episode_key,
            referral_strata.index_date,
            referral_strata.prior_year_consultation_band as referral_band,
            referral_strata.candidate_count,
            candidates.person_key,
            md5(candidates.person_key || ':' || referral_strata.episode_key) as draw
        from {{ referral_strata }} as referral_strata
        inner join {{ people }} as candidates
            on referral_strata.matching_area_code = candidates.matching_area_code
            and referral_strata.sex = candidates.sex
            and referral_strata.imd_quintile = candidates.imd_quintile
            and referral_strata.extract_date = candidates.extract_date
            and referral_strata.age_at_extract = candidates.age_at_extract
            and referral_strata.person_key != candidates.person_key
        left join {{ referrals }} as washout_referrals
            on candidates.person_key = washout_referrals.person_key
            and washout_referrals.referral_date
            between cast({{ dbt.dateadd('day', -washout_days, 'referral_strata.index_date') }} as date)
            and cast({{ dbt.dateadd('day', washout_days, 'referral_strata.index_date') }} as date)
        where candidates.observed_from_date
            <= cast({{ dbt.dateadd('day', -prior_year_days, 'referral_strata.index_date') }} as date)
            and candidates.observed_to_date >= referral_strata.index_date
            and washout_referrals.person_key is null
    ) as drawn
    {%- if first_draws_only %}
    where drawn.candidate_count <= {{ var('matching_first_draws') }}
        or substr(drawn.draw, 1, 8) < {{ md5_prefix_below(var('matching_first_draws') ~ ' / drawn.candidate_count') }}
    {%- endif %}
{% endmacro %}

{#- Each candidate in `candidates` with their attended `consultations` in the prior year and its band,
    kept when the band is their referral's. -#}
{% macro band_matched(candidates, consultations) %}
    {%- set prior_year_days = var('matching_prior_year_days') %}
    select
        candidates_counted.*,
        {{ consultation_band('candidates_counted.prior_year_consultations') }} as prior_year_consultation_band
    from (
        select
            candidates.episode_key,
            candidates.index_date,
            candidates.person_key,
            candidates.draw,
            candidates.referral_band,
            count(attended_consultations.event_date) as prior_year_consultations
        from {{ candidates }} as candidates
        left join {{ consultations }} as attended_consultations
            on candidates.person_key = attended_consultations.person_key
            and attended_consultations.event_date
            >= cast({{ dbt.dateadd('day', -prior_year_days, 'candidates.index_date') }} as date)
            and attended_consultations.event_date < candidates.index_date
        group by
            candidates.episode_key,
            candidates.index_date,
            candidates.person_key,
            candidates.draw,
            candidates.referral_band
    ) as candidates_counted
    where {{ consultation_band('candidates_counted.prior_year_consultations') }} = candidates_counted.referral_band
{% endmacro %}
