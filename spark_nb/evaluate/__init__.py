"""Evaluation: any model spark-nb loads, or the shipped pipeline, on the test sets, per edit family: `spark-nb eval`.

    from spark_nb.evaluate import run, format_table
    print(format_table(run(limit=20)))                 # built-in model, exact refactors first, both sets
    print(format_table(run(model_only=True)))          # the model alone

sets.py: the test sets (library code, notebook cells); checks.py: is the requested change there, per family;
score.py: one task's scores and their aggregate; run.py: the edits; table.py: Markdown for the README and the card.
Sits above edits/ (every task is one spark_nb.edit call) and reads its tasks from train/ (the families, the corpus).
"""
from __future__ import annotations

from .checks import CHANGE_CHECKS, ONE_ANSWER
from .run import evaluate, run
from .score import TARGETS, score_task
from .sets import SETS, library_tasks, notebook_cells, notebook_tasks
from .table import card_of, format_table, write_card

__all__ = ["run", "evaluate", "format_table", "card_of", "write_card", "score_task", "CHANGE_CHECKS", "ONE_ANSWER", "TARGETS",
           "SETS", "library_tasks", "notebook_cells", "notebook_tasks"]
