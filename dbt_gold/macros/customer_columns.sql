{#
    A customer's columns, as dim_customers and dim_customers_history both build them from a
    CRM customer and the ERP rows its customer number points to (one definition, so a version
    in the history is exactly the row dim_customers held at that time).
#}
{% macro customer_columns(customers, erp_customers, erp_locations) -%}
        {{ surrogate_key([customers ~ '.cst_id']) }} as customer_key,
        {{ customers }}.cst_id as customer_id,
        {{ customers }}.cst_key as customer_number,
        {{ customers }}.cst_firstname as first_name,
        {{ customers }}.cst_lastname as last_name,
        {{ erp_locations }}.cntry as country,
        {{ customers }}.cst_marital_status as marital_status,

        -- the CRM is the master for gender; the ERP fills in where the CRM does not know
        case
            when {{ customers }}.cst_gndr != 'n/a' then {{ customers }}.cst_gndr
            else coalesce({{ erp_customers }}.gen, 'n/a')
        end as gender,

        {{ erp_customers }}.bdate as birthdate,
        {{ customers }}.cst_create_date as create_date
{%- endmacro %}

{% macro customer_attributes() -%}
    {{ return(['customer_number', 'first_name', 'last_name', 'country', 'marital_status', 'gender', 'birthdate', 'create_date']) }}
{%- endmacro %}
