-- The silver rules for sales, customers and products in DuckDB SQL: the "duckdb" column of
-- silver_rows_per_s (issue 6). Same rules as tasks/silver.py, same outcomes (the harness
-- compares row counts and sums with the project's output).
--
-- A row bronze could not read as a record (`_bronze_error` not null) breaks `malformed_row`
-- first, as in the project; the harness adds an all-null `_bronze_error` to bronze tables
-- written before bronze recorded row errors.
--
-- Inputs: the bronze tables registered as bronze_crm_sales_details, bronze_crm_cust_info,
-- bronze_crm_prd_info (Arrow tables read from the bronze Delta tables with `deltalake`;
-- DuckDB's delta extension cannot be downloaded here). `{out}` is replaced by the output
-- folder. Blocks are separated by lines of `-- @@`; the harness times each block.
--
-- Per table: one view (a definition; no work) tags each row with the first rule it breaks,
-- then one COPY statement writes the silver table and one the quarantine, both Parquet.

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

-- Each view computes every cleansed value once (typed), then the repairs, then the rule.
create or replace temp view sales_tagged as
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
    from bronze_crm_sales_details
),
repaired as (
    select
        *,
        _quantity * abs(_price_in) as _expected
    from typed
),
amounts as (
    select
        *,
        case
            when _sales_in is null or _sales_in <= 0 or coalesce(_sales_in != _expected, false) then _expected
            else _sales_in
        end as _sales,
        case when _price_in is null or _price_in <= 0 then _sales_in / _quantity else _price_in end as _price
    from repaired
)
select
    *,
    case
        when _bronze_error is not null then 'malformed_row'
        when _ord_num is null then 'missing_order_number'
        when _prd_key is null then 'missing_product_number'
        when _cust_text is null then 'missing_customer_id'
        when _cust_id is null then 'non_numeric_customer_id'
        when not coalesce(_quantity > 0, false) then 'invalid_quantity'
        when _sales is null or _price is null or _price <= 0 or _sales <= 0 then 'unrecoverable_price'
    end as _rule
from amounts;

create or replace temp view customers_tagged as
with typed as (
    select *, txt(cst_id) as _id_text, to_int(cst_id) as _id from bronze_crm_cust_info
)
select
    *,
    case
        when _bronze_error is not null then 'malformed_row'
        when _id_text is null then 'missing_customer_id'
        when _id is null then 'non_numeric_customer_id'
    end as _rule
from typed;

create or replace temp view products_tagged as
with typed as (
    select *, to_int(prd_id) as _id, txt(prd_key) as _product_key, iso_date(prd_start_dt) as _start
    from bronze_crm_prd_info
)
select
    *,
    case
        when _bronze_error is not null then 'malformed_row'
        when _id is null then 'non_numeric_product_id'
        when _product_key is null or length(_product_key) < 7 then 'malformed_product_key'
        when _start is null then 'missing_start_date'
    end as _rule
from typed;

-- @@ crm_sales_details
copy (
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
    qualify row_number() over (partition by _ord_num, _prd_key order by _line desc) = 1
) to '{out}/silver_crm_sales_details.parquet' (format parquet);

-- @@ crm_sales_details quarantine
copy (
    select _rule, * exclude (_ord_num, _prd_key, _cust_text, _cust_id, _quantity, _sales_in, _price_in, _expected, _sales, _price, _rule)
    from sales_tagged
    where _rule is not null
) to '{out}/quarantine_crm_sales_details.parquet' (format parquet);

-- @@ crm_cust_info
copy (
    select
        _id as cst_id,
        txt(cst_key) as cst_key,
        txt(cst_firstname) as cst_firstname,
        txt(cst_lastname) as cst_lastname,
        case code(cst_marital_status) when 'S' then 'Single' when 'M' then 'Married' else 'n/a' end as cst_marital_status,
        case code(cst_gndr) when 'F' then 'Female' when 'M' then 'Male' else 'n/a' end as cst_gndr,
        iso_date(cst_create_date) as cst_create_date,
        _ingested_at
    from customers_tagged
    where _rule is null
    -- the latest create date wins; a missing date sorts first, as in the project
    qualify row_number() over (partition by _id order by iso_date(cst_create_date) desc nulls last, _line desc) = 1
) to '{out}/silver_crm_cust_info.parquet' (format parquet);

-- @@ crm_cust_info quarantine
copy (
    select _rule, * exclude (_id_text, _id, _rule) from customers_tagged where _rule is not null
) to '{out}/quarantine_crm_cust_info.parquet' (format parquet);

-- @@ crm_prd_info
copy (
    with versions as (
        select * from products_tagged where _rule is null
    )
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
    from versions
    qualify row_number() over (partition by _id order by _line desc) = 1
) to '{out}/silver_crm_prd_info.parquet' (format parquet);

-- @@ crm_prd_info quarantine
copy (
    select _rule, * exclude (_id, _product_key, _start, _rule) from products_tagged where _rule is not null
) to '{out}/quarantine_crm_prd_info.parquet' (format parquet);
