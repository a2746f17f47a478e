-- Order lines with a negative unit price. Expected: none.

select
    order_number,
    product_key,
    price

from {{ ref('fact_orders') }}
where price < 0
