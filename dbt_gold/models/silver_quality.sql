{#
    What every silver run counted, per table and rule (the lake's quality table, appended by
    each run: tasks/core/quality_log.py), with the shares of rows in. run_number orders the runs
    (1 = the first); the latest runs are the highest numbers.
#}

{{
    config(
        materialized='table',
        file_format=(none if target.type == 'duckdb' else 'delta')
    )
}}

with

results as (

    select * from {{ source('quality', 'silver') }}

),

final as (

    select
        cast(dense_rank() over (order by run_at, run_id) as {{ dbt.type_bigint() }}) as run_number,
        run_id,
        run_at,
        engine,
        table_name,
        rule,
        rows_in,
        rows_out,
        quarantined,
        merged_duplicates,
        rule_quarantined,
        cast(rule_quarantined as double) / nullif(rows_in, 0) as rule_share,
        cast(quarantined as double) / nullif(rows_in, 0) as quarantined_share

    from results

)

select * from final
