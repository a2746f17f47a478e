{#
    Order lines that point to the unknown customer or product: the customer or product is
    not (or no longer) in its dimension. A warning when there are any; an error above the
    var `max_unknown_member_lines` (unset: no limit), which the pipeline sets from
    LOGISTICS_MAX_UNKNOWN_LINES.
#}

{{
    config(
        warn_if='>0',
        error_if='>' ~ var('max_unknown_member_lines', 9223372036854775806)
    )
}}

select
    order_number,
    product_number,
    customer_id,
    product_key,
    customer_key

from {{ ref('fact_orders') }}
where product_key = {{ unknown_member_key() }}
    or customer_key = {{ unknown_member_key() }}
