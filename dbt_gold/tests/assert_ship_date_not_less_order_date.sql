-- Order lines shipped before they were ordered. Expected: none.

select
    order_number,
    product_key,
    order_date,
    shipping_date

from {{ ref('fact_orders') }}
where shipping_date < order_date
