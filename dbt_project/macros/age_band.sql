{#- Age band from an age in whole years (null stays null): the bands the referral episodes and
    the published tables report. -#}
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
