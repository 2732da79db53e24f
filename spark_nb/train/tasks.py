"""Edit-task datasets: mixing families over corpus units, plain-code continuation, JSONL, line-aligned ops.

Two target formats are provided:

* whole-cell: ``(context, instruction, before) -> after`` (what :class:`EditTask` stores);
* line-aligned (MODEL_NOTES.md: learns several times faster on a tiny model): the edit as per-input-line
  ops.  For every input line the model sees the line and emits ``KEEP``, ``REPLACE(text)`` or ``DELETE``;
  ``INSERT(text)`` ops add new lines and sit *before* the op of the input line they precede (inserts after
  the last line come at the end).  :func:`to_line_ops` builds them with ``difflib``; :func:`apply_line_ops`
  is the exact inverse.
"""
from __future__ import annotations

import difflib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .families import FAMILIES, EditTask, Family, make_task

CONTINUE = "continue"
CONTINUE_PARAPHRASES = ("continue this cell", "complete the code", "finish this", "keep going", "continue",
                        "Complete the implementation.", "write the rest", "autocomplete")

__all__ = ["EditTask", "Op", "KEEP", "REPLACE", "DELETE", "INSERT", "make_tasks", "split_tasks", "continuation_task",
           "write_jsonl", "read_jsonl", "read_split", "select", "to_line_ops", "apply_line_ops",
           "line_aligned_example", "family_counts"]


