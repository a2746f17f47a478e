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

final as (

    select
        {{ surrogate_key(['current_products.prd_key']) }} as product_key,
        current_products.prd_id as product_id,
        current_products.prd_key as product_number,
        current_products.prd_nm as product_name,
        current_products.cat_id as category_id,
        categories.cat as category,
        categories.subcat as subcategory,
        categories.maintenance,
        current_products.prd_cost as cost,
        current_products.prd_line as product_line,
        current_products.prd_start_dt as start_date

    from current_products

    left join categories
        on current_products.cat_id = categories.id

)

select * from final
