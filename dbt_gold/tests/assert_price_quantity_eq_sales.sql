-- Order lines whose sales amount is not quantity x price (0.01 tolerance for
-- floating point). Expected: none.

select
    order_number,
    product_key,
    sales_amount,
    quantity,
    price

from {{ ref('fact_orders') }}
where abs(sales_amount - quantity * price) > 0.01
