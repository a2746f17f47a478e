{#
    The key of the unknown member of every dimension: the row that order lines point to
    when their customer or product is not (or no longer) in the dimension, for example a
    customer the CRM has not exported yet. Surrogate keys are md5 hex, so '-1' never
    collides with a real member.
#}
{% macro unknown_member_key() -%}
    '-1'
{%- endmacro %}
