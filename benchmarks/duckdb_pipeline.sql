-- The whole local pipeline as one DuckDB SQL script: the "duckdb_script" of pipeline_seconds
-- (issue 6). Same layers as `logistics-pipeline run` on the same CSVs:
--   bronze      every CSV column as text, plus _line, _ingested_at, _source, _batch_id
--   silver      the rules of tasks/silver.py for all six tables, rejects to quarantine
--   gold        dim_customers, dim_products, fact_orders with the joins, keys and dedup of
--               dbt_gold/models (the stream part of fact_orders reads an empty stream table,
--               as the project's does when there is no stream)
--   tests       the gold data tests of dbt_gold (schema.yml and tests/); the harness checks
--               that every one returns 0 failing rows
-- Everything is stored as tables in one DuckDB database file. `{source_dir}` is replaced by
-- the folder holding source_crm/ and source_erp/. Not done here, unlike the project: the
-- sha256 content hash of each file (the project's batch id and cache key), Delta commits,
-- Prefect bookkeeping, dbt's parsing and per-node transactions.

set enable_progress_bar = false;
create schema if not exists bronze;
create schema if not exists silver;
create schema if not exists quarantine;

create or replace macro txt(x) as nullif(trim(x, e' \t\r\n'), '');
create or replace macro to_int(x) as
    case when regexp_full_match(txt(x), '[+-]?[0-9]+') and length(txt(x)) <= 18 then cast(txt(x) as bigint) end;
create or replace macro to_float(x) as
    case when regexp_full_match(txt(x), '[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)') and length(txt(x)) <= 30 then cast(txt(x) as double) end;
create or replace macro yyyymmdd(x) as
    case when regexp_full_match(txt(x), '[0-9]{8}') then cast(try_strptime(txt(x), '%Y%m%d') as date) end;
create or replace macro iso_date(x) as
    case when regexp_full_match(txt(x), '[0-9]{4}-[0-9]{2}-[0-9]{2}') then cast(try_strptime(txt(x), '%Y-%m-%d') as date) end;
create or replace macro code(x) as upper(trim(x, e' \t\r\n'));
create or replace macro surrogate_key(x) as md5(coalesce(cast(x as varchar), '_dbt_utils_surrogate_key_null_'));

-- ============================================================================ bronze

create or replace macro bronze_csv(path, source) as table
    select *, cast(row_number() over () + 1 as bigint) as _line, current_timestamp as _ingested_at, source as _source, 'duckdb' as _batch_id
    from read_csv(path, all_varchar = true, header = true);

create or replace table bronze.crm_cust_info as from bronze_csv('{source_dir}/source_crm/cust_info.csv', 'source_crm/cust_info.csv');
create or replace table bronze.crm_prd_info as from bronze_csv('{source_dir}/source_crm/prd_info.csv', 'source_crm/prd_info.csv');
create or replace table bronze.crm_sales_details as from bronze_csv('{source_dir}/source_crm/sales_details.csv', 'source_crm/sales_details.csv');
create or replace table bronze.erp_cust_az12 as from bronze_csv('{source_dir}/source_erp/CUST_AZ12.csv', 'source_erp/CUST_AZ12.csv');
create or replace table bronze.erp_loc_a101 as from bronze_csv('{source_dir}/source_erp/LOC_A101.csv', 'source_erp/LOC_A101.csv');
create or replace table bronze.erp_px_cat_g1v2 as from bronze_csv('{source_dir}/source_erp/PX_CAT_G1V2.csv', 'source_erp/PX_CAT_G1V2.csv');

-- ============================================================================ silver

-- crm_sales_details
create or replace temp table sales_tagged as
with typed as (
    select
        *,
        txt(sls_ord_num) as _ord_num,
        txt(sls_prd_key) as _prd_key,
        txt(sls_cust_id) as _cust_text,
        to_int(sls_cust_id) as _cust_id,
        to_int(sls_quantity) as _quantity,
        to_float(sls_sales) as _sales_in,
        to_float(sls_price) as _price_in
    from bronze.crm_sales_details
),
amounts as (
    select
        *,
        case
            when _sales_in is null or _sales_in <= 0 or coalesce(_sales_in != _quantity * abs(_price_in), false)
                then _quantity * abs(_price_in)
            else _sales_in
        end as _sales,
        case when _price_in is null or _price_in <= 0 then _sales_in / _quantity else _price_in end as _price
    from typed
)
select
    *,
    case
        when _ord_num is null then 'missing_order_number'
        when _prd_key is null then 'missing_product_number'
        when _cust_text is null then 'missing_customer_id'
        when _cust_id is null then 'non_numeric_customer_id'
        when not coalesce(_quantity > 0, false) then 'invalid_quantity'
        when _sales is null or _price is null or _price <= 0 or _sales <= 0 then 'unrecoverable_price'
    end as _rule
from amounts;

create or replace table quarantine.crm_sales_details as
select _rule, * exclude (_ord_num, _prd_key, _cust_text, _cust_id, _quantity, _sales_in, _price_in, _sales, _price, _rule)
from sales_tagged where _rule is not null;

create or replace table silver.crm_sales_details as
select
    _ord_num as sls_ord_num,
    _prd_key as sls_prd_key,
    _cust_id as sls_cust_id,
    yyyymmdd(sls_order_dt) as sls_order_dt,
    yyyymmdd(sls_ship_dt) as sls_ship_dt,
    yyyymmdd(sls_due_dt) as sls_due_dt,
    _sales as sls_sales,
    _quantity as sls_quantity,
    _price as sls_price,
    _ingested_at
from sales_tagged
where _rule is null
qualify row_number() over (partition by _ord_num, _prd_key order by _line desc) = 1;

drop table sales_tagged;

-- crm_cust_info
create or replace temp table customers_tagged as
select
    *,
    case
        when txt(cst_id) is null then 'missing_customer_id'
        when to_int(cst_id) is null then 'non_numeric_customer_id'
    end as _rule
from bronze.crm_cust_info;

create or replace table quarantine.crm_cust_info as
select _rule, * exclude (_rule) from customers_tagged where _rule is not null;

create or replace table silver.crm_cust_info as
select
    to_int(cst_id) as cst_id,
    txt(cst_key) as cst_key,
    txt(cst_firstname) as cst_firstname,
    txt(cst_lastname) as cst_lastname,
    case code(cst_marital_status) when 'S' then 'Single' when 'M' then 'Married' else 'n/a' end as cst_marital_status,
    case code(cst_gndr) when 'F' then 'Female' when 'M' then 'Male' else 'n/a' end as cst_gndr,
    iso_date(cst_create_date) as cst_create_date,
    _ingested_at
from customers_tagged
where _rule is null
qualify row_number() over (partition by to_int(cst_id) order by iso_date(cst_create_date) desc nulls last, _line desc) = 1;

drop table customers_tagged;

-- crm_prd_info
create or replace temp table products_tagged as
with typed as (
    select *, to_int(prd_id) as _id, txt(prd_key) as _product_key, iso_date(prd_start_dt) as _start
    from bronze.crm_prd_info
)
select
    *,
    case
        when _id is null then 'non_numeric_product_id'
        when _product_key is null or length(_product_key) < 7 then 'malformed_product_key'
        when _start is null then 'missing_start_date'
    end as _rule
from typed;

create or replace table quarantine.crm_prd_info as
select _rule, * exclude (_id, _product_key, _start, _rule) from products_tagged where _rule is not null;

create or replace table silver.crm_prd_info as
select
    _id as prd_id,
    replace(substr(_product_key, 1, 5), '-', '_') as cat_id,
    substr(_product_key, 7) as prd_key,
    txt(prd_nm) as prd_nm,
    coalesce(to_float(prd_cost), 0.0) as prd_cost,
    case code(prd_line) when 'M' then 'Mountain' when 'R' then 'Road' when 'S' then 'Other Sales' when 'T' then 'Touring' else 'n/a' end as prd_line,
    _start as prd_start_dt,
    cast(lead(_start) over (partition by _product_key order by _start, _line) - interval 1 day as date) as prd_end_dt,
    _ingested_at
from products_tagged
where _rule is null
qualify row_number() over (partition by _id order by _line desc) = 1;

drop table products_tagged;

-- erp_cust_az12
create or replace table quarantine.erp_cust_az12 as
select 'missing_customer_id' as _rule, * from bronze.erp_cust_az12 where txt(CID) is null;

create or replace table silver.erp_cust_az12 as
select
    case when starts_with(txt(CID), 'NAS') then substr(txt(CID), 4) else txt(CID) end as cid,
    case when iso_date(BDATE) > current_date then null else iso_date(BDATE) end as bdate,
    case code(GEN) when 'F' then 'Female' when 'FEMALE' then 'Female' when 'M' then 'Male' when 'MALE' then 'Male' else 'n/a' end as gen,
    _ingested_at
from bronze.erp_cust_az12
where txt(CID) is not null
qualify row_number() over (
    partition by case when starts_with(txt(CID), 'NAS') then substr(txt(CID), 4) else txt(CID) end order by _line desc
) = 1;

-- erp_loc_a101
create or replace table quarantine.erp_loc_a101 as
select 'missing_customer_id' as _rule, * from bronze.erp_loc_a101 where txt(CID) is null;

create or replace table silver.erp_loc_a101 as
select
    replace(txt(CID), '-', '') as cid,
    case
        when txt(CNTRY) is null then 'n/a'
        when txt(CNTRY) = 'DE' then 'Germany'
        when txt(CNTRY) in ('US', 'USA') then 'United States'
        else txt(CNTRY)
    end as cntry,
    _ingested_at
from bronze.erp_loc_a101
where txt(CID) is not null
qualify row_number() over (partition by replace(txt(CID), '-', '') order by _line desc) = 1;

-- erp_px_cat_g1v2
create or replace table quarantine.erp_px_cat_g1v2 as
select 'missing_category_id' as _rule, * from bronze.erp_px_cat_g1v2 where txt(ID) is null;

create or replace table silver.erp_px_cat_g1v2 as
select txt(ID) as id, txt(CAT) as cat, txt(SUBCAT) as subcat, txt(MAINTENANCE) as maintenance, _ingested_at
from bronze.erp_px_cat_g1v2
where txt(ID) is not null
qualify row_number() over (partition by txt(ID) order by _line desc) = 1;

-- the order stream's silver table: empty without a stream, as in the project
create or replace table silver.stream_orders (
    sls_ord_num varchar, sls_prd_key varchar, sls_cust_id bigint, sls_order_dt date, sls_ship_dt date,
    sls_due_dt date, sls_sales double, sls_quantity bigint, sls_price double, event_id varchar,
    event_time timestamptz, _ingested_at timestamptz
);

-- ============================================================================ gold

create or replace table main.dim_customers as
select
    surrogate_key(customers.cst_id) as customer_key,
    customers.cst_id as customer_id,
    customers.cst_key as customer_number,
    customers.cst_firstname as first_name,
    customers.cst_lastname as last_name,
    erp_locations.cntry as country,
    customers.cst_marital_status as marital_status,
    case
        when customers.cst_gndr != 'n/a' then customers.cst_gndr
        else coalesce(erp_customers.gen, 'n/a')
    end as gender,
    erp_customers.bdate as birthdate,
    customers.cst_create_date as create_date
from silver.crm_cust_info as customers
left join silver.erp_cust_az12 as erp_customers on customers.cst_key = erp_customers.cid
left join silver.erp_loc_a101 as erp_locations on customers.cst_key = erp_locations.cid;

create or replace table main.dim_products as
select
    surrogate_key(current_products.prd_key) as product_key,
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
from (select * from silver.crm_prd_info where prd_end_dt is null) as current_products
left join silver.erp_px_cat_g1v2 as categories on current_products.cat_id = categories.id;

create or replace table main.fact_orders as
with order_lines as (
    select
        sls_ord_num as order_number, surrogate_key(sls_prd_key) as product_key, surrogate_key(sls_cust_id) as customer_key,
        sls_order_dt as order_date, sls_ship_dt as shipping_date, sls_due_dt as due_date, sls_sales as sales_amount,
        sls_quantity as quantity, sls_price as price, 'crm' as source, _ingested_at, 1 as source_priority,
        cast(null as varchar) as event_id
    from silver.crm_sales_details
    union all
    select
        sls_ord_num, surrogate_key(sls_prd_key), surrogate_key(sls_cust_id), sls_order_dt, sls_ship_dt, sls_due_dt,
        sls_sales, sls_quantity, sls_price, 'stream', _ingested_at, 2, event_id
    from silver.stream_orders
)
select
    order_number, product_key, customer_key, order_date, shipping_date, due_date, sales_amount, quantity, price,
    source, _ingested_at
from order_lines
qualify row_number() over (
    partition by order_number, product_key order by source_priority, _ingested_at desc, event_id desc
) = 1;

-- ============================================================================ tests
-- One row per data test of dbt_gold with its number of failing rows (all must be 0).

create or replace table main.test_results as
select 'unique dim_customers.customer_key' as test, count(*) - count(distinct customer_key) as failures from main.dim_customers
union all select 'not_null dim_customers.customer_key', count(*) filter (customer_key is null) from main.dim_customers
union all select 'unique dim_customers.customer_id', count(*) - count(distinct customer_id) from main.dim_customers
union all select 'not_null dim_customers.customer_id', count(*) filter (customer_id is null) from main.dim_customers
union all select 'not_null dim_customers.customer_number', count(*) filter (customer_number is null) from main.dim_customers
union all select 'accepted_values dim_customers.marital_status', count(*) filter (marital_status is null or marital_status not in ('Single', 'Married', 'n/a')) from main.dim_customers
union all select 'accepted_values dim_customers.gender', count(*) filter (gender is null or gender not in ('Female', 'Male', 'n/a')) from main.dim_customers
union all select 'unique dim_products.product_key', count(*) - count(distinct product_key) from main.dim_products
union all select 'unique dim_products.product_id', count(*) - count(distinct product_id) from main.dim_products
union all select 'unique dim_products.product_number', count(*) - count(distinct product_number) from main.dim_products
union all select 'not_null dim_products.*', count(*) filter (product_key is null or product_id is null or product_number is null or category_id is null or cost is null or product_line is null or start_date is null) from main.dim_products
union all select 'accepted_values dim_products.product_line', count(*) filter (product_line not in ('Mountain', 'Road', 'Other Sales', 'Touring', 'n/a')) from main.dim_products
union all select 'unique_combination fact_orders(order_number, product_key)', count(*) from (select 1 from main.fact_orders group by order_number, product_key having count(*) > 1)
union all select 'not_null fact_orders.*', count(*) filter (order_number is null or product_key is null or customer_key is null or shipping_date is null or due_date is null or sales_amount is null or quantity is null or price is null or source is null or _ingested_at is null) from main.fact_orders
union all select 'relationships fact_orders.product_key', count(*) from main.fact_orders f where f.product_key is not null and not exists (select 1 from main.dim_products p where p.product_key = f.product_key)
union all select 'relationships fact_orders.customer_key', count(*) from main.fact_orders f where f.customer_key is not null and not exists (select 1 from main.dim_customers c where c.customer_key = f.customer_key)
union all select 'accepted_values fact_orders.source', count(*) filter (source not in ('crm', 'stream')) from main.fact_orders
union all select 'assert_price_not_less_zero', count(*) filter (price < 0) from main.fact_orders
union all select 'assert_price_quantity_eq_sales', count(*) filter (abs(sales_amount - quantity * price) > 0.01) from main.fact_orders
union all select 'assert_ship_date_not_less_order_date', count(*) filter (shipping_date < order_date) from main.fact_orders;