# ------------------------------------------------------------------------------------------------ mixing
def continuation_task(text: str, rng: random.Random) -> EditTask | None:
    """Plain code: the cell is cut after a random line; the target is the whole original cell."""
    lines = text.splitlines(keepends=True)
    if len(lines) < 4:
        return None
    k = rng.randint(1, max(1, min(len(lines) - 2, len(lines) * 2 // 3)))
    return EditTask(CONTINUE, rng.choice(CONTINUE_PARAPHRASES), "".join(lines[:k]), text,
                    meta={"prefix_lines": k})


def make_tasks(units: Sequence, rng: random.Random, per_unit: int = 1, families: Iterable[str] | None = None,
               continuation: float = 0.1, context_prob: float = 0.3, max_context_chars: int = 1500,
               balance: bool = True) -> list[EditTask]:
    """Up to ``per_unit`` edit tasks per unit from distinct families, plus continuation examples.

    ``units`` are :class:`~spark_nb.train.corpus.Unit` s (or plain strings).  With ``balance`` the families
    are tried rarest-first so that families which apply to few units are not drowned out.  Earlier units of
    the same file become notebook ``context`` (earlier cells) with probability ``context_prob``.
    """
    fams: list[Family] = [FAMILIES[n] for n in (families or FAMILIES)]
    counts = {f.name: 0 for f in fams}
    out: list[EditTask] = []
    prev_by_file: dict[str, list[str]] = {}
    for u in units:
        text = u.text if hasattr(u, "text") else str(u)
        fkey = getattr(u, "file_key", None)
        order = list(fams)
        rng.shuffle(order)
        if balance:
            order.sort(key=lambda f: counts[f.name])
        got: list[EditTask] = []
        for fam in order:
            if len(got) >= per_unit:
                break
            task = make_task(fam, text, rng)
            if task is not None:
                got.append(task)
                counts[fam.name] += 1
        if continuation and rng.random() < continuation:
            c = continuation_task(text, rng)
            if c:
                got.append(c)
        earlier = prev_by_file.get(fkey, []) if fkey else []
        for task in got:
            if earlier and rng.random() < context_prob:
                ctx, size = [], 0
                for cell in reversed(earlier[-3:]):
                    if size + len(cell) > max_context_chars:
                        break
                    ctx.insert(0, cell)
                    size += len(cell)
                task.context = ctx
        out.extend(got)
        if fkey:
            prev_by_file.setdefault(fkey, []).append(text)
    return out


def split_tasks(units: Sequence, split: str, seed: int = 0, per_unit: int = 2, continuation: float = 0.1
                ) -> list[EditTask]:
    """One split's tasks as `python -m spark_nb.train data` makes them: its rng is a function of the seed and the
    split alone, so the same units give the same tasks (the evaluation rebuilds the test split this way)."""
    from .corpus import SPLITS

    rng = random.Random(seed * 1000 + SPLITS.index(split))
    return make_tasks(units, rng, per_unit=per_unit, continuation=continuation)


def family_counts(tasks: Iterable[EditTask]) -> dict[str, int]:
    c: dict[str, int] = {}
    for t in tasks:
        c[t.family] = c.get(t.family, 0) + 1
    return dict(sorted(c.items()))


# ------------------------------------------------------------------------------------------------ JSONL
def write_jsonl(tasks: Iterable[EditTask], path) -> int:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(p, "w", encoding="utf-8") as f:
        for t in tasks:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path) -> list[EditTask]:
    with open(path, encoding="utf-8") as f:
        return [EditTask.from_dict(json.loads(line)) for line in f if line.strip()]


def read_split(data_dir, split: str = "test") -> list[EditTask]:
    """The tasks of one split of a data folder (`python -m spark_nb.train data --out DIR`)."""
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: build the data folder with `python -m spark_nb.train data "
                                f"--out {data_dir}`")
    return read_jsonl(path)


def select(tasks: Iterable[EditTask], limit: int | None = None) -> list[EditTask]:
    """Tasks of the known edit families (continuations are not edits), the first `limit` of each, in order."""
    seen: dict[str, int] = {}
    out = []
    for t in tasks:
        if t.family not in FAMILIES or (limit is not None and seen.get(t.family, 0) >= limit):
            continue
        seen[t.family] = seen.get(t.family, 0) + 1
        out.append(t)
    return out


# ------------------------------------------------------------------------------------------------ line ops
KEEP, REPLACE, DELETE, INSERT = "keep", "replace", "delete", "insert"


@dataclass(frozen=True)
class Op:
    kind: str  # keep | replace | delete | insert
    text: str | None = None  # the new line (with its newline, if any) for replace / insert

    def to_list(self) -> list:
        return [self.kind] if self.text is None else [self.kind, self.text]


def to_line_ops(before: str, after: str) -> list[Op]:
    """Express ``after`` as ops over the lines of ``before`` (one KEEP/REPLACE/DELETE per input line, in
    order, with INSERTs placed before the input line they precede)."""
    a = before.splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    ops: list[Op] = []
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            ops += [Op(KEEP)] * (i2 - i1)
        elif tag == "delete":
            ops += [Op(DELETE)] * (i2 - i1)
        elif tag == "insert":
            ops += [Op(INSERT, b[j]) for j in range(j1, j2)]
        else:  # replace: pair lines up, extra new lines are inserts, extra old lines deletes
            n = min(i2 - i1, j2 - j1)
            ops += [Op(REPLACE, b[j1 + k]) for k in range(n)]
            ops += [Op(INSERT, b[j]) for j in range(j1 + n, j2)]
            ops += [Op(DELETE)] * ((i2 - i1) - n)
    return ops


def apply_line_ops(before: str, ops: Sequence[Op]) -> str:
    a = before.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    for op in ops:
        if op.kind == INSERT:
            out.append(op.text)
            continue
        if i >= len(a):
            raise ValueError("more line ops than input lines")
        if op.kind == KEEP:
            out.append(a[i])
        elif op.kind == REPLACE:
            out.append(op.text)
        elif op.kind != DELETE:
            raise ValueError(f"unknown op {op.kind!r}")
        i += 1
    if i != len(a):
        raise ValueError(f"ops cover {i} of {len(a)} input lines")
    return "".join(out)


def line_aligned_example(task: EditTask) -> dict:
    """JSON-ready line-aligned training example (the ops reproduce ``task.after`` from ``task.before``)."""
    return {"family": task.family, "instruction": task.instruction, "context": task.context,
            "before": task.before, "ops": [op.to_list() for op in to_line_ops(task.before, task.after)]}
