"""Quality thresholds: the largest share of a silver table's rows (rows in) that a rule, or a
table's rules together, may quarantine before the silver layer warns or fails.

A limit's key is a rule (``unrecoverable_price``: that rule in every table that has it), a
table (``crm_sales_details``: all its rules together) or both (``crm_sales_details.missing_customer_id``);
its value a share from 0 to 1. The most specific key wins. A share above the limit is a
breach; the layer fails on a breach of a fail limit (one line naming each rule and share) and
logs a breach of a warn limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from logistics_pipeline.tasks.core.quality import TableCounts
from logistics_pipeline.tasks.core.quality_log import RULES_BY_TABLE
from logistics_pipeline.tasks.errors import PipelineError

ALL_RULES = "all rules"


class QualityThresholdExceeded(PipelineError):
    """A rule quarantined a larger share of its table than its fail limit allows."""


@dataclass(frozen=True)
class Breach:
    table: str
    rule: str
    """A rule's name, or ``ALL_RULES`` for a table's limit."""
    rows: int
    rows_in: int
    limit: float
    key: str

    @property
    def share(self) -> float:
        return self.rows / self.rows_in if self.rows_in else 0.0

    def describe(self, setting: str) -> str:
        what = f"rule {self.rule}" if self.rule != ALL_RULES else "its rules together"
        return (
            f"silver {self.table}: {what} quarantined {self.share:.2%} of its rows ({self.rows} of {self.rows_in}), "
            f"over the limit of {self.limit:.2%} ({setting} {self.key})"
        )


def check_limits(limits: Mapping[str, float], setting: str) -> None:
    """Every key names a silver table, a rule, or a table's rule; else one line saying which do not."""
    rules = {rule for names in RULES_BY_TABLE.values() for rule in names}
    known = {*RULES_BY_TABLE, *rules, *(f"{table}.{rule}" for table, names in RULES_BY_TABLE.items() for rule in names)}
    unknown = sorted(key for key in limits if key not in known)
    if unknown:
        raise PipelineError(
            f"{setting}: {', '.join(repr(key) for key in unknown)} is not a silver table, rule or table.rule "
            f"(tables: {', '.join(RULES_BY_TABLE)}; rules: {', '.join(sorted(rules))})"
        )
    bad = sorted(key for key, share in limits.items() if not 0 <= share <= 1)
    if bad:
        raise PipelineError(f"{setting}: the limit of {', '.join(bad)} is not a share between 0 and 1")


def breaches(counts: Iterable[TableCounts], limits: Mapping[str, float]) -> list[Breach]:
    """Every rule (and table) whose quarantined share is over its limit, in table and rule order."""
    found = []
    for c in counts:
        table_limit = limits.get(c.table)
        if table_limit is not None and c.rows_in and c.quarantined / c.rows_in > table_limit:
            found.append(Breach(c.table, ALL_RULES, c.quarantined, c.rows_in, table_limit, c.table))
        for rule, rows in c.rules:
            key = next((k for k in (f"{c.table}.{rule}", rule) if k in limits), None)
            if key is not None and c.rows_in and rows / c.rows_in > limits[key]:
                found.append(Breach(c.table, rule, rows, c.rows_in, limits[key], key))
    return found


def enforce(counts: list[TableCounts], warn: Mapping[str, float], fail: Mapping[str, float]) -> list[str]:
    """The warnings to log (breaches of warn limits); raises ``QualityThresholdExceeded`` with
    one line naming every breach of a fail limit."""
    check_limits(warn, WARN_SETTING)
    check_limits(fail, FAIL_SETTING)
    failures = breaches(counts, fail)
    if failures:
        raise QualityThresholdExceeded("; ".join(breach.describe(FAIL_SETTING) for breach in failures))
    return [breach.describe(WARN_SETTING) for breach in breaches(counts, warn)]


WARN_SETTING = "LOGISTICS_QUALITY_WARN_SHARE"
FAIL_SETTING = "LOGISTICS_QUALITY_FAIL_SHARE"
