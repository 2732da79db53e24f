"""Two cells that differ only in what their variables are called mean the same: a rename's meaning check.

    renamed_apart(code)  ->  the cell's AST, dumped, with every variable the cell binds named by where it is
                              bound (its scope, in source order) and the order of its first binding there

Two cells get the same dump exactly when one is the other with some of its variables consistently renamed: every
use follows its binding, as the compiler resolves names (`scopes.Analysis`), so a rename that misses a use, renames
a use without its binding, or makes a new name capture another (a local `sum` hiding the builtin) changes the dump.
Names stay as they are where renaming them changes more than the cell: names the cell does not bind (builtins,
the kernel's), what an import without `as` binds (the module's own name), a class body's names (attributes, which
callers reach through `obj.name`), match captures, attributes, and a parameter that a keyword argument may name
in a call whose callee is not known (`obj.fit(alpha=1)`). A keyword argument in a call of one of the cell's own
functions (or classes) follows the parameter it names.
"""
from __future__ import annotations

import ast

from .base import RefactorError
from .scopes import Analysis

__all__ = ["renamed_apart", "renamed_tree"]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def renamed_apart(code: str) -> str:
    """The cell's AST dump with its own variables named by position (see the module docstring). ValueError when
    the cell is not Python the analysis reads."""
    return ast.dump(renamed_tree(code))


def renamed_tree(code: str) -> ast.Module:
    """The cell's AST with its own variables named by position, undumped (a caller may normalise more)."""
    try:
        analysis = Analysis(code)
    except RefactorError as err:
        raise ValueError(str(err)) from None
    order = {id(scope): i for i, scope in enumerate(_preorder(analysis.module))}
    variables: dict[tuple[int, str], list] = {}  # (binding scope, name) -> its occurrences
    for occ in analysis.occurrences:
        if occ.variable and occ.binding is not None:
            variables.setdefault((id(occ.binding), occ.name), []).append(occ)
    functions = _functions(analysis, variables)
    fixed = _fixed(analysis) | _keyword_params(analysis, variables, functions)
    by_scope: dict[int, list[tuple[tuple[int, int], str]]] = {}
    for (scope_id, name), occs in variables.items():
        bindings = [o for o in occs if o.binds]
        if not bindings or (scope_id, name) in fixed or name in analysis.captured:
            continue
        first = min(_position(o.node) for o in bindings)
        by_scope.setdefault(scope_id, []).append((first, name))
    canonical: dict[tuple[int, str], str] = {}
    for scope_id, named in by_scope.items():
        for k, (_, name) in enumerate(sorted(named)):
            for occ in variables[(scope_id, name)]:
                canonical[(id(occ.node), name)] = f"_{order[scope_id]}_{k}"
    for call, params in _calls_to(analysis, variables, functions):  # f(total=1) follows f's parameter total
        for kw in call.keywords:
            if kw.arg in params:
                canonical[(id(kw), kw.arg)] = canonical.get((id(params[kw.arg]), kw.arg), kw.arg)
    return _Rename(canonical).visit(analysis.tree)


def _preorder(scope):
    yield scope
    for child in scope.children:
        yield from _preorder(child)


def _position(node) -> tuple[int, int]:
    """Where a node starts: its order among the cell's nodes does not change when names change length."""
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def _fixed(analysis: Analysis) -> set[tuple[int, str]]:
    """Variables whose names are not the cell's to choose: a class body's, and those an import binds without
    `as` (the bound name is the module's own)."""
    fixed = set()
    for occ in analysis.occurrences:
        if not occ.variable or occ.binding is None:
            continue
        if occ.binding.kind == "class":
            fixed.add((id(occ.binding), occ.name))
        elif occ.binds and isinstance(occ.node, ast.alias) and occ.node.asname is None:
            fixed.add((id(occ.binding), occ.name))
    return fixed


def _functions(analysis: Analysis, variables) -> dict[tuple[int, str], dict[str, ast.arg]]:
    """The cell's functions and classes as variables, each with its parameters by name (a class: its __init__'s)."""
    out = {}
    for key, occs in variables.items():
        node = next((o.node for o in occs if o.binds and isinstance(o.node, (*_FUNCTIONS, ast.ClassDef))), None)
        if isinstance(node, ast.ClassDef):
            node = next((s for s in node.body if isinstance(s, _FUNCTIONS) and s.name == "__init__"), None)
        if node is not None:
            a = node.args
            out[key] = {p.arg: p for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
    return out


def _calls_to(analysis: Analysis, variables, functions):
    """(call, the callee's parameters) for every call of one of the cell's functions by its name."""
    variable_of = {id(o.node): key for key, occs in variables.items() for o in occs}
    for call in analysis.calls:
        key = variable_of.get(id(call.func)) if isinstance(call.func, ast.Name) else None
        if key in functions:
            yield call, functions[key]


def _keyword_params(analysis: Analysis, variables, functions) -> set[tuple[int, str]]:
    """Parameters a keyword argument may name where the callee is not known (`obj.method(total=1)`): renaming
    them could break that call, which the dump could not show."""
    known = {id(call) for call, _ in _calls_to(analysis, variables, functions)}
    unknown = {kw.arg for call in analysis.calls if id(call) not in known for kw in call.keywords if kw.arg}
    return {key for key, occs in variables.items() if key[1] in unknown
            and any(isinstance(o.node, ast.arg) for o in occs)}


class _Rename(ast.NodeTransformer):
    """Puts the canonical names in place, each at the one field where that node holds the variable's name."""

    def __init__(self, canonical: dict[tuple[int, str], str]):
        self.canonical = canonical

    def _name(self, node, name):
        return self.canonical.get((id(node), name), name) if name is not None else None

    def generic_visit(self, node):
        if isinstance(node, ast.Name):
            node.id = self._name(node, node.id)
        elif isinstance(node, ast.arg):
            node.arg = self._name(node, node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.name = self._name(node, node.name)
        elif isinstance(node, ast.alias) and node.asname is not None:
            node.asname = self._name(node, node.asname)
        elif isinstance(node, ast.keyword):
            node.arg = self._name(node, node.arg)
        elif isinstance(node, ast.ExceptHandler):
            node.name = self._name(node, node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            node.names = [self._name(node, n) for n in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation naming a class
            node.value = self._name(node, node.value)
        return super().generic_visit(node)
