"""Reading PostgreSQL's EXPLAIN (FORMAT JSON) plans in the writer's statement tests."""

from __future__ import annotations

from typing import Any


def seq_scans(plan: Any) -> list[str]:
    """The relations a plan reads by sequential scan."""
    out = [plan["Relation Name"]] if plan.get("Node Type") == "Seq Scan" and "Relation Name" in plan else []
    for child in plan.get("Plans", ()):
        out += seq_scans(child)
    return out


def rows_handled(plan: Any) -> int:
    """Rows every node of an executed plan produced, over all its loops: a
    nested loop over two sets of a batch's size shows as their product."""
    own = int(plan.get("Actual Rows", 0)) * int(plan.get("Actual Loops", 1))
    return own + sum(rows_handled(child) for child in plan.get("Plans", ()))
