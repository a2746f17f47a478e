"""benchmarks/goals.py: issue 14's goals judged from a run's measurements (no run here)."""

from __future__ import annotations

from typing import Any

from benchmarks.goals import GOALS, goals_met, issue14_goals


def full_run(**changes: Any) -> dict[str, Any]:
    """The top-level keys of a full `make bench` result, with made-up measurements."""
    scales = [1.0, 10.0, 30.0, 100.0, 300.0]
    result: dict[str, Any] = {
        "sections": ["kafka", "pipeline", "silver"],
        "pipeline_seconds": {"scale_factors": scales, "project": [8.0, 12.0, 20.0, 60.0, 170.0], "duckdb_script": [2.0, 8.0, 22.0, 80.0, 250.0]},
        "pipeline_cpu_seconds": {"scale_factors": scales, "project": [6.0, 11.0, 19.0, 58.0, 160.0], "duckdb_script": [1.5, 8.0, 21.0, 70.0, 240.0]},
        "peak_rss_mb": {"scale_factors": scales, "project": [300.0, 600.0, 900.0, 1200.0, 1400.0], "duckdb_script": [150.0, 350.0, 900.0, 2400.0, 6000.0]},
        "first_run_seconds": {"scale_factors": [1.0, 30.0], "project": [8.0, 20.0]},
        "noop_rerun_seconds": {"scale_factors": [1.0, 30.0], "project": [2.0, 2.5]},
        "silver_rows_per_s": {"project": 2_000_000.0, "pandas": 100_000.0, "duckdb": 1_000_000.0},
        "silver_detail": {"scale_factor": 30.0},
        "produce_msgs_per_s": {"project": 60_000.0, "kafka_perf_tool": 100_000.0, "record_bytes": 300},
        "ingest_msgs_per_s": {"project": 200_000.0, "kafka_perf_tool": 300_000.0},
        "unavailable": {},
    }
    result.update(changes)
    return result


def test_a_full_run_is_judged_on_every_goal_with_the_numbers_it_came_from():
    goals = issue14_goals(full_run())

    assert set(goals) == set(GOALS)
    assert all(goal["met"] is True for goal in goals.values()), {k: g for k, g in goals.items() if not g["met"]}
    assert goals["peak_rss_scale100_vs_duckdb"] == {
        "ratio": 0.5, "goal": "<= 1", "met": True, "scale_factor": 100.0, "project_mb": 1200.0, "duckdb_script_mb": 2400.0,
    }
    assert goals["peak_rss_scale300_vs_scale100"]["ratio"] == round(1400 / 1200, 3)
    assert goals["pipeline_wall_scale300_vs_duckdb"]["ratio"] == 0.68
    assert goals["pipeline_cpu_scale100_vs_duckdb"]["ratio"] == round(58 / 70, 3)
    fixed = goals["fixed_cost_scale1_vs_duckdb"]
    assert (fixed["ratio"], fixed["cpu_ratio"], fixed["goal"]) == (4.0, 4.0, "<= 5")
    noop = goals["noop_rerun_vs_first_run"]
    assert (noop["ratio"], noop["scale_factor"], noop["goal"]) == (0.125, 30.0, "<= 0.15")
    assert noop["other_scales"] == {"scale1": {"first_run_seconds": 8.0, "noop_rerun_seconds": 2.0, "ratio": 0.25}}
    assert goals["silver_vs_pandas"]["ratio"] == 20.0
    assert goals["silver_vs_duckdb"]["ratio"] == 2.0
    assert goals["ingest_vs_kafka_perf_tool"]["ratio"] == round(2 / 3, 3)
    assert goals["produce_vs_kafka_perf_tool"]["goal"] == ">= 0.5"
    assert goals_met(goals) == "12 of 12"


def test_ratios_past_their_goals_are_not_met_and_a_ratio_on_the_goal_is():
    run = full_run(
        peak_rss_mb={"scale_factors": [100.0, 300.0], "project": [2400.0, 2884.0], "duckdb_script": [2400.0, 6000.0]},
        silver_rows_per_s={"project": 900_000.0, "pandas": 100_000.0, "duckdb": 600_000.0},
    )
    goals = issue14_goals(run)

    assert goals["peak_rss_scale100_vs_duckdb"]["met"] is True  # 1.0 <= 1
    assert goals["peak_rss_scale300_vs_scale100"]["ratio"] == 1.202 and goals["peak_rss_scale300_vs_scale100"]["met"] is False
    assert goals["silver_vs_pandas"]["met"] is False  # 9 < 10
    assert goals["silver_vs_duckdb"]["met"] is True  # 1.5 >= 1.5
    assert goals_met(goals).startswith("10 of 12")


def test_a_failed_run_at_a_goal_scale_is_not_met_and_says_where_to_look():
    wall = full_run()["pipeline_seconds"]
    wall["project"][4] = None  # the project run at scale 300 failed (say, out of memory)
    peak = full_run()["peak_rss_mb"]
    peak["project"][4] = None
    goals = issue14_goals(full_run(pipeline_seconds=wall, peak_rss_mb=peak))

    for name in ("pipeline_wall_scale300_vs_duckdb", "peak_rss_scale300_vs_scale100"):
        assert goals[name]["ratio"] is None and goals[name]["met"] is False
        assert "pipeline_detail.failures" in goals[name]["reason"]
    assert goals["pipeline_wall_scale100_vs_duckdb"]["met"] is True


