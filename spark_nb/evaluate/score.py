"""Scores: one task's result, then the aggregate per family and the targets.

    row = score_task(task, result.proposed, result.ok)   # applied, parse, change, semantics, exact, useful
    summary = aggregate(rows)                            # shares, counts and seconds over a family's rows

A row scores what came out of the edit (the proposal, before the guard) and whether spark-nb applied it:

- applied: the edit went into the cell (`EditResult.ok`: the guard passed the model's proposal, or an exact refactor
  made it);
- parse: the proposal parses (`ast.parse`); applied results parse by construction, and the targets check it;
- semantics (refactor families only): the family's `semantic_key` of the proposal equals the original's: the AST
  after stripping exactly what the family may change (docstrings, annotations, comments, the renamed name, ...);
- change: the requested change is present (checks.CHANGE_CHECKS);
- exact: the proposal equals the reference (trailing newlines aside), for ONE_ANSWER families;
- useful: applied and right, what the user wants: applied, the change present and, under a refactor family, the
  semantics kept.
"""
from __future__ import annotations

import numpy as np

from ..train.families import FAMILIES, EditTask
from .checks import CHANGE_CHECKS, ONE_ANSWER, parse

__all__ = ["score_task", "aggregate", "groups", "TARGETS"]

# useful edits on mechanical families (with the pipeline); applied results that parse; applied results that change
# the program under a refactor family (a count: the one number that must stay 0)
TARGETS = {"mechanical_useful": 0.95, "applied_that_parse": 1.0, "applied_semantics_changed": 0}


def score_task(task: EditTask, proposed: str | None, applied: bool) -> dict:
    """The per-task scores (None: does not apply to this family)."""
    from ..edits.guard import semantics_preserved

    fam = FAMILIES[task.family]
    tree = parse(proposed) if proposed is not None else None
    parses = tree is not None
    semantics = bool(parses and semantics_preserved(task.before, proposed, fam)) if fam.refactor else None
    change = bool(parses and CHANGE_CHECKS[task.family](task, tree, proposed))
    exact = None
    if task.family in ONE_ANSWER:
        exact = proposed is not None and proposed.rstrip("\n") == task.after.rstrip("\n")
    applied = bool(applied)
    return {"applied": applied, "parse": parses, "change": change, "semantics": semantics, "exact": exact,
            "useful": applied and change and semantics is not False}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def aggregate(rows: list[dict]) -> dict:
    """Shares over the rows (None where no row has the score), the applied results that do not parse or that
    change the program (counts), and seconds per edit (median, p90) when the rows carry them."""
    out = {"n": len(rows)}
    for key in ("applied", "parse", "change", "semantics", "useful", "exact", "by_refactor"):
        out[key] = _mean([r.get(key) for r in rows])
    applied = [r for r in rows if r["applied"]]
    out["applied_not_parsing"] = sum(not r["parse"] for r in applied)
    out["applied_semantics_changed"] = sum(r["semantics"] is False for r in applied)
    seconds = [r["seconds"] for r in rows if "seconds" in r]
    out["median_s"] = float(np.median(seconds)) if seconds else None
    out["p90_s"] = float(np.percentile(seconds, 90)) if seconds else None
    return out


def groups(rows_by_family: dict[str, list[dict]]) -> dict:
    """The numbers the targets are about, over all families of a set."""
    mechanical = [r for n, rs in rows_by_family.items() if FAMILIES[n].mechanical for r in rs]
    human = [r for n, rs in rows_by_family.items() if not FAMILIES[n].mechanical for r in rs]
    applied = [r for rs in rows_by_family.values() for r in rs if r["applied"]]
    return {"mechanical_useful": _mean([r["useful"] for r in mechanical]),
            "human_useful": _mean([r["useful"] for r in human]),
            "applied_that_parse": _mean([r["parse"] for r in applied]),
            "applied_semantics_changed": sum(r["semantics"] is False for r in applied)}
