{#
    Generic test: no two rows share the same values in combination_of_columns
    (stand-in for dbt_utils.unique_combination_of_columns, which cannot be installed).
    Returns one row per duplicated combination.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

duplicated_combinations as (

    select
        {{ combination_of_columns | join(', ') }},
        count(*) as n_records

    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1

)

select * from duplicated_combinations

{% endtest %}
