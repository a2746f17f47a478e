-- Versions of the same customer or product that overlap in time, or a member with more than
-- one current version. Expected: none (at any instant a member has at most one version).

with

customer_versions as (

    select 'customer' as member, cast(customer_id as {{ dbt.type_string() }}) as natural_id, version_number, valid_from, valid_to
    from {{ ref('dim_customers_history') }}

),

product_versions as (

    select 'product' as member, product_number as natural_id, version_number, valid_from, valid_to
    from {{ ref('dim_products_history') }}

),

versions as (

    select * from customer_versions
    union all
    select * from product_versions

),

overlapping as (

    select
        earlier.member,
        earlier.natural_id,
        earlier.version_number,
        later.version_number as overlapping_version

    from versions as earlier

    join versions as later
        on later.member = earlier.member
        and later.natural_id = earlier.natural_id
        and later.version_number > earlier.version_number
        and (earlier.valid_to is null or later.valid_from < earlier.valid_to)

)

select * from overlapping
