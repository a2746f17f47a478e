"""Changes to a CRM/ERP export between two runs, for the history tests on both gold targets."""

from __future__ import annotations

from pathlib import Path

MOVED_TO = "Atlantis"


def move_and_drop_customers(export: Path) -> tuple[int, int, str]:
    """A customer moves to MOVED_TO (every ERP location line of theirs); another leaves the CRM
    export (every line of theirs). Returns (who moved, who left, the country they moved from)."""
    customers = export / "source_crm" / "cust_info.csv"
    header, *lines = customers.read_text().splitlines()
    ids = [line.split(",")[0].strip() for line in lines]
    moved, left = [int(i) for i in dict.fromkeys(i for i in ids if i.isdigit())][:2]
    number = next(line.split(",")[1].strip() for line, i in zip(lines, ids, strict=True) if i == str(moved))
    customers.write_text("\n".join([header, *(line for line, i in zip(lines, ids, strict=True) if i != str(left))]) + "\n")
    locations = export / "source_erp" / "LOC_A101.csv"
    header, *lines = locations.read_text().splitlines()
    theirs = [line.split(",")[0].replace("-", "").strip() == number for line in lines]
    old = {line.split(",")[1] for line, is_theirs in zip(lines, theirs, strict=True) if is_theirs}
    assert len(old) == 1 and MOVED_TO not in old, f"location lines of {number}: {old}"
    moves = [f"{line.split(',')[0]},{MOVED_TO}" if is_theirs else line for line, is_theirs in zip(lines, theirs, strict=True)]
    locations.write_text("\n".join([header, *moves]) + "\n")
    return moved, left, old.pop()
