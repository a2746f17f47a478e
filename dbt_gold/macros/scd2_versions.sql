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
        {{ row_fingerprint(attributes) }} as attributes_hash

    from {{ spans }}

),

-- a span starts a version unless it continues the one before (same attributes, no gap);
-- it ends one unless the next span continues it
marked_spans as (

    select
        hashed_spans.*,
        case
            when lag(attributes_hash) over ({{ by_member }} order by span_start) = attributes_hash
                and lag(span_end) over ({{ by_member }} order by span_start) = span_start
                then 0
            else 1
        end as starts_version,
        case
            when lead(attributes_hash) over ({{ by_member }} order by span_start) = attributes_hash
                and lead(span_start) over ({{ by_member }} order by span_start) = span_end
                then 0
            else 1
        end as ends_version

    from hashed_spans

),

-- the first and last span of every version (one row when a version is one span): each
-- start is followed by its own end, so a version's end is its start's row or the next, and
-- the next version starts one or two rows on. One window pass over these, not a GROUP BY of
-- every attribute: that aggregate ran out of DuckDB's memory_limit at scale 100 (1.8 M customers).
boundaries as (

    select
        marked_spans.*,
        sum(starts_version) over (
            {{ by_member }} order by span_start rows between unbounded preceding and current row
        ) as version_number,
        lead(span_end) over ({{ by_member }} order by span_start) as next_span_end,
        lead(span_start) over ({{ by_member }} order by span_start) as next_span_start,
        lead(span_start, 2) over ({{ by_member }} order by span_start) as second_span_start

    from marked_spans
    where starts_version = 1 or ends_version = 1

),

collapsed as (

    select
        {{ (key + attributes) | join(', ') }},
        cast(version_number as {{ dbt.type_bigint() }}) as version_number,
        span_start as recorded_at,
        -- the last span of a current version is open
        case when ends_version = 1 then span_end else next_span_end end as valid_to,
        case when ends_version = 1 then next_span_start else second_span_start end as next_recorded_at

    from boundaries
    where starts_version = 1

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
            when next_recorded_at = valid_to then false
            else true
        end as is_deleted,
        recorded_at

    from collapsed

)
{%- endmacro %}
