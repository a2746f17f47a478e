{#
    A product's columns, as dim_products and dim_products_history both build them from the
    current version of a product number and its ERP category (one definition, so a version in
    the history is exactly the row dim_products held at that time).
#}
{% macro product_columns(products, categories) -%}
        {{ surrogate_key([products ~ '.prd_key']) }} as product_key,
        {{ products }}.prd_id as product_id,
        {{ products }}.prd_key as product_number,
        {{ products }}.prd_nm as product_name,
        {{ products }}.cat_id as category_id,
        {{ categories }}.cat as category,
        {{ categories }}.subcat as subcategory,
        {{ categories }}.maintenance,
        {{ products }}.prd_cost as cost,
        {{ products }}.prd_line as product_line,
        {{ products }}.prd_start_dt as start_date
{%- endmacro %}

{% macro product_attributes() -%}
    {{ return(['product_id', 'product_name', 'category_id', 'category', 'subcategory', 'maintenance', 'cost', 'product_line', 'start_date']) }}
{%- endmacro %}
