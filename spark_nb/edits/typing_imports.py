"""The `from typing import ...` a model's type hints need and its answer left out.

    add_typing_imports(original, result, context, names)  ->  result, with the import when that is all it lacks

Models add `Optional[int]` or `-> Any` and forget the import, as people do; the cell would then raise NameError
when it runs, and the guard refuses it. When every name the result reads and nothing binds is one `typing`
exports, the missing import is not a matter of judgement: it goes in after the docstring, `__future__` imports and
the cell's leading imports, as an IDE's quick fix puts it, and the guard then judges the whole. Anything else
unbound (a made-up helper, a misspelt name) stays for the guard to refuse.
"""
from __future__ import annotations

import ast
import typing

from . import checks

__all__ = ["add_typing_imports"]

_TYPING = frozenset(typing.__all__)


def add_typing_imports(original: str, result: str, context=(), names=()) -> str:
    """`result` with `from typing import ...` for the typing names it reads unbound, when those are all it lacks."""
    missing = checks.unbound_names(original, result, context, names)
    if not missing or not set(missing) <= _TYPING:
        return result
    try:
        body = ast.parse(result).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return result
    after, imports = 0, False  # the import goes after the docstring and the leading imports
    for i, stmt in enumerate(body):
        docstring = i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
            and isinstance(stmt.value.value, str)
        if not (docstring or isinstance(stmt, (ast.Import, ast.ImportFrom))):
            break
        after, imports = stmt.end_lineno, not docstring
    lines = result.splitlines(keepends=True)
    if after and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    new = [f"from typing import {', '.join(sorted(set(missing)))}\n"] + ([] if imports else ["\n"])  # joins an
    return "".join(lines[:after] + new + lines[after:])  # import block, or stands apart from the code
