{#- Small, shared derivations used by more than one staging model. -#}

{#-
    Sex in one vocabulary across feeds: female, male, indeterminate, unknown. EMIS writes
    Male/Female/Indeterminate/Unknown, SystmOne M/F/I/U, the ambulance trust M/F/U. A missing value
    is unknown; a value outside these becomes null, so the not_null test on the model fails loudly
    instead of hiding a new code.
-#}
{% macro standardise_sex(column) -%}
    case
        when {{ column }} is null then 'unknown'
        when upper(trim({{ column }})) in ('F', 'FEMALE') then 'female'
        when upper(trim({{ column }})) in ('M', 'MALE') then 'male'
        when upper(trim({{ column }})) in ('I', 'INDETERMINATE') then 'indeterminate'
        when upper(trim({{ column }})) in ('U', 'UNKNOWN') then 'unknown'
    end
{%- endmacro %}

{#- IMD quintile from the decile: deciles 1-2 are quintile 1 (the most deprived fifth), 9-10 quintile 5. -#}
{% macro imd_quintile(decile_column) -%}
    cast(ceil({{ decile_column }} / 2.0) as integer)
{%- endmacro %}
