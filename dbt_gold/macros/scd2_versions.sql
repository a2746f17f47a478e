{#
    The versions of a dimension from `spans`: a CTE holding, per member (`key`: its surrogate
    key and natural id), its `attributes` over consecutive spans of time (span_start, span_end;
    the last open). Consecutive spans with the same attributes are one version; a gap between
    spans (the member left the export, then came back) ends a version. Emits CTEs ending in
    `versions`: the key, the attributes, version_number (1, 2, ... per member), valid_from (the
    first version: beginning_of_time()), valid_to (exclusive; null while current), is_current,
    is_deleted (the member left the export when this version ended) and recorded_at (when the
    pipeline first saw the version: the time of the silver run that did).
#}
{% macro scd2_versions(spans, key, attributes) -%}
{%- set member = key | last -%}
{%- set by_member = 'partition by ' ~ member -%}

hashed_spans as (

    select
        {{ spans }}.*,
        {{ surrogate_key(attributes) }} as attributes_hash

    from {{ spans }}

),

marked_spans as (

    select
        hashed_spans.*,
        case
            when lag(attributes_hash) over ({{ by_member }} order by span_start) = attributes_hash
                and lag(span_end) over ({{ by_member }} order by span_start) = span_start
                then 0
            else 1
        end as starts_version

    from hashed_spans

),

numbered_spans as (

    select
        marked_spans.*,
        cast(sum(starts_version) over ({{ by_member }} order by span_start rows between unbounded preceding and current row) as {{ dbt.type_bigint() }}) as version_number

    from marked_spans

),

collapsed as (

    select
        {{ (key + attributes) | join(', ') }},
        version_number,
        min(span_start) as recorded_at,
        -- the last span of a current version is open
        case when count(span_end) = count(*) then max(span_end) end as valid_to

    from numbered_spans
    group by {{ (key + attributes) | join(', ') }}, version_number

),

versions as (

    select
        {{ (key + attributes) | join(', ') }},
        version_number,
        case when version_number = 1 then {{ beginning_of_time() }} else recorded_at end as valid_from,
        valid_to,
        valid_to is null as is_current,
        case
            when valid_to is null then false
            when lead(recorded_at) over ({{ by_member }} order by version_number) = valid_to then false
            else true
        end as is_deleted,
        recorded_at

    from collapsed

)
{%- endmacro %}
