"""What an operator looks at after a run, on a real lake that the real pipeline built (CSV
exports with their dirt, plus produced orders, some of them bad): the progress each layer
reported, the quarantine (the `quarantine` command and the tables in gold.duckdb), and the dbt
docs site, loaded in a real headless Chromium.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import subprocess
import time
from pathlib import Path

import duckdb
import httpx
import polars as pl
import pytest
from dbt.adapters.duckdb.utils import SourceConfig

from logistics_pipeline.tasks.core.contract import STREAM_ORDERS
from logistics_pipeline.tasks.core.quality import RULE_COLUMN
from logistics_pipeline.tasks.gold.quarantine_source import Plugin
from logistics_pipeline.tasks.local.lake import Lake, open_table
from logistics_pipeline.tasks.local.quarantine import QUARANTINE_TABLES, empty_quarantine
from tests import browser
from tests.cli_runner import CLI, ROOT, run_cli
from tests.local_layers import build_local_layers

PROGRESS_KEYS = ("bronze-files-progress", "bronze-stream-progress", "silver-progress", "gold-progress")


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, generated_sources, prefect_server) -> tuple[Path, object]:
    """The whole pipeline, as a flow: 300 produced orders (a third bad) and the CSV exports."""
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    lake = tmp_path_factory.mktemp("operator") / "lake"
    state = logistics_pipeline(source_dir=str(generated_sources), lake=str(lake), orders=300, bad_fraction=0.3, seed=11, return_state=True)
    assert state.is_completed(), state
    return lake, state.state_details.flow_run_id


@pytest.fixture(scope="module")
def lake(pipeline_run) -> Path:
    return pipeline_run[0]


def quarantine_frame(lake: Path, table: str) -> pl.DataFrame:
    delta = open_table(Lake(str(lake)).uri("quarantine", table))
    assert delta is not None, f"silver wrote no quarantine {table}"
    return pl.from_arrow(delta.to_pyarrow_table())


def test_each_layer_reports_progress_as_an_artifact(pipeline_run):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterParentFlowRunId

    _, parent = pipeline_run
    with get_client(sync_client=True) as client:  # this run's sub-flows only: the session's server holds many runs
        layers = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for run in layers])))
    progress = {artifact.key: artifact for artifact in artifacts if artifact.type == "progress"}
    assert set(PROGRESS_KEYS) <= set(progress), sorted(progress)
    for key in PROGRESS_KEYS:
        assert progress[key].data == 100.0, (key, progress[key].data)  # every layer finished its work
    assert progress["produce-messages"].data == 100.0


def test_progress_artifact_calls_are_one_for_quick_work_and_one_a_step_for_slow_work(prefect_server, monkeypatch):
    """Quick work (a layer with nothing new) creates its artifact once, at the end; slower work
    shows on the way, at most once per ARTIFACT_EVERY_S, and ends at 100%. The artifact is the
    flow run's even when the work reports from another thread (gold's, from dbt's)."""
    import threading

    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.runtime import flow_run

    from logistics_pipeline.tasks.orchestration import progress as module

    calls: list[tuple[str, float]] = []
    for name in ("create_artifact_for_run", "update_progress_artifact"):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _real=real, _name=name, **kwargs: (calls.append((_name, round(args[-1], 1))), _real(*args, **kwargs))[1])

    @flow
    def steps(seconds_each: float) -> str:
        with module.Progress("test-progress", "test", "steps", total=3) as progress:
            def work() -> None:
                for _ in range(3):
                    time.sleep(seconds_each)
                    progress.advance()

            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
        return flow_run.id

    steps(0)
    assert calls == [("create_artifact_for_run", 100.0)]
    calls.clear()
    monkeypatch.setattr(module, "ARTIFACT_EVERY_S", 0.05)
    run_id = steps(0.1)
    assert calls == [("create_artifact_for_run", 33.3), ("update_progress_artifact", 66.7), ("update_progress_artifact", 100.0)]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    assert [(a.key, a.data) for a in artifacts] == [("test-progress", 100.0)]