def test_the_quick_variant_has_every_goal_and_says_why_its_sizes_cannot_judge_some():
    scales = [1.0, 2.0]
    quick = full_run(
        pipeline_seconds={"scale_factors": scales, "project": [8.0, 9.0], "duckdb_script": [2.0, 2.5]},
        pipeline_cpu_seconds={"scale_factors": scales, "project": [6.0, 7.0], "duckdb_script": [1.5, 2.0]},
        peak_rss_mb={"scale_factors": scales, "project": [300.0, 350.0], "duckdb_script": [150.0, 170.0]},
        first_run_seconds={"scale_factors": [1.0], "project": [8.0]},
        noop_rerun_seconds={"scale_factors": [1.0], "project": [3.0]},
        silver_detail={"scale_factor": 2.0},
    )
    goals = issue14_goals(quick)

    assert set(goals) == set(GOALS)
    for name in ("peak_rss_scale100_vs_duckdb", "peak_rss_scale300_vs_scale100", "pipeline_wall_scale100_vs_duckdb",
                 "pipeline_cpu_scale300_vs_duckdb", "noop_rerun_vs_first_run", "silver_vs_pandas", "silver_vs_duckdb"):
        assert goals[name]["ratio"] is None and goals[name]["met"] is None, name
        assert goals[name]["reason"], name
    assert "no pipeline run at scale 100" in goals["peak_rss_scale100_vs_duckdb"]["reason"]
    assert goals["peak_rss_scale100_vs_duckdb"]["indicative"] == {"scale_factor": 2.0, "ratio": round(350 / 170, 3), "project_mb": 350.0, "duckdb_script_mb": 170.0}
    assert goals["noop_rerun_vs_first_run"]["other_scales"]["scale1"]["ratio"] == 0.375
    assert goals["silver_vs_pandas"]["indicative"]["ratio"] == 20.0
    assert goals["fixed_cost_scale1_vs_duckdb"]["met"] is True  # scale 1 is in the quick run
    assert goals_met(goals) == "3 of 3 (9 not measured in this run)"  # fixed cost and the two Kafka ratios


def test_sections_left_out_by_only_are_not_measured_not_failed():
    run = {"sections": ["kafka"], "produce_msgs_per_s": {"project": None, "kafka_perf_tool": 1.0},
           "ingest_msgs_per_s": {"project": 1.0, "kafka_perf_tool": 1.0},
           "unavailable": {"produce_msgs_per_s": "no broker"}}
    goals = issue14_goals(run)

    assert goals["produce_vs_kafka_perf_tool"] == {"ratio": None, "goal": ">= 0.5", "met": False, "project_msgs_per_s": None,
                                                   "kafka_perf_tool_msgs_per_s": 1.0, "reason": "no broker"}
    assert goals["ingest_vs_kafka_perf_tool"]["met"] is True
    for name in ("silver_vs_duckdb", "fixed_cost_scale1_vs_duckdb", "peak_rss_scale300_vs_scale100", "noop_rerun_vs_first_run"):
        assert goals[name]["met"] is None and "--only" in goals[name]["reason"], name


def test_the_projects_unknown_members_are_left_out_before_gold_rows_are_compared_with_the_script():
    from benchmarks.pipeline_bench import known_rows

    project = {"dim_customers": 18485, "dim_products": 296, "fact_orders": 60325, "dim_customers_unknown_members": 1, "dim_products_unknown_members": 1}
    assert known_rows(project) == {"dim_customers": 18484, "dim_products": 295, "fact_orders": 60325}
    assert known_rows(None) is None


def test_a_silver_section_that_failed_at_a_size_other_than_the_goals_is_not_judged():
    run = full_run(silver_rows_per_s={"project": None, "pandas": None, "duckdb": None}, config={"silver_scale": 2.0})
    del run["silver_detail"]
    goals = issue14_goals(run)

    assert goals["silver_vs_pandas"]["met"] is None and "scale 2" in goals["silver_vs_pandas"]["reason"]
    assert issue14_goals({**run, "config": {"silver_scale": 30.0}})["silver_vs_duckdb"]["met"] is False


def test_what_dbt_and_prefect_cost_alone_is_shown_beside_the_fixed_cost_goals():
    floors = {"measured": True, "scale_factor": 1.0, "dbt_build_seconds": 6.0, "empty_flows_seconds": 2.4}
    goals = issue14_goals(full_run(pipeline_detail={"floors": floors}))

    assert goals["fixed_cost_scale1_vs_duckdb"]["floor"] == {"dbt_build_alone_seconds": 6.0, "ratio": 3.0}  # script: 2.0 s
    assert goals["noop_rerun_vs_first_run"]["floor"] == {"empty_flows_seconds": 2.4, "ratio": 0.12}  # first run: 20.0 s
    assert goals_met(goals) == "12 of 12"  # a floor is detail, not a goal


def test_floors_that_were_not_measured_add_nothing():
    goals = issue14_goals(full_run(pipeline_detail={"floors": {"measured": False, "reason": "no run at scale 1"}}))

    assert "floor" not in goals["fixed_cost_scale1_vs_duckdb"] and "floor" not in goals["noop_rerun_vs_first_run"]
