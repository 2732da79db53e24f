"""The exact side of an edit: when the instruction names a refactor a program can do exactly (spark_nb.refactors:
renames, imports, debug prints, comments, f-strings, print to logging, loop <-> comprehension, extracting a constant,
a misspelt name), it is done by that program, not the model.

    result = exact_edit(code, "rename total to value", context=earlier_cells)   # an EditResult, or None

None means the model's job: the instruction names no exact refactor (or leaves it ambiguous: which x? rename to
what?), or the cell is not plain Python the refactors can read (IPython magics, shell escapes). A refactor that
refuses (the new name is taken, it would shadow another meaning) is a refused edit with its reason: the model
would only make the same change less carefully, and `exact=False` (%%spark --model-only) asks it anyway.
"""
from __future__ import annotations

import ast
import time

from . import guard

__all__ = ["exact_edit", "describe"]


def describe(refactor) -> str:
    """What an exact refactor does, in a few words: `rename total -> value`, `sort imports`."""
    if refactor.name == "rename":
        return f"rename {refactor.args['old']} -> {refactor.args['new']}"
    return refactor.name.replace("_", " ").replace("to fstrings", "to f-strings")


def exact_edit(code: str, instruction: str, context=(), on_token=None, names=()):
    """An EditResult made by an exact refactor (style "exact", no stats: no model ran; `seconds` its time; `text`
    what it did), or None (the model's job).
    context: earlier cells, whose names a refactor must respect (an import they use, a name they define). names:
    the kernel's names, which only decide what is a typo (`dff` the kernel binds is none, even beside a `df`):
    for the other refactors they would include this cell's own names once it has run, and refuse everything."""
    from ..refactors import RefactorError, route
    from .edit import EditResult

    t0 = time.perf_counter()
    used, defined = _names(context)
    bound = defined | set(names)
    refactor = route(instruction, code, defined_elsewhere=bound)  # only a typo's routing reads them
    if refactor is None:
        return None
    try:
        proposed = refactor.apply(code, used_elsewhere=used,
                                  defined_elsewhere=bound if refactor.name == "fix_misspelt_name" else defined)
    except RefactorError as err:
        if guard.parse_error(code) is not None:  # not Python the refactors read (magics): the model may still
            return None
        proposed, error = None, f"the exact refactor ({describe(refactor)}) refused: {err}"
    else:
        error = guard.parse_error(proposed)  # by construction it parses; a bug here must never reach the cell
    ok = proposed is not None and error is None
    seconds = time.perf_counter() - t0
    if ok and on_token is not None:  # the whole result at once: a live view shows it like a streamed edit
        on_token(proposed, 0, seconds, 0.0)
    return EditResult(code=proposed if ok else code, original=code, ok=ok, error=error, stats=None,
                      text=f"exact refactor: {describe(refactor)}", seconds=seconds,
                      proposed=proposed, family_hint=refactor.family, style="exact",
                      options=dict(exact=True), checked=ok)


def _names(cells) -> tuple[set[str], set[str]]:
    """(names read, names bound) across the context's cells; cells that do not parse (magics) are skipped."""
    used, defined = set(), set()
    for cell in cells:
        try:
            tree = ast.parse(cell)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                used.add(node.value.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return used, defined
