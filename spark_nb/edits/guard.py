"""The edit guard: a result replaces the cell only when it parses, for a pure refactor whose family is known when
it means the same as the original, and, whatever the family, when it is not wrong in a way a program can see.

    ok, error, checked = judge(original, result, family="rename_variable", context=earlier_cells, names=user_ns)
    ok, error = check(original, result, family="rename_variable")

In order, the first failure is the error:
1. it parses;
2. for a refactor family, "means the same": the family's `semantic_key` (spark_nb.train.families), the AST after
   normalising away exactly what that family may change (docstrings, annotations, the renamed name, ...);
3. for every family (None too), `checks`: the type hints it adds are type expressions; it reads no name that
   nothing binds (not the cell, the earlier cells, the kernel's names or builtins) unless the original did; a
   fix (fix_syntax_error, fix_misspelt_name) changes only the lines it fixes.
`checked` says the meaning was compared (2); the checks in 3 can refuse, but a free-form result that passes them
may still be wrong, so they do not make it "checked".
"""
from __future__ import annotations

import ast
import symtable
import warnings

from . import checks

__all__ = ["check", "judge", "parse_error"]


def parse_error(code: str) -> str | None:
    """None when code parses, else "line N: message" (with the column and the offending line when known).

    Parsing includes the compiler's scope rules (symtable): `nonlocal x` with no enclosing x, a name used before
    its `global` declaration, are SyntaxErrors the parser alone lets through. Top-level `await` stays allowed,
    as IPython runs it."""
    try:
        with warnings.catch_warnings():  # invalid escape sequences etc. are the cell's business, not an error
            warnings.simplefilter("ignore")
            ast.parse(code)
            symtable.symtable(code, "<cell>", "exec")
    except SyntaxError as err:
        where = f"line {err.lineno}" if err.lineno else "somewhere"
        if err.lineno and err.offset:
            where += f", column {err.offset}"
        text = (err.text or "").strip()
        if not text and err.lineno and err.lineno <= code.count("\n") + 1:  # symtable does not quote the line
            text = code.splitlines()[err.lineno - 1].strip() if code.splitlines() else ""
        return f"does not parse: {where}: {err.msg}" + (f" ({text!r})" if text else "")
    except ValueError as err:  # e.g. source with NUL bytes
        return f"does not parse: {err}"
    except (RecursionError, MemoryError):  # nested deeper than Python's parser goes: it would not run either
        return "does not parse: nested too deeply for Python's parser"
    return None


def _family(family):
    if family is None or not isinstance(family, str):
        return family
    from ..train.families import FAMILIES  # the families need only ast and the standard library

    if family not in FAMILIES:
        raise ValueError(f"unknown edit family {family!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def semantics_preserved(original: str, result: str, family) -> bool | None:
    """True / False for a refactor family when the original's meaning can be read; None when it does not apply.
    A result whose meaning cannot be read where the original's can is not the same code (False)."""
    fam = _family(family)
    if fam is None or not fam.refactor:
        return None
    try:
        before = fam.semantic_key(original)
    except (SyntaxError, ValueError, RecursionError):
        return None
    try:
        return fam.semantic_key(result) == before
    except (SyntaxError, ValueError, RecursionError):
        return False


def judge(original: str, result: str, family=None, *, context=(), names=()) -> tuple[bool, str | None, bool]:
    """(ok, error, checked): ok only when result parses, keeps the original's semantics under a refactor family
    and passes `checks`; checked when the meaning was compared (a refactor family), not only the parsing: where
    it was not (additions, fixes, free text), a result that parses may still be wrong, and the view says so.

    family: a family name or `Family`, or None (unknown: no semantic or fix-scope check). context: earlier cells,
    oldest first; names: the kernel namespace's names. Both only say which names are bound already.
    """
    error = parse_error(result)
    if error:
        return False, error, False
    fam = _family(family)
    same = semantics_preserved(original, result, fam)
    if same is False:
        return False, (f"changes what the code does: {fam.name} may only change what it is about, but the "
                       f"result's AST differs from the original's beyond that"), True
    context, names = [context] if isinstance(context, str) else list(context), set(names)
    error = (checks.hint_error(original, result) or checks.hint_contradiction(original, result)
             or checks.unbound_error(original, result, context, names)
             or checks.fix_scope_error(original, result, fam and fam.name, context, names))
    return error is None, error, same is True


def check(original: str, result: str, family=None, *, context=(), names=()) -> tuple[bool, str | None]:
    """(ok, error) of `judge`."""
    ok, error, _ = judge(original, result, family, context=context, names=names)
    return ok, error
