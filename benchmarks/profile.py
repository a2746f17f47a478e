"""Profiles behind the benchmark's numbers (text summaries in benchmarks/out/profiles/).

    python -m benchmarks.profile silver   --scale 30     # pyinstrument + polars per-node timings
    python -m benchmarks.profile pipeline --scale 100    # `logistics-pipeline run` under pyinstrument
    python -m benchmarks.profile pipeline --scale 30 --py-spy   # ... under py-spy (every thread)
    python -m benchmarks.profile noop     --scale 1      # first run, then the profiled no-op rerun
    python -m benchmarks.profile ingest   --messages 500000   # Kafka -> bronze under pyinstrument

pyinstrument samples the main thread: Prefect runs submitted tasks (the silver tables) and
dbt runs its models in worker threads, which show there as waits; py-spy sees every thread.
Profiling slows the code down, so these runs are separate from `benchmarks.run`.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import OUT_DIR, compile_project, dataset, fresh_dir, log, sales_lines

PROFILES = OUT_DIR / "profiles"


def profile_silver(scale: float) -> None:
    """The project's silver step for the three CRM tables, in process, under pyinstrument;
    then the sales table's parts timed one by one (silver_parts)."""
    from pyinstrument import Profiler

    from benchmarks.silver_bench import TABLES, build_bronze, run_project

    source_dir, rows = dataset(scale)
    work = fresh_dir(OUT_DIR / "profile-silver")
    bronze = build_bronze(source_dir, work / "bronze-lake")
    profiler = Profiler(interval=0.005)
    began = time.perf_counter()
    with profiler:
        run_project(bronze, fresh_dir(work / "project"))
    seconds = time.perf_counter() - began
    header = f"# silver step (tasks.core.runner.run_silver_table x {', '.join(TABLES)}) at scale {scale:g}: " \
             f"{sales_lines(rows)} sales lines in {seconds:.2f}s\n"
    (PROFILES / f"silver-s{scale:g}-pyinstrument.txt").write_text(header + profiler.output_text(unicode=True, color=False, show_all=False))

    (PROFILES / f"silver-s{scale:g}-polars-parts.txt").write_text(silver_parts(bronze["crm_sales_details"], scale))
    log(f"silver profiles written to {PROFILES}")


