"""Imports a model's answer gets wrong where setting them right is not a matter of judgement, done before the guard
judges the answer.

    add_typing_imports(original, result, context, names)  ->  result, with the import when that is all it lacks
    drop_reimports(original, result)  ->  result, without the imports of names the cell already relied on

Models add `Optional[int]` or `-> Any` and forget the import, as people do; the cell would then raise NameError
when it runs, and the guard refuses it. When every name the result reads and nothing binds is one `typing`
exports, the missing import is not a matter of judgement: it goes in after the docstring, `__future__` imports and
the cell's leading imports, as an IDE's quick fix puts it, and the guard then judges the whole. Anything else
unbound (a made-up helper, a misspelt name) stays for the guard to refuse.

Models also import, at the top of a cell they edit, what the cell already used from an earlier cell: `import numpy
as np` above hints on a cell that calls `np.abs` (Qwen2.5-Coder-1.5B did it in 2 of 8 type-hint edits). The cell
relied on `np` as the notebook defines it; the import could only rebind it, which the instruction did not ask for,
and the guard refuses the whole edit for it. Such an import is dropped when every name it binds is one the
original cell read without binding, and the edit is not one whose change may be an import (`ABOUT_IMPORTS`).
"""
from __future__ import annotations

import ast
import typing

from . import checks

__all__ = ["add_typing_imports", "drop_reimports", "with_imports", "ABOUT_IMPORTS"]

_TYPING = frozenset(typing.__all__)
# families whose change may be an import: sorting them, or the import a NameError's fix needs
ABOUT_IMPORTS = frozenset({"sort_imports", "fix_misspelt_name", "fix_syntax_error"})


def add_typing_imports(original: str, result: str, context=(), names=()) -> str:
    """`result` with `from typing import ...` for the typing names it reads unbound, when those are all it lacks."""
    missing = checks.unbound_names(original, result, context, names)
    if not missing or not set(missing) <= _TYPING:
        return result
    try:
        ast.parse(result)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return result
    return with_imports(result, [f"from typing import {', '.join(sorted(set(missing)))}"])


def with_imports(code: str, statements: list[str]) -> str:
    """code with the import statements after its docstring, `__future__` imports and leading imports, as an
    IDE's quick fix puts them: joining an import block, or standing apart from the code by a blank line."""
    after, imports = 0, False
    for i, stmt in enumerate(ast.parse(code).body):
        docstring = i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
            and isinstance(stmt.value.value, str)
        if not (docstring or isinstance(stmt, (ast.Import, ast.ImportFrom))):
            break
        after, imports = stmt.end_lineno, not docstring
    lines = code.splitlines(keepends=True)
    if after and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    new = [s + "\n" for s in statements] + ([] if imports else ["\n"])
    return "".join(lines[:after] + new + lines[after:])


def drop_reimports(original: str, result: str) -> str:
    """`result` without its new top-level imports that bind only names the original read without binding."""
    relied_on = checks.free_names(original)  # None when the original does not parse
    if not relied_on:
        return result
    try:
        before, after = ast.parse(original), ast.parse(result)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return result
    had = {ast.dump(stmt) for stmt in before.body if isinstance(stmt, (ast.Import, ast.ImportFrom))}
    lines = result.splitlines(keepends=True)
    dropped = set()
    for stmt in after.body:
        if not isinstance(stmt, (ast.Import, ast.ImportFrom)) or ast.dump(stmt) in had:
            continue
        bound = {a.asname or a.name for a in stmt.names}  # `import a.b` binds a but also loads a.b: kept
        if "*" not in bound and not (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__") \
                and bound <= relied_on:
            dropped.update(range(stmt.lineno - 1, stmt.end_lineno))
    if not dropped:
        return result
    kept = [line for i, line in enumerate(lines) if i not in dropped]
    if not original.startswith("\n"):  # the blank line that parted the import from the code goes with it
        while kept and not kept[0].strip():
            kept.pop(0)
    return "".join(kept)
