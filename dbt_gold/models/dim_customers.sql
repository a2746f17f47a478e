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

final as (

    select
        {{ surrogate_key(['customers.cst_id']) }} as customer_key,
        customers.cst_id as customer_id,
        customers.cst_key as customer_number,
        customers.cst_firstname as first_name,
        customers.cst_lastname as last_name,
        erp_locations.cntry as country,
        customers.cst_marital_status as marital_status,

        -- the CRM is the master for gender; the ERP fills in where the CRM does not know
        case
            when customers.cst_gndr != 'n/a' then customers.cst_gndr
            else coalesce(erp_customers.gen, 'n/a')
        end as gender,

        erp_customers.bdate as birthdate,
        customers.cst_create_date as create_date

    from customers

    left join erp_customers
        on customers.cst_key = erp_customers.cid

    left join erp_locations
        on customers.cst_key = erp_locations.cid

)

select * from final