def test_the_quarantine_tables_are_in_gold_duckdb(lake):
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as gold:
        by_rule = dict(gold.execute("select table_name || '/' || rule, count(*) from main.quarantined_rows group by all").fetchall())
        for table in QUARANTINE_TABLES:
            delta = quarantine_frame(lake, table)
            copied = gold.sql(f"select * from quarantine.{table}").pl()
            assert copied.columns == delta.columns
            assert copied.height == delta.height
            for rule, count in delta.group_by(RULE_COLUMN).len().iter_rows():
                assert by_rule.pop(f"{table}/{rule}") == count
        assert not by_rule, f"rows in quarantined_rows that no quarantine table holds: {by_rule}"

        stream = gold.execute("select rule, message_offset, line_index, received from main.quarantined_rows where table_name = 'stream_orders'").fetchall()
        assert stream, "a third of the produced orders are bad"
        assert all(offset is not None and received for _, offset, _, received in stream)
        row = gold.execute("select received, line from main.quarantined_rows where table_name <> 'stream_orders' limit 1").fetchone()
        assert row is not None, "the generated exports hold dirt that silver rejects"
        received, line = row
        assert line >= 2 and not any(name.startswith("_") for name in json.loads(received))
        # a SQL user joins them: rejected stream lines of customers gold knows
        joined = gold.execute("""
            with rejected as (
                select try_cast(case when json_valid(value) then json_extract_string(value, '$.customer_id') end as bigint) as customer_id
                from quarantine.stream_orders
            )
            select count(*) from rejected join main.dim_customers using (customer_id)
        """).fetchone()[0]
        assert joined > 0


def test_a_quarantine_table_not_written_yet_loads_empty(lake, tmp_path):
    """Before any order arrives there is no stream quarantine: gold loads it as the empty table
    it stands for, with the layout silver writes (compared here with the tables silver wrote)."""
    for table in QUARANTINE_TABLES:
        assert pl.from_arrow(empty_quarantine(table)).schema == quarantine_frame(lake, table).schema, table
    plugin = Plugin(name="quarantine", plugin_config={"lake": str(tmp_path / "no lake")})
    missing = SourceConfig(STREAM_ORDERS, STREAM_ORDERS, "quarantine", None, {}, [])
    loaded = plugin.load(missing)
    assert loaded.num_rows == 0 and loaded.schema == empty_quarantine(STREAM_ORDERS).schema
    with duckdb.connect() as con:  # as dbt-duckdb loads it: through a cursor, in SQL, with the Arrow table's columns and types
        cursor = con.cursor()
        plugin.configure_cursor(cursor)
        relation = plugin.load(missing)
        assert isinstance(relation, duckdb.DuckDBPyRelation)
        cursor.register("arrow_df", loaded)
        assert cursor.sql("describe select * from relation").fetchall() == cursor.sql("describe select * from arrow_df").fetchall()
        assert relation.fetchall() == []


def data_lines(output: str) -> list[str]:
    lines = output.strip().splitlines()
    return lines[1:-1]  # a header, then the rows, then what was left out


def test_the_quarantine_command_prints_every_rejected_row_with_its_rule_line_and_batch(lake):
    counts = {table: quarantine_frame(lake, table).height for table in QUARANTINE_TABLES if table != STREAM_ORDERS}
    table = max(counts, key=counts.get)
    expected = quarantine_frame(lake, table).sort("_line")
    assert expected.height > 0

    result = run_cli("quarantine", "--lake", str(lake), "--table", table, "--limit", "1000")
    assert result.returncode == 0, result.stderr
    lines = data_lines(result.stdout)
    assert len(lines) == expected.height
    for line, row in zip(lines, expected.iter_rows(named=True), strict=True):
        assert line.startswith(table)
        assert f" {row[RULE_COLUMN]} " in line and f"{row['_source']} line {row['_line']}" in line and row["_batch_id"] in line
    assert result.stdout.strip().splitlines()[-1] == f"{expected.height} quarantined row{'s' if expected.height > 1 else ''}"

    stream = quarantine_frame(lake, STREAM_ORDERS)
    rule, matching = stream.group_by(RULE_COLUMN).len().sort("len", descending=True).row(0)
    result = run_cli("quarantine", "--lake", str(lake), "--rule", rule, "--limit", "2")
    assert result.returncode == 0, result.stderr
    lines = data_lines(result.stdout)
    assert len(lines) == 2 and all(f" {rule} " in line and "landing/orders/" in line and " offset " in line for line in lines)
    assert result.stdout.strip().splitlines()[-1] == f"2 of {matching} quarantined rows shown; --limit shows more"

    result = run_cli("quarantine", "--lake", str(lake), "--table", "crm_customers")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: no quarantine table 'crm_customers'; the tables are {', '.join(QUARANTINE_TABLES)}"]


def test_the_quarantine_command_on_the_reference_data(reference_sources, tmp_path, prefect_server):
    build_local_layers(reference_sources, Lake(str(tmp_path / "lake")))
    result = run_cli("quarantine", "--lake", str(tmp_path / "lake"), "--table", "crm_cust_info")
    assert result.returncode == 0, result.stderr
    lines = data_lines(result.stdout)
    assert len(lines) == 4 and all(" missing_customer_id " in line for line in lines)
    assert result.stdout.strip().splitlines()[-1] == "4 quarantined rows"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


