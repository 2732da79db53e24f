"""Wrap a script's top-level code in `def main():` with an `if __name__ == "__main__":` guard.

What stays at module level is what makes the module usable when imported: the module docstring, `from __future__`
and other imports (an optional import in `try: ... except ImportError:` too), functions and classes, and CONSTANTS
(assignments to upper-case names), as long as they come before the first statement that does something; from that
statement on, everything moves into main(), in order, comments and blank lines with it.

Refused (RefactorError, with the reason) where main() would not do what the script did: a function or class left at
module level reads a name the moved code assigns (inside main() it would be main's local, and the function would
raise NameError); the moved code declares `global`/`nonlocal`, returns, yields, awaits at the top level (IPython
runs that, a function body cannot) or star-imports; the cell has a main or a `__name__` guard already, or nothing to
move. Names the moved code assigns are main's locals afterwards: later cells can no longer read them, which is what
wrapping a script in main() means.
"""
from __future__ import annotations

import ast
import re

import libcst as cst

from .base import RefactorError, parse
from .scopes import Analysis

__all__ = ["wrap_main", "has_script_code"]

_GUARD = 'if __name__ == "__main__":\n    main()\n'
_TOOL_LINE = re.compile(r"#!|#.*coding[:=]")  # a shebang or an encoding declaration stays on top


def wrap_main(code: str) -> str:
    """The cell with its script code in main() (see the module docstring for what moves and what is refused)."""
    module = parse(code)
    tree = ast.parse(code)
    first = _first_moved(tree.body)
    if first is None:
        raise RefactorError("nothing to wrap: the cell only imports and defines (no top-level code runs)")
    _check(code, tree, first)
    kept, moved = module.body[:first], module.body[first:]
    lead = list(moved[0].leading_lines)  # the comments above the first moved statement open main()
    if first == 0:  # libcst keeps the comments above a module's first statement in its header
        tool = [line for line in module.header if line.comment and _TOOL_LINE.match(line.comment.value)]
        lead = [line for line in module.header if line not in tool] + lead
        module = module.with_changes(header=tool)
    body = [moved[0].with_changes(leading_lines=[line for line in lead if line.comment is not None])] + list(moved[1:])
    body = [stmt.visit(_BlankLinesBare()) for stmt in body]
    main = cst.FunctionDef(name=cst.Name("main"), params=cst.Parameters(), body=cst.IndentedBlock(body=body),
                           leading_lines=[cst.EmptyLine()] * 2 if kept else [])
    guard = cst.parse_statement(_GUARD).with_changes(leading_lines=[cst.EmptyLine()] * 2)
    return module.with_changes(body=[*kept, main, guard]).code


class _BlankLinesBare(cst.CSTTransformer):
    """A blank line at module level is "indented" to nothing; moved into main() it would get main's indent as
    trailing whitespace."""

    def leave_EmptyLine(self, original, updated):
        return updated.with_changes(indent=False) if updated.comment is None else updated


def has_script_code(code: str) -> bool:
    """Whether the cell has top-level code that does something (what wrap_main would move); False for a cell of
    imports and definitions, or one that does not parse."""
    try:
        return _first_moved(ast.parse(code).body) is not None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def _first_moved(body: list[ast.stmt]) -> int | None:
    """Index of the first statement that does something (the rest moves), or None when none does."""
    for i, stmt in enumerate(body):
        if not _stays(stmt, i):
            return i
    return None


def _stays(stmt: ast.stmt, index: int) -> bool:
    if index == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
            and isinstance(stmt.value.value, str):
        return True  # the module docstring
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(stmt, ast.Try) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in stmt.body):
        return True  # an optional import
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) \
        else None
    return bool(targets) and all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)


def _check(code: str, tree: ast.Module, first: int) -> None:
    body = tree.body
    if any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name == "main" for s in body) or \
            any(is_main_guard(s) for s in body):
        raise RefactorError("the cell has a main() or an `if __name__` guard already")
    moved = body[first:]
    for stmt in moved:
        for node in _own_scope(stmt):
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                kind = "global" if isinstance(node, ast.Global) else "nonlocal"
                raise RefactorError(f"line {node.lineno} declares {kind} names: inside main() that would mean "
                                    "something else")
            if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom, ast.Await)):
                raise RefactorError(f"line {node.lineno} has a top-level {type(node).__name__.lower()}, which a "
                                    "function body cannot hold as the cell does")
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                raise RefactorError(f"line {node.lineno} star-imports, which a function cannot do")
    analysis = Analysis(code)
    moved_lines = range(moved[0].lineno, moved[-1].end_lineno + 1)
    assigned = {o.name for o in analysis.occurrences if o.variable and o.binds and o.binding is analysis.module
                and _line(o) in moved_lines}
    for occ in analysis.occurrences:
        if occ.variable and occ.binding is analysis.module and occ.name in assigned and _line(occ) not in moved_lines:
            raise RefactorError(f"line {_line(occ)} reads {occ.name!r}, which the script code assigns: inside main() "
                                f"it would be main's local, out of that code's reach")


def _line(occ) -> int:
    return getattr(occ.node, "lineno", 0)


def _own_scope(stmt: ast.stmt):
    """The nodes of a statement that run in the module's scope (not inside the functions, classes or lambdas it
    defines)."""
    todo = [stmt]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue  # its body runs in a scope of its own
        todo.extend(ast.iter_child_nodes(node))


def is_main_guard(stmt: ast.stmt) -> bool:
    """`if __name__ ...:` (whatever it compares with)."""
    return isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare) and isinstance(stmt.test.left, ast.Name) \
        and stmt.test.left.id == "__name__"
