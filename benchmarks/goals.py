"""The goals of issue 14, recomputed from one run's measurements.

A pure function of the result that benchmarks/run.py builds, so the judgement can be tested
without running anything. Every goal entry holds `ratio`, `goal` (the text), `met` and the
numbers the ratio came from. `met` is null when this run did not measure what the goal needs
(the quick variant, `--scales`, `--only`), with the `reason`; a size the run has but whose
measurement failed gives `met: false`. Where a goal's size is missing but a smaller one ran,
`indicative` gives the same ratio at the largest size that ran, as a hint only.
"""

from __future__ import annotations

from typing import Any

MEMORY_SCALE, BIG_SCALE, FIXED_COST_SCALE, NOOP_SCALE, SILVER_SCALE = 100.0, 300.0, 1.0, 30.0, 30.0

# name: (comparison, target)
GOALS: dict[str, tuple[str, float]] = {
    "peak_rss_scale100_vs_duckdb": ("<=", 1.0),
    "peak_rss_scale300_vs_scale100": ("<=", 1.2),
    "pipeline_wall_scale100_vs_duckdb": ("<=", 1.0),
    "pipeline_cpu_scale100_vs_duckdb": ("<=", 1.0),
    "pipeline_wall_scale300_vs_duckdb": ("<=", 1.0),
    "pipeline_cpu_scale300_vs_duckdb": ("<=", 1.0),
    "fixed_cost_scale1_vs_duckdb": ("<=", 5.0),
    "noop_rerun_vs_first_run": ("<=", 0.15),
    "ingest_vs_kafka_perf_tool": (">=", 0.5),
    "produce_vs_kafka_perf_tool": (">=", 0.5),
    "silver_vs_pandas": (">=", 10.0),
    "silver_vs_duckdb": (">=", 1.5),
}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def judged(name: str, value: float | None, reason: str | None = None, **numbers: Any) -> dict[str, Any]:
    """One goal entry. A null value with a reason is a measurement that failed: not met."""
    op, target = GOALS[name]
    met = value is not None and (value >= target if op == ">=" else value <= target)
    entry: dict[str, Any] = {"ratio": value, "goal": f"{op} {target:g}", "met": met, **numbers}
    if value is None:
        entry["reason"] = reason or "a measurement is missing"
    return entry


def not_measured(name: str, reason: str, **extra: Any) -> dict[str, Any]:
    """This run did not measure what the goal needs: no judgement either way."""
    op, target = GOALS[name]
    return {"ratio": None, "goal": f"{op} {target:g}", "met": None, "reason": reason, **extra}


def at_scale(series: dict[str, Any] | None, scale: float, side: str) -> tuple[bool, float | None]:
    """(whether the run has this scale, the value of `side` there) in a {scale_factors, side: [...]} series."""
    if not series or not series.get(side):
        return False, None
    scales = [float(s) for s in series.get("scale_factors") or []]
    if scale not in scales:
        return False, None
    return True, series[side][scales.index(scale)]


def largest_scale_below(series: dict[str, Any] | None, scale: float) -> float | None:
    below = [float(s) for s in (series or {}).get("scale_factors") or [] if float(s) < scale]
    return max(below) if below else None


def versus_duckdb(name: str, series: dict[str, Any] | None, scale: float, unit: str, section_note: str) -> dict[str, Any]:
    """project ÷ DuckDB script at one scale of a per-scale series (seconds, CPU-seconds or MB)."""
    present, project = at_scale(series, scale, "project")
    _, duckdb = at_scale(series, scale, "duckdb_script")
    if not present:
        extra: dict[str, Any] = {}
        hint = largest_scale_below(series, scale)
        if hint is not None:
            _, p = at_scale(series, hint, "project")
            _, d = at_scale(series, hint, "duckdb_script")
            extra["indicative"] = {"scale_factor": hint, "ratio": ratio(p, d), f"project_{unit}": p, f"duckdb_script_{unit}": d}
        scales = (series or {}).get("scale_factors")
        return not_measured(name, f"this run has no pipeline run at scale {scale:g} (scales: {scales}){section_note}", **extra)
    return judged(name, ratio(project, duckdb), f"a run at scale {scale:g} failed; see pipeline_detail.failures",
                  scale_factor=scale, **{f"project_{unit}": project, f"duckdb_script_{unit}": duckdb})


