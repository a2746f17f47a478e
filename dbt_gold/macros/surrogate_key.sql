{#
    A stable surrogate key: md5 of the fields cast to text, joined with '-', nulls
    replaced by a placeholder. Same recipe as dbt_utils.generate_surrogate_key, so
    the keys do not change if dbt_utils is adopted later, and the same on every engine
    (DuckDB, Spark and Databricks all return lowercase hex md5).
#}
{% macro surrogate_key(field_list) -%}
    {%- set fields = [] -%}
    {%- for field in field_list -%}
        {%- do fields.append(
            "coalesce(cast(" ~ field ~ " as " ~ dbt.type_string() ~ "), '_dbt_utils_surrogate_key_null_')"
        ) -%}
        {%- if not loop.last -%}
            {%- do fields.append("'-'") -%}
        {%- endif -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(fields)) }}
{%- endmacro %}
