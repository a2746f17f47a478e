"""Named reject rules, quarantine, and the count reconciliation every silver table obeys.

A rule is a name plus a boolean expression that is true for the rows it rejects. Rows are
tagged with the first rule they break; tagged rows go to quarantine as received.
Everything here is written against narwhals, so it runs on polars, DuckDB and Spark alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import narwhals as nw

from logistics_pipeline.tasks.errors import PipelineError

RULE_COLUMN = "_rule"
STAGED = "_staged_"
"""Prefix of helper columns computed once before the rules; quarantine drops them."""


@dataclass(frozen=True)
class Rule:
    """A named reason to reject a row: ``rejects()`` is true for the rows it refuses."""

    name: str
    rejects: Callable[[], nw.Expr]


def tag_rejects(frame: nw.LazyFrame, rules: Sequence[Rule]) -> nw.LazyFrame:
    """Add ``_rule``: the name of the first rule a row breaks, or null when it passes all."""
    reason: nw.Expr = nw.lit(None, dtype=nw.String())
    for rule in reversed(rules):
        reason = nw.when(rule.rejects().fill_null(False)).then(nw.lit(rule.name)).otherwise(reason)
    return frame.with_columns(reason.alias(RULE_COLUMN))


def accepted(tagged: nw.LazyFrame) -> nw.LazyFrame:
    return tagged.filter(nw.col(RULE_COLUMN).is_null()).drop(RULE_COLUMN)


def quarantined(tagged: nw.LazyFrame) -> nw.LazyFrame:
    """The rejected rows as received, with the rule that rejected them."""
    helpers = [name for name in tagged.collect_schema().names() if name.startswith(STAGED)]
    return tagged.filter(~nw.col(RULE_COLUMN).is_null()).drop(helpers)


class CountsDoNotReconcile(PipelineError):
    """Rows were lost or made up between bronze and silver: a bug, which stops the table."""


@dataclass(frozen=True)
class TableCounts:
    """Rows in, out, quarantined and merged as duplicates for one silver table, each counted
    where it happens (``tasks.core.runner``), and the quarantined rows per rule (``rules``:
    (rule, rows) pairs of the rules that quarantined any row, in the table's rule order; empty
    in counts recorded before rules were counted). Counts that do not add up raise."""

    table: str
    rows_in: int
    rows_out: int
    quarantined: int
    merged_duplicates: int
    rules: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        # JSON (commit metadata, a job's summary) gives the pairs back as lists
        object.__setattr__(self, "rules", tuple((str(rule), int(rows)) for rule, rows in self.rules))
        if min(self.rows_in, self.rows_out, self.quarantined, self.merged_duplicates) < 0 or (
            self.rows_in != self.rows_out + self.quarantined + self.merged_duplicates
        ):
            raise CountsDoNotReconcile(
                f"silver table {self.table}: counts do not reconcile: {self.rows_in} in != "
                f"{self.rows_out} out + {self.quarantined} quarantined + {self.merged_duplicates} merged"
            )
        if self.rules and sum(rows for _, rows in self.rules) != self.quarantined:
            raise CountsDoNotReconcile(
                f"silver table {self.table}: {self.quarantined} rows quarantined, but its rules quarantined "
                + ", ".join(f"{rows} ({rule})" for rule, rows in self.rules)
            )

    @property
    def by_rule(self) -> dict[str, int]:
        return dict(self.rules)


def rule_counts(table: str, observed: Mapping[str, int], rules: Sequence[Rule]) -> tuple[tuple[str, int], ...]:
    """``TableCounts.rules`` from the rows per ``_rule`` value: the rules that quarantined rows,
    in the table's rule order."""
    order = {rule.name: index for index, rule in enumerate(rules)}
    unknown = sorted(str(name) for name in observed if name not in order)
    if unknown:
        raise CountsDoNotReconcile(f"silver table {table}: quarantined rows name rules it does not have: {', '.join(unknown)}")
    return tuple((name, int(rows)) for name, rows in sorted(observed.items(), key=lambda item: order[item[0]]) if rows)
