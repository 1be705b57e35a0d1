{#-
    Every non-null value lies between min_value and max_value (inclusive). Null values pass: pair
    with not_null where a value is required. (Written here because `dbt deps` cannot download
    dbt_utils on the project's machines.)
-#}
{% test accepted_range(model, column_name, min_value, max_value) %}

select {{ column_name }} as out_of_range_value
from {{ model }}
where {{ column_name }} < {{ min_value }}
   or {{ column_name }} > {{ max_value }}

{% endtest %}