def silver_parts(bronze_uri: str, scale: float) -> str:
    """Where the sales table's silver time goes, part by part and expression by expression.

    polars 2 removed LazyFrame.profile(), so each part is collected on its own (projection
    pushdown keeps only what it needs) and timed. The last block times one parse written
    with polars' own parser next to the narwhals helper, to show what the expression costs.
    """
    import narwhals as nw
    import polars as pl

    import logistics_pipeline.tasks.core.silver as rules
    from logistics_pipeline.tasks.core.quality import RULE_COLUMN, accepted, quarantined, tag_rejects
    from logistics_pipeline.tasks.core.silver import SILVER_BY_NAME, build, with_staged_columns

    table = SILVER_BY_NAME["crm_sales_details"]
    out = [f"# crm_sales_details at scale {scale:g}: silver parts timed one by one (seconds, best of 2)\n"]

    def best(action, runs: int = 2) -> float:
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            action()
            times.append(time.perf_counter() - began)
        return min(times)

    frame = pl.read_delta(bronze_uri)
    out.append(f"{best(lambda: pl.read_delta(bronze_uri)):8.2f}  pl.read_delta ({frame.height} rows)\n")
    lazy = nw.from_native(frame.lazy())
    try:
        from logistics_pipeline.tasks.core.drift import check_types

        out.append(f"{best(lambda: check_types(table.name, lazy)):8.2f}  tasks.core.drift.check_types (a pass parsing every typed column)\n")
    except ImportError:
        pass
    tagged, _, silver = build(table, lazy)
    tagged_frame = tagged.collect().to_native()
    out.append(f"{best(lambda: tagged.collect()):8.2f}  tagged.collect() (every rule, all columns kept)\n")
    out.append(f"{best(lambda: tagged.select(RULE_COLUMN).collect()):8.2f}  tagged: the rule column alone\n")
    out.append(f"{best(lambda: quarantined(nw.from_native(tagged_frame.lazy())).collect()):8.2f}  quarantined(tagged_frame)\n")
    out.append(f"{best(lambda: silver.collect()):8.2f}  silver.collect() (rules again from bronze, cleanse, dedupe)\n")
    cleansed_only = table.cleanse(accepted(nw.from_native(tagged_frame.lazy())))
    out.append(f"{best(lambda: cleansed_only.collect()):8.2f}  cleanse from the collected tagged frame (no second rules pass, no dedupe)\n")
    cleansed_frame = cleansed_only.collect().to_native()
    out.append(f"{best(lambda: table.dedupe(nw.from_native(cleansed_frame.lazy())).collect()):8.2f}  dedupe alone (sort by _line + unique keep=last)\n")
    out.append(f"\nplan sizes (characters of explain()): tagged {len(tagged.to_native().explain()):,}, silver {len(silver.to_native().explain()):,}\n")

    out.append("\n## each silver column on its own (from the collected accepted rows)\n")
    accepted_lazy = accepted(nw.from_native(tagged_frame.lazy()))
    for column in table.cleanse(accepted_lazy).columns:
        out.append(f"{best(lambda: table.cleanse(accepted_lazy).select(column).collect(), 1):8.2f}  {column}\n")

    out.append("\n## each rule on its own (the rule's expression over bronze and the table's staged columns)\n")
    staged = with_staged_columns(table, lazy)
    for rule in table.rules:
        out.append(f"{best(lambda: staged.select(rule.rejects().fill_null(False).alias('x')).collect(), 1):8.2f}  {rule.name}\n")
    out.append(f"{best(lambda: tag_rejects(staged, table.rules).select(RULE_COLUMN).collect(), 1):8.2f}  all rules chained (tag_rejects)\n")

    out.append("\n## one date column: the narwhals helper vs polars' own parser (same nulls for these data)\n")
    helper = lambda: lazy.select(rules.to_date("sls_order_dt", "yyyymmdd").alias("d")).collect()  # noqa: E731
    native = lambda: frame.lazy().select(pl.col("sls_order_dt").str.strip_chars().str.to_date("%Y%m%d", strict=False).alias("d")).collect()  # noqa: E731
    same = helper().to_native()["d"].equals(native()["d"])
    out.append(f"{best(helper):8.2f}  tasks.core.silver.to_date (regex + y/m/d validity + strptime; text() repeated inside)\n")
    out.append(f"{best(native):8.2f}  pl.col().str.strip_chars().str.to_date(strict=False)   (same result: {same})\n")
    trimmed = lambda: lazy.select(rules.text("sls_order_dt").alias("t")).collect()  # noqa: E731
    out.append(f"{best(trimmed):8.2f}  tasks.core.silver.text (strip + length + when/then)\n")
    return "".join(out)


def _cli_env():
    """The bench's CLI environment and server, with the dbt parse its runs share made first."""
    from benchmarks.pipeline_bench import cli_environment, start_prefect_server, warm_parse_cache

    server = start_prefect_server()
    log(f"parsed the gold project for the profiled run in {warm_parse_cache(server):.1f}s")
    return cli_environment(server), server


