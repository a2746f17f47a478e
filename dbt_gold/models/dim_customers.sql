with

customers as (

    select * from {{ source('silver', 'crm_cust_info') }}

),

erp_customers as (

    select * from {{ source('silver', 'erp_cust_az12') }}

),

erp_locations as (

    select * from {{ source('silver', 'erp_loc_a101') }}

),

known_customers as (

    select
{{ customer_columns('customers', 'erp_customers', 'erp_locations') }}

    from customers

    left join erp_customers
        on customers.cst_key = erp_customers.cid

    left join erp_locations
        on customers.cst_key = erp_locations.cid

),

-- order lines whose customer the CRM does not (or no longer) export point here
unknown_customer as (

    select
        {{ unknown_member_key() }} as customer_key,
        cast(null as {{ dbt.type_bigint() }}) as customer_id,
        cast(null as {{ dbt.type_string() }}) as customer_number,
        cast(null as {{ dbt.type_string() }}) as first_name,
        cast(null as {{ dbt.type_string() }}) as last_name,
        'n/a' as country,
        'n/a' as marital_status,
        'n/a' as gender,
        cast(null as date) as birthdate,
        cast(null as date) as create_date

),

final as (

    select * from known_customers
    union all
    select * from unknown_customer

)

select * from final
