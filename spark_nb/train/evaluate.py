"""Evaluation of an edit model on held-out edit tasks, per family: `spark-nb eval`.

    spark-nb eval --model spark_nb/models/builtin --data artifacts/train/data --split test --limit 50 [--json]

Each task goes through `spark_nb.edit` (the same driver, prompt and guard a notebook user gets) with its family
known, and is scored on what the model proposed, before the guard:

- parse: the proposed cell parses (`ast.parse`); `ok` is the guard's verdict (parses, and for refactor families
  keeps the semantics), so 100 % of ok results parse by construction;
- semantics (refactor families only): the family's `semantic_key` of the proposal equals the original's: the AST
  after stripping exactly what the family may change (docstrings, annotations, comments, the renamed name, ...);
- change: the requested change is present, by one small check per family written from the family's definition and
  the task's meta (new name present and old one gone, one more docstring, no % / .format left that could be an
  f-string, ...), never from any model's outputs;
- exact: the proposal equals the reference (trailing newlines aside), for families where the instruction admits
  one answer (not for docstrings, type hints, comments, error handling);
- tok/s: generated tokens per second of decode, host and projected wafer (fed input-line tokens not counted).

The checks are deliberately independent of the model: do not tune them to make a model look better.
"""
from __future__ import annotations

import ast
import io
import time
import tokenize
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .families import FAMILIES, EditTask
from .families.debug import _is_log_call, is_debug_stmt
from .families.imports import _bound, _used_names, import_key
from .families.modernise import to_joined
from .families.structure import _is_main_guard

__all__ = ["evaluate", "run", "format_table", "score_task", "CHANGE_CHECKS", "ONE_ANSWER", "load_tasks"]

# families whose reference is the only right answer to the instruction (human-written targets are one of many)
ONE_ANSWER = frozenset({name for name, fam in FAMILIES.items() if fam.mechanical}
                       | {"fix_syntax_error", "fix_misspelt_name", "remove_debug"})


# -- counting helpers ------------------------------------------------------------------------------------------


def _parse(code: str) -> ast.AST | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _count(tree, *types) -> int:
    return sum(isinstance(n, types) for n in ast.walk(tree)) if tree is not None else 0


def _docstrings(tree) -> int:
    owners = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return sum(1 for n in ast.walk(tree) if isinstance(n, owners) and ast.get_docstring(n, clean=False) is not None)


def _annotations(tree) -> int:
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            n += 1
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            n += 1
        elif isinstance(node, ast.AnnAssign):
            n += 1
    return n