def profile_pipeline(scale: float, py_spy: bool, noop: bool) -> None:
    from benchmarks.pipeline_bench import parse_cache_home

    compile_project()  # as the bench's runs are
    source_dir, rows = dataset(scale)
    lake = fresh_dir(OUT_DIR / f"profile-lake-s{scale:g}")
    env, server = _cli_env()
    cli = [sys.executable, "-m", "logistics_pipeline.flows.cli", "run", "--source-dir", str(source_dir), "--lake", str(lake), "--orders", "0"]
    tag = f"pipeline-s{scale:g}" + ("-noop" if noop else "")
    try:
        if noop:
            log(f"noop profile: first run at scale {scale:g}")
            subprocess.run(cli, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log_path = PROFILES / f"{tag}.log"
        if py_spy:
            raw = PROFILES / f"{tag}-pyspy.raw"
            cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--subprocesses", "--threads", "--idle", "-r", "50",
                   "-f", "raw", "-o", str(raw), "--", *cli]
        else:
            out = PROFILES / f"{tag}-pyinstrument.txt"
            cmd = [sys.executable, "-m", "pyinstrument", "-i", "0.01", "-r", "text", "--show", "*", "-o", str(out),
                   "--no-color", "-m", "logistics_pipeline.flows.cli", *cli[3:]]
        log(f"profiling {'py-spy' if py_spy else 'pyinstrument'}: {' '.join(cmd)}")
        began = time.perf_counter()
        with open(log_path, "wb") as output:
            done = subprocess.run(cmd, env=env, cwd=OUT_DIR, stdout=output, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - began
        log(f"profiled run exited {done.returncode} after {seconds:.1f}s ({sales_lines(rows)} sales lines); log {log_path}")
        if py_spy:
            summarize_raw(raw, PROFILES / f"{tag}-pyspy-summary.txt", f"{tag}: exit {done.returncode}, {seconds:.1f}s")
    finally:
        server.stop()
        shutil.rmtree(parse_cache_home(), ignore_errors=True)
        if not noop:
            shutil.rmtree(lake, ignore_errors=True)


def profile_ingest(messages: int) -> None:
    """Kafka -> bronze kafka_orders (flows.bronze.ingest_stream) under pyinstrument, in process,
    on a topic the project's producer filled (produced first, not profiled)."""
    from benchmarks import kafka_bench
    from benchmarks.pipeline_bench import start_prefect_server

    server = start_prefect_server()
    os.environ.update(PREFECT_API_URL=server.api_url, PREFECT_HOME=str(server.home))
    broker = kafka_bench.broker_from_env_or_start()
    try:
        topic = f"profile-orders-{int(time.time())}"
        kafka_bench.produce_project(broker.bootstrap, topic, messages)
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002)
        original = kafka_bench._wrapper_flow

        def profiled(name, body):
            def run_profiled():
                with profiler:
                    return body()
            return original(name, run_profiled)

        kafka_bench._wrapper_flow = profiled
        try:
            began = time.perf_counter()
            result = kafka_bench.ingest_project(broker.bootstrap, topic, messages)
        finally:
            kafka_bench._wrapper_flow = original
        header = f"# ingest of {messages} messages: {result['seconds']:.2f}s ({messages / result['seconds']:,.0f} msgs/s) + the no-op second pass; " \
                 f"{time.perf_counter() - began:.1f}s in all\n"
        (PROFILES / f"ingest-{messages}-pyinstrument.txt").write_text(header + profiler.output_text(unicode=True, color=False))
        log(f"ingest profile written to {PROFILES}")
    finally:
        broker.stop()
        server.stop()


IDLE_LEAVES = ("Condition.wait", "EpollSelector.select", "_PollLikeSelector.select", "heartbeat_loop", "Queue.get", "_worker (concurrent",
               "resource_tracker.py", "Pool._handle_tasks", "Pool._handle_results", "worker (multiprocessing", "_wait_for_tstate_lock",
               "Event.wait", "lock.acquire", "sleep")


def summarize_raw(raw: Path, out: Path, title: str, top: int = 40) -> None:
    """Collapsed stacks -> where the working (not waiting) samples are: per thread, and the
    functions with the most samples, inclusive and self. Stacks whose innermost frame is a
    wait (lock, queue, selector, heartbeat) are counted as idle and left out."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    project: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        if any(marker in frames[-1] for marker in IDLE_LEAVES):
            idle += count
            continue
        threads[frames[1] if len(frames) > 1 else frames[0]] += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        mine = [f for f in frames if "(flows/" in f or "(tasks/" in f]
        if mine:
            project[mine[-1]] += count  # the innermost project function on the stack
    active = total - idle
    pct = lambda n: f"{100 * n / max(active, 1):5.1f}%"  # noqa: E731
    lines = [f"# py-spy (50 Hz, every thread, no native frames): {title}\n",
             f"# {total} samples, {idle} idle (waiting), {active} working; percentages are of the working samples\n",
             "\n## working samples per thread\n"]
    lines += [f"{n:>8} {pct(n)}  {name[:160]}\n" for name, n in threads.most_common(12)]
    lines.append("\n## innermost project function (flows/, tasks/) on the working stacks\n")
    lines += [f"{n:>8} {pct(n)}  {name}\n" for name, n in project.most_common(top)]
    lines.append("\n## inclusive (the function or anything it called)\n")
    lines += [f"{n:>8} {pct(n)}  {name[:160]}\n" for name, n in inclusive.most_common(top)]
    lines.append("\n## self (the innermost frame)\n")
    lines += [f"{n:>8} {pct(n)}  {name[:160]}\n" for name, n in own.most_common(top)]
    out.write_text("".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["silver", "pipeline", "noop", "ingest"])
    parser.add_argument("--messages", type=int, default=500_000, help="ingest: messages on the topic")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--py-spy", action="store_true", help="pipeline: sample every thread with py-spy instead of pyinstrument")
    args = parser.parse_args(argv)
    PROFILES.mkdir(parents=True, exist_ok=True)
    if args.what == "silver":
        profile_silver(args.scale)
    elif args.what == "ingest":
        profile_ingest(args.messages)
    else:
        profile_pipeline(args.scale, args.py_spy, noop=args.what == "noop")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    sys.exit(main())
