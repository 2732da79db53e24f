"""The test sets: library code (the held-out split of the training corpus) and notebook cells.

    library_tasks()        # artifacts/train/data/test.jsonl, or the same split rebuilt from this machine's corpus
    notebook_tasks()       # the cells in data/notebook_cells.py, through every edit family that applies
    sample(tasks, 20)      # at most 20 per family, spread over the whole set

library: files of the standard library and installed packages that no model was trained on (the corpus splits by
file). Without a data folder the split is rebuilt from the corpus as `python -m spark_nb.train data` builds it
(same code, same seed: about 25 s on a 2-core machine), so a fresh clone can evaluate.
notebook: cells as people write them in notebooks (pandas, matplotlib, numpy, small helpers, debugging prints),
written for this evaluation and never trained on; each family's own generator turns a cell into its task with a
seed fixed per family and cell, so the checks are the families' own.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from ..train.families import FAMILIES, EditTask, make_task
from ..train.tasks import read_split, select, split_tasks

__all__ = ["SETS", "DATA", "library_tasks", "notebook_cells", "notebook_tasks", "sample"]

SETS = ("library", "notebook")
DATA = Path("artifacts/train/data")  # where `python -m spark_nb.train data` puts it by default
CELLS = Path(__file__).parent / "data" / "notebook_cells.py"
CELL_MARK = "# %%"  # the percent format (Jupytext, VS Code): a line starting with it begins a cell


def library_tasks(data=None, split: str = "test", log: Callable[[str], None] | None = None) -> tuple[list, str]:
    """(tasks, where they came from). `data`: a data folder (its split must exist); None: DATA when it has the
    split, else the split rebuilt from the corpus on this machine."""
    if data is None and (DATA / f"{split}.jsonl").exists():
        data = DATA
    if data is not None:
        return read_split(data, split), f"{Path(data) / split}.jsonl"
    from ..train.corpus import build_corpus

    if log:
        log(f"no data folder ({DATA}): building the {split} split from this machine's corpus ...")
    t0 = time.perf_counter()
    corpus = build_corpus()
    tasks = split_tasks(corpus.split(split), split)
    where = (f"the {split} split rebuilt from this machine's corpus ({corpus.n_files:,} files, "
             f"{time.perf_counter() - t0:.0f} s)")
    if log:
        log(where)
    return tasks, where


def notebook_cells(path=CELLS) -> list[str]:
    """The cells of a percent-format file, each without its marker line and surrounding blank lines."""
    cells, current = [], None
    for line in Path(path).read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith(CELL_MARK):
            if current is not None:
                cells.append(current)
            current = []
        elif current is not None:  # what precedes the first marker is the file's header
            current.append(line)
    if current is not None:
        cells.append(current)
    return [text for text in ("".join(c).strip("\n") + "\n" for c in cells) if text.strip()]


def notebook_tasks(path=CELLS) -> tuple[list[EditTask], str]:
    """(tasks, where they came from): every family on every cell where it applies."""
    cells = notebook_cells(path)
    tasks = [task for name in FAMILIES for cell in cells
             if (task := make_task(name, cell, random.Random(f"{name}\n{cell}"))) is not None]
    return tasks, f"{len(cells)} notebook cells ({Path(path).name})"


def sample(tasks: list[EditTask], limit: int | None = None, seed: int = 0) -> list[EditTask]:
    """Tasks of the edit families, at most `limit` of each: a seeded shuffle first, so a limit samples the whole
    set rather than its first files."""
    tasks = list(tasks)
    random.Random(seed).shuffle(tasks)
    return select(tasks, limit)
