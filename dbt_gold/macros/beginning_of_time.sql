{#
    Where the first version of every dimension member starts (1900-01-01 00:00 UTC), so that an
    order placed before the pipeline first saw its customer or product still finds a version.
    An instant in UTC, typed like the lake's timestamps on each engine.
#}
{% macro beginning_of_time() -%}
    {%- if target.type == 'duckdb' -%}
        cast('1900-01-01 00:00:00+00' as timestamptz)
    {%- else -%}
        cast('1900-01-01T00:00:00Z' as timestamp)
    {%- endif -%}
{%- endmacro %}
