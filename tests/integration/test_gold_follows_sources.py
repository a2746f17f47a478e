"""Gold follows the sources: after every run it equals an independent computation
(``tests/oracle.py``) from the exports and the stream as they are then, whatever changed,
and no input, failed run or damaged table can leave it stale or wedge later runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable

from logistics_pipeline.tasks.core.silver import SILVER_TABLES
from tests.cli_runner import run_cli
from tests.lake_snapshot import versions
from tests.oracle import GOLD_QUERIES, current_products, expected_gold

pytestmark = pytest.mark.usefixtures("prefect_server")

SALES = "source_crm/sales_details.csv"
CUSTOMERS = "source_crm/cust_info.csv"
SILVER_NAMES = [table.name for table in SILVER_TABLES]


def run(export: Path, lake: Path, **options) -> dict:
    from logistics_pipeline.flows.pipeline import logistics_pipeline

    return logistics_pipeline(source_dir=str(export), lake=str(lake), **options)


def assert_gold_is_the_sources(lake: Path, export: Path, messages: list[str] = ()) -> None:
    expected = expected_gold(export, messages)
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as connection:
        for table, query in GOLD_QUERIES.items():
            actual = connection.execute(query).fetchall()
            assert len(actual) == len(set(actual)), f"{table} holds a row twice"
            wanted = getattr(expected, table)
            extra, missing = set(actual) - wanted, wanted - set(actual)
            assert not extra and not missing, f"{table}: {len(extra)} rows not in the sources (e.g. {sorted(extra, key=repr)[:2]}), {len(missing)} missing (e.g. {sorted(missing, key=repr)[:2]})"


def lines(export: Path, name: str) -> list[str]:
    return (export / name).read_text(encoding="utf-8").splitlines(keepends=True)


def write_lines(export: Path, name: str, content: list[str]) -> None:
    (export / name).write_text("".join(content), encoding="utf-8")


def edit(export: Path, name: str, change) -> None:
    """Rewrite the data lines of a CSV: ``change`` maps a list of field lists to another."""
    header, *records = lines(export, name)
    fields = [record.rstrip("\r\n").split(",") for record in records]
    write_lines(export, name, [header, *(",".join(record) + "\n" for record in change(fields))])


@pytest.fixture
def reference_export(tmp_path, reference_sources) -> Path:
    copy = tmp_path / "export"
    shutil.copytree(reference_sources, copy)
    return copy


def test_snapshot_changes_on_the_reference_data(tmp_path, reference_export, reference_sources):
    """The seven steps of a changing export, each followed by a normal run."""
    lake, export = tmp_path / "lake", reference_export
    run(export, lake)
    assert_gold_is_the_sources(lake, export)

    # 1. new customers and lines appear
    write_lines(export, CUSTOMERS, [*lines(export, CUSTOMERS), "99001,AW00099001,Ada,Byron,S,F,2026-12-01\n", "99002,AW00099002,Alan,Turing,M,M,2026-12-02\n"])
    write_lines(export, SALES, [*lines(export, SALES),
                                "SO99001,BK-R93R-62,99001,20261201,20261208,20261213,3578,1,3578\n",
                                "SO99001,HL-U509-R,99001,20261201,20261208,20261213,70,2,35\n",
                                "SO99002,HL-U509-R,99002,20261202,20261209,20261214,35,1,35\n"])
    run(export, lake)
    assert_gold_is_the_sources(lake, export)

    # 2. removed lines leave
    sales = lines(export, SALES)
    write_lines(export, SALES, sales[:100] + sales[105:])
    run(export, lake)
    assert_gold_is_the_sources(lake, export)

    # 3. a customer leaves together with their lines (an erasure)
    erased = "11000"
    edit(export, SALES, lambda rows: [r for r in rows if r[2] != erased])
    edit(export, CUSTOMERS, lambda rows: [r for r in rows if r[0] != erased])
    run(export, lake)
    assert_gold_is_the_sources(lake, export)

    # 4. a customer is renamed
    edit(export, CUSTOMERS, lambda rows: [[*r[:2], "Renamed", *r[3:]] if r[0] == "11001" else r for r in rows])
    run(export, lake)
    assert_gold_is_the_sources(lake, export)

    # 5. a line's quantity and amount are corrected
    def double_first_line(rows):
        first = rows[0]
        return [[*first[:6], str(int(first[6]) * 2), str(int(first[7]) * 2), first[8]], *rows[1:]]

    edit(export, SALES, double_first_line)
    run(export, lake)
    assert_gold_is_the_sources(lake, export)

    # 6. back to the original export
    shutil.rmtree(export)
    shutil.copytree(reference_sources, export)
    run(export, lake)
    assert_gold_is_the_sources(lake, export)

    # 7. an unchanged rerun writes nothing and skips dbt build
    gold = lake / "gold.duckdb"
    before, built = versions(lake), (gold.stat().st_ino, gold.stat().st_mtime_ns)
    run(export, lake)
    assert versions(lake) == before
    assert (gold.stat().st_ino, gold.stat().st_mtime_ns) == built, "dbt rebuilt an up-to-date gold"
    assert_gold_is_the_sources(lake, export)


# --- the stream: events, not snapshots ------------------------------------------------------

T1, T2, T3 = "2026-11-26T13:00:00+00:00", "2026-11-26T14:00:00+00:00", "2026-11-27T09:30:00.5Z"


def message(order: str, event_id: str, event_time: str, lines_: list[tuple[str, int, float]], customer: int = 11000) -> str:
    return json.dumps({
        "event_id": event_id, "event_time": event_time, "order_number": order, "customer_id": customer,
        "order_date": "2026-11-26", "ship_date": "2026-12-03", "due_date": "2026-12-08",
        "lines": [{"product_number": p, "quantity": q, "price": price, "sales_amount": q * price} for p, q, price in lines_],
    })


def land(lake: Path, name: str, messages: list[str]) -> None:
    landing = lake / "landing" / "orders"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / name).write_text("".join(m + "\n" for m in messages))


def gold_value(lake: Path, sql: str):
    with duckdb.connect(str(lake / "gold.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def products(export: Path) -> tuple[str, str]:
    """Two product numbers the export holds."""
    first, second, *_ = sorted(current_products(export))
    return first, second


def test_stream_events_reach_gold_without_loss(tmp_path, sources):
    lake = tmp_path / "lake"
    bike, helmet = products(sources)
    first = [
        message("ST1", "a", T1, [(bike, 1, 3578.0), (bike, 3, 3578.0)]),  # one product on two lines
        message("ST2", "b", T1, [(bike, 1, 3578.0), (helmet, 1, 35.0)]),
        message("ST2", "c", T2, [(bike, 2, 3578.0)]),  # a corrected re-send of ST2
        message("ST3", "d", T1, [(helmet, 1, 35.0)]),
        message("ST3", "d", T1, [(helmet, 1, 35.0)]),  # a replay
        message("ST4", "e", T1, [(helmet, 2, 35.0)], customer=999999),  # a customer the CRM does not know yet
        message("ST5", "f", T1, [("ZZ-NEW-1", 1, 10.0)]),  # a product the CRM does not know yet
    ]
    land(lake, "001.jsonl", first)
    run(sources, lake)
    assert_gold_is_the_sources(lake, sources, first)
    assert gold_value(lake, "select quantity from fact_orders where order_number = 'ST1'") == [(4,)]
    assert gold_value(lake, "select product_number, quantity from fact_orders where order_number = 'ST2'") == [(bike, 2)]
    assert gold_value(lake, "select count(*) from fact_orders where customer_key = '-1' or product_key = '-1'") == [(2,)]

    later = [message("ST1", "g", T3, [(bike, 1, 3578.0)]), message("ST2", "b", T1, [(helmet, 9, 35.0)])]  # a correction; an old event again
    land(lake, "002.jsonl", later)
    run(sources, lake)
    assert_gold_is_the_sources(lake, sources, first + later)
    assert gold_value(lake, "select quantity from fact_orders where order_number = 'ST1'") == [(1,)]


def test_unknown_member_limit_fails_in_one_line_and_keeps_the_last_good_gold(tmp_path, sources):
    lake = tmp_path / "lake"
    late_customer = message("ST4", "e", T1, [(products(sources)[0], 2, 35.0)], customer=999999)
    land(lake, "001.jsonl", [late_customer])
    run(sources, lake)
    gold = lake / "gold.duckdb"
    published = gold.read_bytes()

    failed = run_cli("run", "--source-dir", str(sources), "--lake", str(lake), "--max-unknown-lines", "0")
    assert failed.returncode == 1
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith("error: gold not published: 1 order lines point to the unknown customer or product, over the limit of 0 (LOGISTICS_MAX_UNKNOWN_LINES)"), error
    assert gold.read_bytes() == published, "a failed build changed the published gold"
    assert (lake / "_dbt" / "failed" / "gold.duckdb").is_file()

    # the customer arrives in the export: the same limit passes, and gold follows
    write_lines(sources, CUSTOMERS, [*lines(sources, CUSTOMERS), "999999,AW00999999,Late,Arrival,S,F,2026-12-01\n"])
    fixed = run_cli("run", "--source-dir", str(sources), "--lake", str(lake), "--max-unknown-lines", "0")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert_gold_is_the_sources(lake, sources, [late_customer])
    assert not (lake / "_dbt" / "failed").joinpath("gold.duckdb").exists()


# --- state that cannot go stale ---------------------------------------------------------------

def log_file(table: Path, version: int) -> Path:
    return table / "_delta_log" / f"{version:020d}.json"


def rename_customer(export: Path, name: str) -> None:
    edit(export, CUSTOMERS, lambda rows: [[*r[:2], name, *r[3:]] if r is rows[0] else r for r in rows])


def lose_add_actions(table: Path, version: int) -> None:
    log = log_file(table, version)
    log.write_text("".join(line for line in log.read_text().splitlines(keepends=True) if '"add"' not in line))


def delete_a_data_file(table: Path) -> None:
    Path(DeltaTable(str(table)).file_uris()[0]).unlink()


def truncate_log(table: Path) -> None:
    log_file(table, DeltaTable(str(table)).version()).write_text('{"commitInfo":{"timest')


def test_no_accident_to_the_lake_leaves_gold_stale(tmp_path, sources):
    """One lake through a series of accidents; after each, the next normal run exits 0 with
    gold equal to the export, and names any table it had to set aside and rebuild."""
    lake, export = tmp_path / "lake", sources
    customers = {layer: lake / layer / "crm_cust_info" for layer in ("bronze", "silver", "quarantine")}
    names = iter(f"Name{i}" for i in range(100))

    def change_and_run() -> None:
        rename_customer(export, next(names))
        run(export, lake)
        assert_gold_is_the_sources(lake, export)

    change_and_run()
    change_and_run()
    assert DeltaTable(str(customers["silver"])).version() == 1

    # a silver table reset by hand to a version number gold has recorded (v0), and a changed export
    log_file(customers["silver"], 1).unlink()
    change_and_run()
    # the same with a bronze table
    log_file(customers["bronze"], DeltaTable(str(customers["bronze"])).version()).unlink()
    change_and_run()

    def assert_set_aside(table: Path) -> None:
        """The damaged table was moved to <lake>/_damaged/<layer>/ (lake.repair logs the one line naming it)."""
        aside = sorted((lake / "_damaged" / table.parent.name).glob(f"{table.name}-*"))
        assert aside and aside[-1] not in seen, f"{table} was not set aside"
        seen.add(aside[-1])

    seen: set[Path] = set()
    for damage, table in [
        (delete_a_data_file, customers["bronze"]),
        (delete_a_data_file, customers["silver"]),
        (lambda t: lose_add_actions(t, DeltaTable(str(t)).version()), customers["silver"]),
        (truncate_log, customers["quarantine"]),
        (truncate_log, customers["bronze"]),
    ]:
        damage(table)
        change_and_run()
        assert_set_aside(table)

    # a damaged silver table is found even when no export changed
    lose_add_actions(customers["silver"], DeltaTable(str(customers["silver"])).version())
    run(export, lake)
    assert_gold_is_the_sources(lake, export)
    assert_set_aside(customers["silver"])
    assert len(list((lake / "_damaged").rglob("crm_cust_info-*"))) == 6

    # gold.duckdb corrupted in place, its size and time kept
    gold = lake / "gold.duckdb"
    stat = gold.stat()
    with gold.open("r+b") as handle:
        handle.seek(stat.st_size // 2)
        handle.write(b"\xde\xad\xbe\xef" * 1024)
    os.utime(gold, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    run(export, lake)
    assert gold.stat().st_ino != stat.st_ino, "gold was not rebuilt"
    assert_gold_is_the_sources(lake, export)

    # on purpose: --full-refresh rebuilds silver and gold from bronze, bronze stays
    before, inode = versions(lake), gold.stat().st_ino
    result = run_cli("run", "--source-dir", str(export), "--lake", str(lake), "--full-refresh")
    assert result.returncode == 0, result.stderr[-2000:]
    after = versions(lake)
    assert {name for name in before if after[name] != before[name]} == {
        f"{layer}/{table}" for layer in ("silver", "quarantine") for table in [t for t in SILVER_NAMES]
    }
    assert gold.stat().st_ino != inode
    assert_gold_is_the_sources(lake, export)


def test_a_damaged_stream_table_stops_the_run_naming_it(tmp_path, sources):
    lake = tmp_path / "lake"
    land(lake, "001.jsonl", [message("ST1", "a", T1, [(products(sources)[0], 1, 35.0)])])
    run(sources, lake)
    table = lake / "bronze" / "kafka_orders"
    Path(DeltaTable(str(table)).file_uris()[0]).unlink()
    result = run_cli("run", "--source-dir", str(sources), "--lake", str(lake))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: Delta table {table}: 1 of its data files are missing")
