"""What gold must hold, computed independently of the pipeline: plain Python and the csv module
over the export files (and the streamed orders), following the rules the README states.

It shares no code with ``tasks/`` or ``dbt_gold/`` on purpose: a test that compares the
pipeline's gold with this catches a bug in either, never agrees with a bug by construction.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

UNKNOWN = "-1"
INTEGER = re.compile(r"[+-]?[0-9]+")
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)")


def md5(value: object) -> str:
    return hashlib.md5(str(value).encode()).hexdigest()


def text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def integer(value: str | None) -> int | None:
    value = text(value)
    return int(value) if value and INTEGER.fullmatch(value) and len(value) <= 18 else None


def number(value: str | None) -> float | None:
    value = text(value)
    return float(value) if value and NUMBER.fullmatch(value) and len(value) <= 30 else None


def day(value: str | None, layout: str) -> date | None:
    value = text(value)
    shape = r"[0-9]{8}" if layout == "%Y%m%d" else r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    if not value or not re.fullmatch(shape, value):
        return None
    try:
        return datetime.strptime(value, layout).date()
    except ValueError:
        return None


def code(value: str | None, mapping: dict[str, str]) -> str:
    return mapping.get((value or "").strip().upper(), "n/a")


def rows(path: Path) -> list[dict[str, str]]:
    """The file's records in file order; a record with the wrong number of fields is a bad row."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader)]
        return [dict(zip(header, record, strict=True)) for record in reader if len(record) == len(header)]


def last_per_key(records: list[tuple[object, tuple, dict]]) -> dict[object, dict]:
    """(key, order, row) -> the row with the greatest order per key (later file lines win ties)."""
    best: dict[object, tuple[tuple, dict]] = {}
    for position, (key, order, row) in enumerate(records):
        rank = (*order, position)
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, row)
    return {key: row for key, (_, row) in best.items()}


# --- silver, as the README states the rules -----------------------------------------------

def customers(export: Path) -> dict[int, dict]:
    kept = []
    for row in rows(export / "source_crm" / "cust_info.csv"):
        cst_id = integer(row["cst_id"])
        if cst_id is None or cst_id < 0 or text(row["cst_key"]) is None:
            continue
        created = day(row["cst_create_date"], "%Y-%m-%d")
        record = {
            "id": cst_id, "number": text(row["cst_key"]), "first": text(row["cst_firstname"]), "last": text(row["cst_lastname"]),
            "marital": code(row["cst_marital_status"], {"S": "Single", "M": "Married"}),
            "gender": code(row["cst_gndr"], {"F": "Female", "M": "Male"}), "created": created,
        }
        kept.append((cst_id, (created is not None, created or date.min), record))  # the latest create date wins
    return last_per_key(kept)


def erp_customers(export: Path, today: date) -> dict[str, dict]:
    kept = []
    for row in rows(export / "source_erp" / "CUST_AZ12.csv"):
        cid = text(row["CID"])
        if cid is None:
            continue
        cid = cid[3:] if cid.startswith("NAS") else cid
        born = day(row["BDATE"], "%Y-%m-%d")
        gender = code(row["GEN"], {"F": "Female", "FEMALE": "Female", "M": "Male", "MALE": "Male"})
        kept.append((cid, (), {"born": born if born is None or born <= today else None, "gender": gender}))
    return last_per_key(kept)


def locations(export: Path) -> dict[str, str]:
    kept = []
    for row in rows(export / "source_erp" / "LOC_A101.csv"):
        cid = text(row["CID"])
        if cid is None:
            continue
        country = text(row["CNTRY"])
        country = {None: "n/a", "DE": "Germany", "US": "United States", "USA": "United States"}.get(country, country)
        kept.append((cid.replace("-", ""), (), {"country": country}))
    return {cid: row["country"] for cid, row in last_per_key(kept).items()}


def categories(export: Path) -> dict[str, dict]:
    kept = []
    for row in rows(export / "source_erp" / "PX_CAT_G1V2.csv"):
        if text(row["ID"]) is None:
            continue
        kept.append((text(row["ID"]), (), {"cat": text(row["CAT"]), "subcat": text(row["SUBCAT"]), "maintenance": text(row["MAINTENANCE"])}))
    return last_per_key(kept)


def current_products(export: Path) -> dict[str, dict]:
    """Product number -> its current version (one row per product id first, last line wins)."""
    kept = []
    for line, row in enumerate(rows(export / "source_crm" / "prd_info.csv")):
        prd_id, key, start = integer(row["prd_id"]), text(row["prd_key"]), day(row["prd_start_dt"], "%Y-%m-%d")
        if prd_id is None or prd_id < 0 or key is None or len(key) < 7 or start is None:
            continue
        kept.append((prd_id, (), {
            "id": prd_id, "cat_id": key[:5].replace("-", "_"), "number": key[6:], "name": text(row["prd_nm"]),
            "cost": number(row["prd_cost"]) or 0.0, "line": code(row["prd_line"], {"M": "Mountain", "R": "Road", "S": "Other Sales", "T": "Touring"}),
            "start": start, "_line": line,
        }))
    versions = last_per_key(kept).values()
    return {product["number"]: product for product in last_per_key([(p["number"], (p["start"], p["_line"]), p) for p in versions]).values()}