def _comments(code: str) -> int:
    try:
        return sum(t.type == tokenize.COMMENT for t in tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return 0


def _names(tree) -> set[str]:
    """Identifiers the code binds or reads (not attribute names)."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            out.update(n.names)
    return out


def _old_style_formats(tree) -> int:
    """%-format and str.format expressions the f-string conversion could rewrite."""
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.Call)):
            try:
                n += to_joined(node) is not None
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                pass
    return n


_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp)


def _prints(tree) -> int:
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id == "print")


def _debug_stmts(tree) -> int:
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.stmt) and is_debug_stmt(n))


def _imports_clean(tree, needed: Sequence[str] = ()) -> bool:
    """Module-level imports are sorted (the family's order), each bound name is used, and `needed` are imported."""
    stmts = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    lines = [ast.unparse(s) for s in stmts]
    if lines != sorted(lines, key=import_key):
        return False
    used = _used_names(tree, set(stmts) | {a for s in stmts for a in ast.walk(s)})
    bound = {b for s in stmts for b in _bound(s)}
    if any(b not in used for b in bound):
        return False
    return all(name.split(".")[0] in bound for name in needed)


# -- one check per family: (task, proposal tree, proposal text) -> bool ------------------------------------------
# `before` may not parse (fix_syntax_error); checks that compare with it treat an unparsable before as count 0.

Check = Callable[[EditTask, ast.AST, str], bool]


def _more(count) -> Check:
    def check(task, tree, code):
        before = _parse(task.before)
        return count(tree) > (count(before) if before is not None else 0)
    return check


def _rename(task: EditTask, tree, code) -> bool:
    names = _names(tree)
    return task.meta["new"] in names and task.meta["old"] not in names


def _fix_name(task: EditTask, tree, code) -> bool:
    names = _names(tree)
    return task.meta["good"] in names and task.meta["bad"] not in names


def _to_fstring(task, tree, code) -> bool:
    before = _parse(task.before)
    return _old_style_formats(tree) < _old_style_formats(before) and \
        _count(tree, ast.JoinedStr) > _count(before, ast.JoinedStr)


def _loop_to_comp(task, tree, code) -> bool:
    before = _parse(task.before)
    return _count(tree, *_COMPS) > _count(before, *_COMPS) and _count(tree, ast.For) < _count(before, ast.For)


def _comp_to_loop(task, tree, code) -> bool:
    before = _parse(task.before)
    return _count(tree, *_COMPS) < _count(before, *_COMPS) and _count(tree, ast.For) > _count(before, ast.For)


def _remove_debug(task, tree, code) -> bool:
    before, reference = _parse(task.before), _parse(task.after)
    return _debug_stmts(tree) < _debug_stmts(before) and _debug_stmts(tree) <= _debug_stmts(reference)


def _print_to_logging(task, tree, code) -> bool:
    before = _parse(task.before)
    logs = lambda t: sum(1 for n in ast.walk(t) if isinstance(n, ast.Call) and _is_log_call(n))  # noqa: E731
    return _prints(tree) < _prints(before) and logs(tree) > logs(before)


def _extract_constant(task, tree, code) -> bool:
    const = task.meta["const"]
    assigned = any(isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == const for t in s.targets)
                   and isinstance(s.value, ast.Constant) for s in tree.body)
    used = any(isinstance(n, ast.Name) and n.id == const and isinstance(n.ctx, ast.Load) for n in ast.walk(tree))
    return assigned and used


def _wrap_main(task, tree, code) -> bool:
    has_main = any(isinstance(s, ast.FunctionDef) and s.name == "main" for s in tree.body)
    return has_main and any(_is_main_guard(s) for s in tree.body)


CHECKS_BY_FAMILY: dict[str, Check] = {
    "add_docstrings": _more(_docstrings),
    "add_type_hints": _more(_annotations),
    "add_comments": lambda task, tree, code: _comments(code) > _comments(task.before),
    "add_error_handling": _more(lambda t: _count(t, ast.Try, getattr(ast, "TryStar", ast.Try))),
    "rename_variable": _rename,
    "rename_function": _rename,
    "to_fstring": _to_fstring,
    "loop_to_comprehension": _loop_to_comp,
    "comprehension_to_loop": _comp_to_loop,
    "remove_debug": _remove_debug,
    "print_to_logging": _print_to_logging,
    "sort_imports": lambda task, tree, code: _imports_clean(tree, task.meta.get("needed") or ()),
    "fix_syntax_error": lambda task, tree, code: True,  # the before does not parse; the proposal does
    "fix_misspelt_name": _fix_name,
    "extract_constant": _extract_constant,
    "wrap_main": _wrap_main,
}
CHANGE_CHECKS = CHECKS_BY_FAMILY


# -- scoring -------------------------------------------------------------------------------------------------------


def score_task(task: EditTask, proposed: str | None, ok: bool) -> dict:
    """The per-task scores (None: does not apply to this family)."""
    from ..edits.guard import semantics_preserved

    fam = FAMILIES[task.family]
    tree = _parse(proposed) if proposed is not None else None
    parses = tree is not None
    semantics = None
    if fam.refactor:
        semantics = bool(parses and semantics_preserved(task.before, proposed, fam))
    change = bool(parses and CHECKS_BY_FAMILY[task.family](task, tree, proposed))
    exact = None
    if task.family in ONE_ANSWER:
        exact = proposed is not None and proposed.rstrip("\n") == task.after.rstrip("\n")
    # applied: what the user gets, an edit spark_nb applies (ok: the guard passed it) that makes the change asked
    return {"parse": parses, "ok": bool(ok), "semantics": semantics, "change": change, "exact": exact,
            "applied": bool(ok and change)}


def load_tasks(data_dir, split: str = "test") -> list[EditTask]:
    from .tasks import read_jsonl

    path = Path(data_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: build the data folder with `python -m spark_nb.train data "
                                f"--out {data_dir}`")
    return read_jsonl(path)


def select(tasks: Iterable[EditTask], limit: int | None = None) -> list[EditTask]:
    """Tasks of the known edit families (continuations are not edits), the first `limit` of each, in file order."""
    seen: dict[str, int] = {}
    out = []
    for t in tasks:
        if t.family not in FAMILIES or (limit is not None and seen.get(t.family, 0) >= limit):
            continue
        seen[t.family] = seen.get(t.family, 0) + 1
        out.append(t)
    return out


def evaluate(model, tasks: Sequence[EditTask], limit: int | None = None, max_new_tokens: int | None = None,
             log: Callable[[str], None] | None = None, **options) -> dict:
    """Run every task through spark_nb.edit on `model` (an Engine or a folder) and aggregate per family."""
    from ..edits import edit
    from ..edits.edit import get_engine

    engine = get_engine(model, options.pop("wafer", "wse3"), options.pop("dtype", "int8"))
    tasks = select(tasks, limit)
    if tasks:  # one short edit first, so compiling or loading kernels does not count against the first family
        edit(tasks[0].before, tasks[0].instruction, model=engine, max_new_tokens=2, exact=False, **options)
    rows: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for i, task in enumerate(tasks):
        r = edit(task.before, task.instruction, model=engine, context=task.context, family=task.family,
                 max_new_tokens=max_new_tokens, exact=False, **options)  # the model alone, not exact refactors
        row = score_task(task, r.proposed, r.ok)
        s = r.stats
        n = max((s.tokens if s else 0) - 1, 0)
        row["decode_tokens"] = n
        row["decode_s"] = n / s.tok_per_s if s and s.tok_per_s > 0 else 0.0
        row["wafer_decode_s"] = n / s.wafer_tok_per_s if s and s.wafer_tok_per_s > 0 else 0.0
        rows.setdefault(task.family, []).append(row)
        if log and (i + 1) % 25 == 0:
            log(f"{i + 1}/{len(tasks)} tasks ({time.perf_counter() - t0:.0f}s)")
    families = {name: _aggregate(rows[name]) for name in FAMILIES if name in rows}
    all_rows = [r for rs in rows.values() for r in rs]
    groups = {
        "refactor_semantics": _mean([r["semantics"] for n, rs in rows.items() for r in rs if FAMILIES[n].refactor]),
        "mechanical_change": _mean([r["change"] for n, rs in rows.items() for r in rs if FAMILIES[n].mechanical]),
        "human_change": _mean([r["change"] for n, rs in rows.items() for r in rs if not FAMILIES[n].mechanical]),
        "ok_that_parse": _mean([r["parse"] for r in all_rows if r["ok"]]),
    }
    return {"model": str(getattr(engine, "path", engine)), "tasks": len(all_rows), "families": families,
            "all": _aggregate(all_rows) if all_rows else {}, "groups": groups,
            "targets": {"ok_that_parse": 1.0, "refactor_semantics": 0.95, "mechanical_change": 0.90,
                        "human_change": 0.70},
            "seconds": time.perf_counter() - t0}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _aggregate(rows: list[dict]) -> dict:
    dec_n = sum(r["decode_tokens"] for r in rows)
    dec_s, wafer_s = sum(r["decode_s"] for r in rows), sum(r["wafer_decode_s"] for r in rows)
    out = {"n": len(rows)}
    for key in ("parse", "ok", "semantics", "change", "exact", "applied"):
        out[key] = _mean([r[key] for r in rows])
    out["tok_per_s"] = dec_n / dec_s if dec_s > 0 else None
    out["wafer_tok_per_s"] = dec_n / wafer_s if wafer_s > 0 else None
    return out


def format_table(result: dict) -> str:
    """A Markdown table (it goes in the model card and the README as is)."""
    def pct(v):
        return "—" if v is None else f"{100 * v:.0f}%"

    def rate(v):
        return "—" if v is None else f"{v:,.0f}"

    head = "| family | kind | n | parse | ok | semantics | change | exact | applied | tok/s host | tok/s wafer |"
    lines = [head, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, a in list(result["families"].items()) + [("**all**", result["all"])]:
        fam = FAMILIES.get(name)
        kind = "" if fam is None else ("mechanical" if fam.mechanical else "human") + (", refactor" if fam.refactor
                                                                                        else "")
        lines.append(f"| {name} | {kind} | {a.get('n', 0)} | {pct(a.get('parse'))} | {pct(a.get('ok'))} | "
                     f"{pct(a.get('semantics'))} | {pct(a.get('change'))} | {pct(a.get('exact'))} | "
                     f"{pct(a.get('applied'))} | {rate(a.get('tok_per_s'))} | {rate(a.get('wafer_tok_per_s'))} |")
    g, t = result["groups"], result["targets"]
    lines.append("")
    lines.append("Targets: " + "; ".join(f"{k.replace('_', ' ')} {pct(g.get(k))} (target {pct(t[k])})" for k in t))
    lines.append("")
    lines.append("parse: the proposal parses; ok: spark-nb applies it (it parses and, for a refactor, keeps the AST "
                 "apart from what the family may change); semantics: that AST check; change: the proposal parses "
                 "and makes the change asked; exact: equal to the one right answer; applied: ok and the change, "
                 "what a user gets in the cell.")
    return "\n".join(lines)


def run(model=None, data="artifacts/train/data", split: str = "test", limit: int | None = None,
        log: Callable[[str], None] | None = None, **options) -> dict:
    """Load the split's tasks and evaluate `model` (None: the built-in model) on them."""
    result = evaluate(model, load_tasks(data, split), limit=limit, log=log, **options)
    result["split"], result["data"] = split, str(data)
    return result


def write_card(folder, result: dict) -> Path:
    """Put the table into the model card (README.md of the model folder), between the markers export left."""
    from .export import EVAL_BEGIN, EVAL_END

    card = Path(folder) / "README.md"
    text = card.read_text()
    if EVAL_BEGIN not in text or EVAL_END not in text:
        raise ValueError(f"{card} has no {EVAL_BEGIN} ... {EVAL_END} section (was it written by export?)")
    head, rest = text.split(EVAL_BEGIN, 1)
    tail = rest.split(EVAL_END, 1)[1]
    body = (f"`spark-nb eval` on the {result['split']} split ({result['tasks']} tasks, files never trained on; "
            "greedy, int8 on the emulated wse3):\n\n" + format_table(result))
    card.write_text(f"{head}{EVAL_BEGIN}\n{body}\n{EVAL_END}{tail}")
    return card
