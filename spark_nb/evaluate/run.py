"""Running the test sets through spark_nb.edit: `spark-nb eval`.

    result = run()                                   # the shipped pipeline, built-in model, both sets
    result = run("path/to/model", model_only=True)   # any model spark-nb loads, alone
    print(format_table(result))

Each task is one `spark_nb.edit` call with the family known (as a notebook user's request, plus the family for the
guard's semantic check). By default what users get: an exact refactor (spark_nb.refactors) where the instruction
names one, the model for the rest; `model_only` sends everything to the model (exact=False). The call is timed
(wall time, the kernels compiled beforehand) and scored by score.score_task.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..train.families import FAMILIES, EditTask
from .score import TARGETS, aggregate, groups, score_task
from .sets import SETS, library_tasks, notebook_tasks, sample

__all__ = ["evaluate", "run"]


def evaluate(model, tasks: Sequence[EditTask], limit: int | None = None, model_only: bool = False,
             max_new_tokens: int | None = None, log: Callable[[str], None] | None = None, **options) -> dict:
    """Run the tasks (at most `limit` per family) through spark_nb.edit on `model` (an Engine, a model folder, or
    None: the built-in model) and aggregate per family."""
    from ..edits import edit, get_engine

    engine = get_engine(model, options.pop("wafer", "wse3"), options.pop("dtype", "int8"))
    tasks = sample(tasks, limit)
    for exact in (False, True):  # compile the kernels and import the refactors before anything is timed
        if tasks:
            edit(tasks[0].before, tasks[0].instruction, model=engine, max_new_tokens=2, exact=exact, **options)
    rows: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for i, task in enumerate(tasks):
        start = time.perf_counter()
        r = edit(task.before, task.instruction, model=engine, context=task.context, family=task.family,
                 max_new_tokens=max_new_tokens, exact=not model_only, **options)
        row = score_task(task, r.proposed, r.ok)
        row["seconds"] = time.perf_counter() - start
        row["by_refactor"] = r.style == "exact"
        rows.setdefault(task.family, []).append(row)
        if log and (i + 1) % 100 == 0:
            log(f"{i + 1}/{len(tasks)} tasks ({time.perf_counter() - t0:.0f} s)")
    families = {name: aggregate(rows[name]) for name in FAMILIES if name in rows}
    all_rows = [r for rs in rows.values() for r in rs]
    return {"model": str(getattr(engine, "path", engine)), "pipeline": not model_only, "tasks": len(all_rows),
            "families": families, "all": aggregate(all_rows), "groups": groups(rows), "targets": dict(TARGETS),
            "seconds": time.perf_counter() - t0}


def run(model=None, sets: Sequence[str] = SETS, data=None, split: str = "test", limit: int | None = None,
        model_only: bool = False, log: Callable[[str], None] | None = None, **options) -> dict:
    """Evaluate `model` on each named set (library: `data`'s `split`, see sets.library_tasks; notebook)."""
    out = {}
    for name in sets:
        if name == "library":
            tasks, source = library_tasks(data, split, log)
        elif name == "notebook":
            tasks, source = notebook_tasks()
        else:
            raise ValueError(f"unknown test set {name!r}: one of {', '.join(SETS)}")
        if log:
            log(f"{name}: {source}")
        out[name] = {**evaluate(model, tasks, limit=limit, model_only=model_only, log=log, **options),
                     "source": source}
    return {"model": next(iter(out.values()))["model"] if out else str(model), "pipeline": not model_only,
            "sets": out}