def issue14_goals(result: dict[str, Any]) -> dict[str, Any]:
    """Every goal of issue 14 from the run's top-level keys (see benchmarks/README.md)."""
    sections = set(result.get("sections") or ["silver", "kafka", "pipeline"])
    note = "" if "pipeline" in sections else "; the pipeline section was not run (--only)"
    peak = result.get("peak_rss_mb")
    wall = result.get("pipeline_seconds")
    cpu = result.get("pipeline_cpu_seconds")
    goals: dict[str, Any] = {}

    # 1. memory
    goals["peak_rss_scale100_vs_duckdb"] = versus_duckdb("peak_rss_scale100_vs_duckdb", peak, MEMORY_SCALE, "mb", note)
    has_100, at_100 = at_scale(peak, MEMORY_SCALE, "project")
    has_300, at_300 = at_scale(peak, BIG_SCALE, "project")
    if has_100 and has_300:
        goals["peak_rss_scale300_vs_scale100"] = judged(
            "peak_rss_scale300_vs_scale100", ratio(at_300, at_100), "a project run at scale 100 or 300 failed; see pipeline_detail.failures",
            project_mb_scale300=at_300, project_mb_scale100=at_100,
        )
    else:
        goals["peak_rss_scale300_vs_scale100"] = not_measured(
            "peak_rss_scale300_vs_scale100", f"needs pipeline runs at scales 100 and 300 (scales: {(peak or {}).get('scale_factors')}){note}"
        )

    # 2. speed at scale
    for scale in (MEMORY_SCALE, BIG_SCALE):
        tag = f"scale{scale:g}"
        goals[f"pipeline_wall_{tag}_vs_duckdb"] = versus_duckdb(f"pipeline_wall_{tag}_vs_duckdb", wall, scale, "seconds", note)
        goals[f"pipeline_cpu_{tag}_vs_duckdb"] = versus_duckdb(f"pipeline_cpu_{tag}_vs_duckdb", cpu, scale, "cpu_seconds", note)

    # 3. fixed cost
    fixed = versus_duckdb("fixed_cost_scale1_vs_duckdb", wall, FIXED_COST_SCALE, "seconds", note)
    if fixed["ratio"] is not None:
        _, p = at_scale(cpu, FIXED_COST_SCALE, "project")
        _, d = at_scale(cpu, FIXED_COST_SCALE, "duckdb_script")
        fixed.update(cpu_ratio=ratio(p, d), project_cpu_seconds=p, duckdb_script_cpu_seconds=d)
    noop = noop_goal(result.get("first_run_seconds"), result.get("noop_rerun_seconds"), note)
    floors = (result.get("pipeline_detail") or {}).get("floors") or {}
    if floors.get("measured"):  # what dbt and Prefect cost alone, in each goal's own ratio
        _, script_s = at_scale(wall, FIXED_COST_SCALE, "duckdb_script")
        fixed["floor"] = {"dbt_build_alone_seconds": floors["dbt_build_seconds"], "ratio": ratio(floors["dbt_build_seconds"], script_s)}
        noop["floor"] = {"empty_flows_seconds": floors["empty_flows_seconds"], "ratio": ratio(floors["empty_flows_seconds"], noop.get("first_run_seconds"))}
    goals["fixed_cost_scale1_vs_duckdb"] = fixed
    goals["noop_rerun_vs_first_run"] = noop

    # 4. Kafka
    for name, key in (("ingest_vs_kafka_perf_tool", "ingest_msgs_per_s"), ("produce_vs_kafka_perf_tool", "produce_msgs_per_s")):
        rates = result.get(key) or {}
        if "kafka" not in sections:
            goals[name] = not_measured(name, "the kafka section was not run (--only)")
        else:
            why = (result.get("unavailable") or {}).get(key) or "a Kafka measurement failed; see unavailable and errors"
            goals[name] = judged(name, ratio(rates.get("project"), rates.get("kafka_perf_tool")), why,
                                 project_msgs_per_s=rates.get("project"), kafka_perf_tool_msgs_per_s=rates.get("kafka_perf_tool"))

    # 5. silver
    silver = result.get("silver_rows_per_s") or {}
    silver_scale = (result.get("silver_detail") or {}).get("scale_factor", (result.get("config") or {}).get("silver_scale"))
    for name, other in (("silver_vs_pandas", "pandas"), ("silver_vs_duckdb", "duckdb")):
        value = ratio(silver.get("project"), silver.get(other))
        numbers = {"project_rows_per_s": silver.get("project"), f"{other}_rows_per_s": silver.get(other)}
        if "silver" not in sections:
            goals[name] = not_measured(name, "the silver section was not run (--only)")
        elif silver_scale is not None and float(silver_scale) != SILVER_SCALE:
            goals[name] = not_measured(name, f"silver ran at scale {silver_scale:g}, the goal is at scale {SILVER_SCALE:g}",
                                       indicative={"scale_factor": silver_scale, "ratio": value, **numbers})
        else:
            goals[name] = judged(name, value, "the silver section failed; see errors", scale_factor=SILVER_SCALE, **numbers)
    return goals


def noop_goal(first: dict[str, Any] | None, noop: dict[str, Any] | None, note: str) -> dict[str, Any]:
    """A rerun with no new input ÷ the first run, at scale 30; the other scales rerun as detail."""
    name = "noop_rerun_vs_first_run"
    has, first_s = at_scale(first, NOOP_SCALE, "project")
    _, noop_s = at_scale(noop, NOOP_SCALE, "project")
    scales = [float(s) for s in (first or {}).get("scale_factors") or []]
    others = {
        f"scale{s:g}": {"first_run_seconds": at_scale(first, s, "project")[1], "noop_rerun_seconds": at_scale(noop, s, "project")[1],
                        "ratio": ratio(at_scale(noop, s, "project")[1], at_scale(first, s, "project")[1])}
        for s in scales if s != NOOP_SCALE
    }
    extra = {"other_scales": others} if others else {}
    if not has:
        return not_measured(name, f"this run has no no-op rerun at scale {NOOP_SCALE:g} (rerun scales: {scales}){note}", **extra)
    return judged(name, ratio(noop_s, first_s), f"the first run or the rerun at scale {NOOP_SCALE:g} failed; see pipeline_detail.failures",
                  scale_factor=NOOP_SCALE, first_run_seconds=first_s, noop_rerun_seconds=noop_s, **extra)


def goals_met(goals: dict[str, Any]) -> str:
    """'N of M' over the goals this run could judge; how many it could not."""
    judged_ = [g for g in goals.values() if g.get("met") is not None]
    text = f"{sum(1 for g in judged_ if g['met'])} of {len(judged_)}"
    missing = len(goals) - len(judged_)
    return text + (f" ({missing} not measured in this run)" if missing else "")
