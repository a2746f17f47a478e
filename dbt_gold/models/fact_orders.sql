{#
    One row per order line (order_number + product_number), from the CRM sales export and
    the streamed orders, rebuilt from silver at every build, so that gold is exactly what
    the sources say now:

    - the CRM export is a full snapshot: its lines are the CRM's whole truth, so lines it
      no longer holds leave and corrected lines change;
    - silver stream_orders already holds the current state of each streamed order (replays
      merged, later events replacing earlier ones), and is never rebuilt for a changed export;
    - where both hold a line, the CRM line wins;
    - keys are looked up in the dimensions as they are now: a customer or product that is
      not (or no longer) there is the unknown member ('-1'), never a failed build.
#}

{{
    config(
        materialized='table',
        file_format=(none if target.type == 'duckdb' else 'delta')
    )
}}

with

crm_sales as (

    select * from {{ source('silver', 'crm_sales_details') }}

),

stream_orders as (

    select * from {{ source('silver', 'stream_orders') }}

),

customers as (

    select customer_key, customer_id from {{ ref('dim_customers') }}
    where customer_id is not null

),

products as (

    select product_key, product_number from {{ ref('dim_products') }}
    where product_number is not null

),

crm_order_lines as (

    select
        sls_ord_num as order_number,
        sls_prd_key as product_number,
        sls_cust_id as customer_id,
        sls_order_dt as order_date,
        sls_ship_dt as shipping_date,
        sls_due_dt as due_date,
        sls_sales as sales_amount,
        sls_quantity as quantity,
        sls_price as price,
        'crm' as source,
        _ingested_at

    from crm_sales

),

-- a streamed line that the CRM export also holds is the CRM's
stream_order_lines as (

    select
        stream_orders.sls_ord_num as order_number,
        stream_orders.sls_prd_key as product_number,
        stream_orders.sls_cust_id as customer_id,
        stream_orders.sls_order_dt as order_date,
        stream_orders.sls_ship_dt as shipping_date,
        stream_orders.sls_due_dt as due_date,
        stream_orders.sls_sales as sales_amount,
        stream_orders.sls_quantity as quantity,
        stream_orders.sls_price as price,
        'stream' as source,
        stream_orders._ingested_at

    from stream_orders

    left join crm_sales
        on stream_orders.sls_ord_num = crm_sales.sls_ord_num
        and stream_orders.sls_prd_key = crm_sales.sls_prd_key

    where crm_sales.sls_ord_num is null

),

order_lines as (

    select * from crm_order_lines
    union all
    select * from stream_order_lines

),

final as (

    select
        order_lines.order_number,
        coalesce(products.product_key, {{ unknown_member_key() }}) as product_key,
        coalesce(customers.customer_key, {{ unknown_member_key() }}) as customer_key,
        order_lines.product_number,
        order_lines.customer_id,
        order_lines.order_date,
        order_lines.shipping_date,
        order_lines.due_date,
        order_lines.sales_amount,
        order_lines.quantity,
        order_lines.price,
        order_lines.source,
        order_lines._ingested_at

    from order_lines

    left join products
        on order_lines.product_number = products.product_number

    left join customers
        on order_lines.customer_id = customers.customer_id

)

select * from final
