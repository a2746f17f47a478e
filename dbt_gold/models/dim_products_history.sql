{#
    Every version of every product number (SCD type 2): one row per product and period during
    which dim_products would have held the same row. Built from the lake's history of the CRM
    products (the version without an end date, as each export said) and of the ERP categories
    (see tasks/core/history.py). Times are those of the silver runs that saw the changes; the
    first version starts at the beginning of time.
#}

{{
    config(
        materialized='table',
        file_format=(none if target.type == 'duckdb' else 'delta')
    )
}}

with

-- the current version of each product number, as each export said
products as (

    select * from {{ source('history', 'crm_prd_info') }}
    where prd_end_dt is null

),

categories as (

    select * from {{ source('history', 'erp_px_cat_g1v2') }}

),

category_changes as (

    select id, valid_from as changed_at from categories
    union
    select id, valid_to from categories where valid_to is not null

),

-- every instant something a product is made of changed
changes as (

    select prd_key, valid_from as changed_at from products
    union
    select prd_key, valid_to from products where valid_to is not null
    union
    select products.prd_key, category_changes.changed_at
    from products
    join category_changes on category_changes.id = products.cat_id

),

spans as (

    select
        prd_key,
        changed_at as span_start,
        lead(changed_at) over (partition by prd_key order by changed_at) as span_end

    from changes

),

-- the product as dim_products would have built it at the start of each span
product_spans as (

    select
{{ product_columns('products', 'categories') }},
        spans.span_start,
        spans.span_end

    from spans

    join products
        on products.prd_key = spans.prd_key
        and {{ valid_at('products', 'spans.span_start') }}

    left join categories
        on categories.id = products.cat_id
        and {{ valid_at('categories', 'spans.span_start') }}

),

{{ scd2_versions('product_spans', ['product_key', 'product_number'], product_attributes()) }},

final as (

    select * from versions

)

select * from final