def crm_lines(export: Path) -> dict[tuple[str, str], dict]:
    kept = []
    for row in rows(export / "source_crm" / "sales_details.csv"):
        order, product, customer = text(row["sls_ord_num"]), text(row["sls_prd_key"]), text(row["sls_cust_id"])
        quantity, sales_in, price_in = integer(row["sls_quantity"]), number(row["sls_sales"]), number(row["sls_price"])
        if order is None or product is None or customer is None or integer(customer) is None or quantity is None or quantity <= 0:
            continue
        expected = None if price_in is None else quantity * abs(price_in)
        sales = expected if sales_in is None or sales_in <= 0 or (expected is not None and sales_in != expected) else sales_in
        price = (None if sales_in is None else sales_in / quantity) if price_in is None or price_in <= 0 else price_in
        if sales is None or price is None or sales <= 0 or price <= 0 or abs(sales - quantity * price) > 0.01:
            continue
        ordered, shipped, due = (day(row[name], "%Y%m%d") for name in ("sls_order_dt", "sls_ship_dt", "sls_due_dt"))
        if shipped is None or due is None or (ordered is not None and shipped < ordered):
            continue
        kept.append(((order, product), (), {
            "order": order, "product": product, "customer": integer(customer), "ordered": ordered, "shipped": shipped, "due": due,
            "sales": sales, "quantity": quantity, "price": price, "source": "crm",
        }))
    return last_per_key(kept)


def stream_lines(messages: list[str]) -> dict[tuple[str, str], dict]:
    """Valid order messages in arrival order -> the current line per (order, product): the
    first delivery of an event_id counts, the latest event of an order replaces the others,
    lines for the same product in one event are summed."""
    first: dict[str, tuple[int, dict]] = {}
    for position, value in enumerate(messages):
        event = json.loads(value)
        first.setdefault(event["event_id"], (position, event))
    latest: dict[str, tuple] = {}
    for position, event in first.values():
        rank = (datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")), position)
        if event["order_number"] not in latest or rank > latest[event["order_number"]][0]:
            latest[event["order_number"]] = (rank, event)
    result: dict[tuple[str, str], dict] = {}
    for _, event in latest.values():
        per_product: dict[str, list[dict]] = {}
        for line in event["lines"]:
            per_product.setdefault(line["product_number"], []).append(line)
        for product, lines in per_product.items():
            quantity = sum(line["quantity"] for line in lines)
            sales = sum(float(line["sales_amount"]) for line in lines)
            price = float(lines[0]["price"]) if len(lines) == 1 else sales / quantity
            result[(event["order_number"], product)] = {
                "order": event["order_number"], "product": product, "customer": event["customer_id"],
                "ordered": date.fromisoformat(event["order_date"]), "shipped": date.fromisoformat(event["ship_date"]),
                "due": date.fromisoformat(event["due_date"]), "sales": sales, "quantity": quantity, "price": price, "source": "stream",
            }
    return result


# --- gold ------------------------------------------------------------------------------------

@dataclass
class Gold:
    dim_customers: set[tuple] = field(default_factory=set)
    dim_products: set[tuple] = field(default_factory=set)
    fact_orders: set[tuple] = field(default_factory=set)


def money(value: float) -> float:
    return round(value, 6)


def expected_gold(export: Path, messages: list[str] = (), today: date | None = None) -> Gold:
    """dim_customers, dim_products and fact_orders as sets of rows (see ``GOLD_QUERIES``)."""
    today = today or date.today()
    crm = customers(export)
    erp, where = erp_customers(export, today), locations(export)
    gold = Gold()
    gold.dim_customers.add((UNKNOWN, None, None, None, None, "n/a", "n/a", "n/a", None, None))
    for c in crm.values():
        extra = erp.get(c["number"], {})
        gender = c["gender"] if c["gender"] != "n/a" else extra.get("gender", "n/a")
        gold.dim_customers.add((md5(c["id"]), c["id"], c["number"], c["first"], c["last"], where.get(c["number"]), c["marital"], gender, extra.get("born"), c["created"]))
    products, cats = current_products(export), categories(export)
    gold.dim_products.add((UNKNOWN, None, None, None, "n/a", None, None, None, None, "n/a", None))
    for p in products.values():
        cat = cats.get(p["cat_id"], {})
        gold.dim_products.add((md5(p["number"]), p["id"], p["number"], p["name"], p["cat_id"], cat.get("cat"), cat.get("subcat"), cat.get("maintenance"), p["cost"], p["line"], p["start"]))
    lines = stream_lines(list(messages)) | crm_lines(export)  # the CRM wins
    for line in lines.values():
        product_key = md5(line["product"]) if line["product"] in products else UNKNOWN
        customer_key = md5(line["customer"]) if line["customer"] in crm else UNKNOWN
        gold.fact_orders.add((
            line["order"], product_key, customer_key, line["product"], line["customer"], line["ordered"], line["shipped"], line["due"],
            money(line["sales"]), line["quantity"], money(line["price"]), line["source"],
        ))
    return gold


GOLD_QUERIES = {
    "dim_customers": "select customer_key, customer_id, customer_number, first_name, last_name, country, marital_status, gender, birthdate, create_date from dim_customers",
    "dim_products": "select product_key, product_id, product_number, product_name, category_id, category, subcategory, maintenance, cost, product_line, start_date from dim_products",
    "fact_orders": "select order_number, product_key, customer_key, product_number, customer_id, order_date, shipping_date, due_date, round(sales_amount, 6), quantity, round(price, 6), source from fact_orders",
}
