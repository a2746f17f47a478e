with

products as (

    select * from {{ source('silver', 'crm_prd_info') }}

),

categories as (

    select * from {{ source('silver', 'erp_px_cat_g1v2') }}

),

current_products as (

    select * from products
    where prd_end_dt is null

),

known_products as (

    select
{{ product_columns('current_products', 'categories') }}

    from current_products

    left join categories
        on current_products.cat_id = categories.id

),

-- order lines whose product is not (or no longer) a current product point here
unknown_product as (

    select
        {{ unknown_member_key() }} as product_key,
        cast(null as {{ dbt.type_bigint() }}) as product_id,
        cast(null as {{ dbt.type_string() }}) as product_number,
        cast(null as {{ dbt.type_string() }}) as product_name,
        'n/a' as category_id,
        cast(null as {{ dbt.type_string() }}) as category,
        cast(null as {{ dbt.type_string() }}) as subcategory,
        cast(null as {{ dbt.type_string() }}) as maintenance,
        cast(null as double) as cost,
        'n/a' as product_line,
        cast(null as date) as start_date

),

final as (

    select * from known_products
    union all
    select * from unknown_product

)

select * from final
