{#
    One row per order line, from the CRM sales history and the streamed orders.
    Incremental: each run reads only the silver rows ingested after the latest
    `_ingested_at` already loaded from the same source, and replaces lines by
    (order_number, product_key). When both sources hold the same line, the CRM wins.
#}

{{
    config(
        materialized='incremental',
        unique_key=['order_number', 'product_key'],
        incremental_strategy=('delete+insert' if target.type == 'duckdb' else 'merge'),
        file_format=(none if target.type == 'duckdb' else 'delta'),
        on_schema_change='fail'
    )
}}

with

crm_sales as (

    select * from {{ source('silver', 'crm_sales_details') }}

    {% if is_incremental() %}
    where _ingested_at > (
        select coalesce(max(_ingested_at), cast('1900-01-01' as timestamp))
        from {{ this }}
        where source = 'crm'
    )
    {% endif %}

),

stream_orders as (

    select * from {{ source('silver', 'stream_orders') }}

    {% if is_incremental() %}
    where _ingested_at > (
        select coalesce(max(_ingested_at), cast('1900-01-01' as timestamp))
        from {{ this }}
        where source = 'stream'
    )
    {% endif %}

),

crm_order_lines as (

    select
        sls_ord_num as order_number,
        {{ surrogate_key(['sls_prd_key']) }} as product_key,
        {{ surrogate_key(['sls_cust_id']) }} as customer_key,
        sls_order_dt as order_date,
        sls_ship_dt as shipping_date,
        sls_due_dt as due_date,
        sls_sales as sales_amount,
        sls_quantity as quantity,
        sls_price as price,
        'crm' as source,
        _ingested_at,
        1 as source_priority,
        cast(null as {{ dbt.type_string() }}) as event_id

    from crm_sales

),

stream_order_lines as (

    select
        sls_ord_num as order_number,
        {{ surrogate_key(['sls_prd_key']) }} as product_key,
        {{ surrogate_key(['sls_cust_id']) }} as customer_key,
        sls_order_dt as order_date,
        sls_ship_dt as shipping_date,
        sls_due_dt as due_date,
        sls_sales as sales_amount,
        sls_quantity as quantity,
        sls_price as price,
        'stream' as source,
        _ingested_at,
        2 as source_priority,
        event_id

    from stream_orders

),

order_lines as (

    select * from crm_order_lines
    union all
    select * from stream_order_lines

),

-- one row per (order_number, product_key): the CRM line if there is one, else the
-- latest streamed line
ranked_order_lines as (

    select
        *,
        row_number() over (
            partition by order_number, product_key
            order by source_priority, _ingested_at desc, event_id desc
        ) as line_rank

    from order_lines

),

deduplicated as (

    select * from ranked_order_lines
    where line_rank = 1

),

final as (

    select
        order_number,
        product_key,
        customer_key,
        order_date,
        shipping_date,
        due_date,
        sales_amount,
        quantity,
        price,
        source,
        _ingested_at

    from deduplicated

    {% if is_incremental() %}
    -- a streamed line never replaces a CRM line loaded by an earlier run
    where source = 'crm'
        or not exists (
            select 1
            from {{ this }} as loaded
            where loaded.source = 'crm'
                and loaded.order_number = deduplicated.order_number
                and loaded.product_key = deduplicated.product_key
        )
    {% endif %}

)

select * from final
