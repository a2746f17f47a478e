{#
    Every version of every customer (SCD type 2): one row per customer and period during which
    dim_customers would have held the same row. Built from the lake's history of the three
    sources a customer is made of (the CRM record and the ERP rows its customer number points
    to, see tasks/core/history.py): a customer changes when any of them changes. Times are those
    of the silver runs that saw the changes; the first version starts at the beginning of time,
    so that every order finds the customer as first seen.
#}

{{
    config(
        materialized='table',
        file_format=(none if target.type == 'duckdb' else 'delta')
    )
}}

with

customers as (

    select * from {{ source('history', 'crm_cust_info') }}

),

erp_customers as (

    select * from {{ source('history', 'erp_cust_az12') }}

),

erp_locations as (

    select * from {{ source('history', 'erp_loc_a101') }}

),

-- every instant an ERP row changed, per customer number
erp_changes as (

    select cid, valid_from as changed_at from erp_customers
    union
    select cid, valid_to from erp_customers where valid_to is not null
    union
    select cid, valid_from from erp_locations
    union
    select cid, valid_to from erp_locations where valid_to is not null

),

-- every instant something a customer is made of changed
changes as (

    select cst_id, valid_from as changed_at from customers
    union
    select cst_id, valid_to from customers where valid_to is not null
    union
    select customers.cst_id, erp_changes.changed_at
    from customers
    join erp_changes on erp_changes.cid = customers.cst_key

),

spans as (

    select
        cst_id,
        changed_at as span_start,
        lead(changed_at) over (partition by cst_id order by changed_at) as span_end

    from changes

),

-- the customer as dim_customers would have built it at the start of each span (none while
-- the CRM did not export it)
customer_spans as (

    select
{{ customer_columns('customers', 'erp_customers', 'erp_locations') }},
        spans.span_start,
        spans.span_end

    from spans

    join customers
        on customers.cst_id = spans.cst_id
        and {{ valid_at('customers', 'spans.span_start') }}

    left join erp_customers
        on erp_customers.cid = customers.cst_key
        and {{ valid_at('erp_customers', 'spans.span_start') }}

    left join erp_locations
        on erp_locations.cid = customers.cst_key
        and {{ valid_at('erp_locations', 'spans.span_start') }}

),

{{ scd2_versions('customer_spans', ['customer_key', 'customer_id'], customer_attributes()) }},

final as (

    select * from versions

)

select * from final
