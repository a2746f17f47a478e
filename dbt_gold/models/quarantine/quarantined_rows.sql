{#
    One row per row the silver layer rejected, from every quarantine table, in one shape: the
    table, the rule, where the row came from (file line, or Kafka partition and offset, or
    landing file and offset), the batch, and the row as received. A view: the rows stay in the
    tables quarantine.<table>, which the build loads from the lake's Delta tables.
#}

{{
    config(
        materialized='view',
        enabled=(target.type == 'duckdb')
    )
}}

{%- set csv_tables = ['crm_cust_info', 'crm_prd_info', 'crm_sales_details', 'erp_cust_az12', 'erp_loc_a101', 'erp_px_cat_g1v2'] %}

with

{% for table in csv_tables %}
{{ table }} as (

    select
        '{{ table }}' as table_name,
        _rule as rule,
        _source as source,
        _line as line,
        cast(null as integer) as kafka_partition,
        cast(null as bigint) as message_offset,
        cast(null as bigint) as line_index,
        _batch_id as batch_id,
        _ingested_at as ingested_at,
        _bronze_error as bronze_error,
        -- the source columns (bronze's own start with '_'), new ones included
        cast(to_json(struct_pack(*columns(lambda c: not starts_with(c, '_')))) as varchar) as received
    from {{ source('quarantine', table) }}

),

{% endfor %}
stream_orders as (

    select
        'stream_orders' as table_name,
        _rule as rule,
        _source as source,
        cast(null as bigint) as line,
        partition as kafka_partition,
        "offset" as message_offset,
        _line_index as line_index,
        _batch_id as batch_id,
        _ingested_at as ingested_at,
        cast(null as varchar) as bronze_error,
        value as received
    from {{ source('quarantine', 'stream_orders') }}

),

final as (

    {% for table in csv_tables %}
    select * from {{ table }}
    union all
    {% endfor %}
    select * from stream_orders

)

select * from final
