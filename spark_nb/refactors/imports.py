"""Imports: sort and deduplicate them (isort), remove the unused ones (the compiler's scopes, then libcst to cut
them out with the comments around them kept), or both.

A notebook cell's imports may serve later cells, so `used_elsewhere` names the ones to keep whatever this cell
does with them (a caller can pass every name the other cells read).
"""
from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterable

import isort
import libcst as cst
from isort.exceptions import ISortError

from .base import STRUCTURE, RefactorError, StatementRemover, check_parses, parse
from .scopes import Analysis


def sort_imports(code: str, *, profile: str = "black", **isort_options) -> str:
    """The cell with its imports sorted, grouped and deduplicated as isort does (`isort.code` with `profile`)."""
    check_parses(code)  # isort reads lines, not Python: refuse what is not Python before it guesses
    try:
        out = isort.code(code, config=_isort_config(profile, **isort_options))
    except ISortError as err:
        raise RefactorError(f"isort could not sort this cell: {err}") from None
    if not code.endswith("\n") and out.endswith("\n"):  # a cell's missing last newline stays missing
        out = out[:-1]
    check_parses(out)
    return out


@functools.lru_cache(maxsize=16)
def _isort_config(profile: str, **options) -> isort.Config:
    """One isort Config per set of options: isort caches its work per Config, so a Config made for every call
    (`isort.code(code, profile=...)`) kept ~46 KB a cell alive for the kernel's life (the soak's RSS grew 5 %)."""
    return isort.Config(profile=profile, **options)


def remove_unused_imports(code: str, *, used_elsewhere: Iterable[str] = ()) -> str:
    """The cell without the imported names it never reads.

    Kept whatever the cell does: `from __future__` imports, star imports, names given to `__all__` or listed in
    `used_elsewhere`, names a string spells as a type (forward references), and imports inside a `try` (they
    usually test that a module is available)."""
    keep = set(used_elsewhere)
    return prune_imports(code, lambda module, name: name not in keep)


def tidy_imports(code: str, *, used_elsewhere: Iterable[str] = (), profile: str = "black") -> str:
    """remove_unused_imports, then sort_imports."""
    return sort_imports(remove_unused_imports(code, used_elsewhere=used_elsewhere), profile=profile)


def prune_imports(code: str, removable: Callable[[str, str], bool], module: cst.Module | None = None) -> str:
    """The cell without the imported names it never reads for which removable(module, bound name) is true.
    module: `code` already parsed, when the caller has it."""
    analysis = Analysis(code)
    removable = _also_not_exported(removable, {c.value for c in analysis.exported} | _spelt_in_strings(code))
    unused: list[set[int]] = []  # per import statement, in source order: the indices of its unused names
    for stmt, scope, in_try in analysis.imports:
        unused.append(set() if in_try else {i for i, alias in enumerate(stmt.names)
                                            if _unused(analysis, stmt, scope, alias, removable)})
    if not any(unused):
        return code
    module = module or parse(code)
    found = _Imports()
    module.visit(found)
    if len(found.nodes) != len(unused):
        raise RefactorError("the cell's imports could not be matched up: left as they are")
    return module.visit(_Prune({id(node): drop for node, drop in zip(found.nodes, unused) if drop})).code


_TYPE_NODES = (ast.Expression, ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.List, ast.Constant,
               ast.BinOp, ast.BitOr, ast.Load)


def _spelt_in_strings(code: str) -> set[str]:
    """Names that a string spells as a type, anywhere in the cell: forward references (`Type['BaseModel']` in a
    type alias, `'np.ndarray'` in a hint, a TYPE_CHECKING import's only use) that the compiler's scopes do not
    see as reads. A string that merely looks like one keeps an import that could go: the safe side."""
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) <= 200:
            try:
                spelt = ast.parse(node.value.strip(), mode="eval")
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            if all(isinstance(n, _TYPE_NODES) for n in ast.walk(spelt)):
                found |= {n.id for n in ast.walk(spelt) if isinstance(n, ast.Name)}
    return found


def _also_not_exported(removable, exported: set[str]):
    return lambda module, name: name not in exported and removable(module, name)


def _unused(analysis: Analysis, stmt, scope, alias, removable) -> bool:
    if alias.name == "*" or isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__" and not stmt.level:
        return False
    bound = alias.asname or alias.name.split(".")[0]
    module = alias.name if isinstance(stmt, ast.Import) else "." * stmt.level + (stmt.module or "")
    return removable(module, bound) and not any(not o.binds for o in analysis.uses_of(scope, bound))


class _Imports(cst.CSTVisitor):
    """The import statements in source order, as the analysis lists them."""

    def __init__(self):
        super().__init__()
        self.nodes: list[cst.Import | cst.ImportFrom] = []

    def on_visit(self, node) -> bool:
        if isinstance(node, (cst.Import, cst.ImportFrom)):
            self.nodes.append(node)
        return isinstance(node, STRUCTURE)  # imports are statements: nothing else needs a visit


class _Prune(StatementRemover):
    """Removes the unused names of each import (by index), and the statements left with none."""

    def __init__(self, unused: dict[int, set[int]]):
        super().__init__(lambda small: id(small) in unused and len(unused[id(small)]) == len(small.names))
        self.unused = unused

    def leave_Import(self, original, updated):
        return self._aliases(original, updated)

    def leave_ImportFrom(self, original, updated):
        return self._aliases(original, updated)

    def _aliases(self, original, updated):
        drop = self.unused.get(id(original))
        if not drop or len(drop) == len(original.names):
            return updated  # all of it goes: the statement remover takes the line
        kept = [alias for i, alias in enumerate(updated.names) if i not in drop]
        kept[-1] = kept[-1].with_changes(comma=updated.names[-1].comma)  # a trailing comma stays trailing
        return updated.with_changes(names=kept)