GRAPH = """
const shown = [...document.querySelectorAll('div')].filter(e => e._cyreg && e._cyreg.cy && e.clientWidth > 0 && e.clientHeight > 0);
if (shown.length !== 1) return null;
const container = shown[0], cy = container._cyreg.cy;
const nodes = cy.nodes(':visible').map(n => ({label: n.data('label'), box: n.renderedBoundingBox()}));
const inside = nodes.filter(n => n.box.w > 0 && n.box.x1 >= 0 && n.box.y1 >= 0 && n.box.x2 <= container.clientWidth && n.box.y2 <= container.clientHeight);
if (!nodes.length || inside.length !== nodes.length) return null;
const canvas = container.querySelector('canvas[data-id="layer2-node"]');
const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let painted = 0;
for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
return {nodes: nodes.map(n => n.label), edges: cy.edges(':visible').length, painted: painted};
"""
MODEL_PAGE = "return document.body && document.body.innerText.includes('order_number') && document.body.innerText"
OFFSITE = "return performance.getEntriesByType('resource').map(e => e.name).filter(u => /^https?:/.test(u) && !u.startsWith(location.origin))"


def check_site(page: browser.Browser, url: str) -> None:
    """The fact_orders page with its columns and catalog types, and its lineage graph drawn."""
    page.open(url + "#!/model/model.dbt_gold.fact_orders?g_v=1")
    graph = page.wait_for(GRAPH)
    assert graph, "the lineage graph did not render"
    assert {"fact_orders", "dim_customers", "dim_products", "silver.crm_sales_details", "silver.stream_orders"} <= set(graph["nodes"])
    assert graph["edges"] > 0 and graph["painted"] > 1000, graph

    page.open("about:blank")
    page.open(url + "#!/model/model.dbt_gold.fact_orders")
    text = page.wait_for(MODEL_PAGE)
    assert text, "the fact_orders page did not render"
    assert "fact_orders" in text and "One row per order line" in text  # the model's description
    assert re.search(r"order_number\s+VARCHAR", text), "column types come from the catalog"
    assert "not_null_fact_orders_order_number" in text or "Not Null" in text  # its tests
    assert page.run(OFFSITE) == [], "the site needs nothing from the internet"


def test_docs_site_renders_in_a_real_browser_from_any_folder(lake, tmp_path):
    if reason := browser.missing():
        pytest.skip(reason)
    site, port = tmp_path / "site", browser.free_port()
    published = lake / "gold.duckdb"
    before = digest(published)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOGISTICS_")}
    server = subprocess.Popen(  # from dbt_gold/, where a relative lake path used to resolve to dbt_gold/lake
        [*CLI, "docs", "--lake", str(lake), "--out", str(site), "--serve", "--port", str(port)],
        cwd=ROOT / "dbt_gold", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the docs server did not answer within 300 s"
            time.sleep(0.5)
        assert {path.name for path in site.iterdir()} == {"index.html", "manifest.json", "catalog.json"}
        catalog = json.loads((site / "catalog.json").read_text())
        assert "model.dbt_gold.fact_orders" in catalog["nodes"] and "source.dbt_gold.quarantine.stream_orders" in catalog["sources"]
        assert "sls_quantity" in catalog["sources"]["source.dbt_gold.silver.crm_sales_details"]["columns"]  # read from the lake's files

        with browser.chromium() as page:
            check_site(page, url)
            check_site(page, (site / "index.html").as_uri())  # the same file, opened without a server
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"docs of {lake}: {site / 'index.html'}" in out, (out, err)
    assert digest(published) == before, "docs generation never writes the published gold"


def on_a_terminal(*args: str) -> bytes:
    """What the command writes to a terminal (a pseudo-terminal for stdout and stderr)."""
    from prefect.settings import PREFECT_API_URL

    controller, terminal = pty.openpty()
    environment = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen([*CLI, *args], stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, cwd=ROOT, env=environment)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=300) == 0, shown[-3000:]
    return shown


def test_progress_line_on_a_terminal_and_none_in_a_pipe(lake, prefect_server):
    piped = run_cli("silver", "--lake", str(lake))
    assert piped.returncode == 0, piped.stderr
    assert "\x1b[K" not in piped.stdout + piped.stderr and "\r" not in piped.stdout

    shown = on_a_terminal("silver", "--lake", str(lake), "--full-refresh")
    assert re.search(rb"\r\x1b\[Ksilver: [\d,]+ of [\d,]+ bronze rows \(\d+%\) \w+ done", shown), shown[-2000:]
    shown = on_a_terminal("gold", "--lake", str(lake), "--full-refresh")
    built = re.findall(rb"\r\x1b\[Kgold: (\d+) of (\d+) models built", shown)
    assert built and built[-1][0] == built[-1][1], shown[-2000:]  # prefect-dbt's hook after each model, up to the last
