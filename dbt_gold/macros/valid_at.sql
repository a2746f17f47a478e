{#
    True for the version of `relation` (a history table with valid_from and valid_to, the end
    exclusive and null while current) that was valid at `moment`.
#}
{% macro valid_at(relation, moment) -%}
    {{ relation }}.valid_from <= {{ moment }} and ({{ relation }}.valid_to is null or {{ moment }} < {{ relation }}.valid_to)
{%- endmacro %}
