"""The requested change, one small check per edit family: is it present in a proposed cell?

    CHANGE_CHECKS["rename_variable"](task, ast.parse(proposed), proposed)   # -> bool

Each check is written from the family's definition and the task's meta (the new name present and the old one gone,
one more docstring, no % / .format left that could be an f-string, ...), never from any model's outputs: do not
tune them to make a model look better. ONE_ANSWER: the families whose reference is the only right answer to the
instruction, where exact match means something.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence

from ..refactors.wrap_main import is_main_guard
from ..train.families import FAMILIES, EditTask
from ..train.families.comments import comment_count
from ..train.families.debug import _is_log_call, _is_print, is_debug_stmt
from ..train.families.imports import _bound, _used_names, import_key
from ..train.families.modernise import to_joined

__all__ = ["CHANGE_CHECKS", "ONE_ANSWER", "parse"]

# families whose reference is the only right answer to the instruction (human-written targets are one of many)
ONE_ANSWER = frozenset({name for name, fam in FAMILIES.items() if fam.mechanical}
                       | {"fix_syntax_error", "fix_misspelt_name", "remove_debug"})


# -- counting helpers ------------------------------------------------------------------------------------------


def parse(code: str) -> ast.AST | None:
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


def _debug_stmts(tree, which=is_debug_stmt) -> int:
    return sum(1 for n in ast.walk(tree) if isinstance(n, ast.stmt) and which(n))


def _asked_debug(instruction: str):
    """Which debug statements the instruction asks to remove: "remove breakpoints" asks for no print to go (the
    family's reference removes every kind; the request decides what its change is), "delete the prints" for no
    breakpoint; anything else for all of them."""
    low = instruction.lower()
    prints = re.search(r"print|output", low) is not None
    debuggers = re.search(r"breakpoint|pdb|debugger|set_trace", low) is not None
    if debuggers and not prints:
        return lambda s: is_debug_stmt(s) and not _is_print(s)
    if prints and not debuggers:
        return _is_print
    return is_debug_stmt


def _imports_clean(tree, needed: Sequence[str] = (), prune: bool = True) -> bool:
    """Module-level imports are sorted (the family's one order, or isort's sections), each bound name is used when
    `prune` (the instruction asks to remove unused ones), and `needed` are imported."""
    stmts = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    lines = [ast.unparse(s) for s in stmts]
    if lines != sorted(lines, key=import_key) and lines != _isort_order(lines):
        return False
    used = _used_names(tree, set(stmts) | {a for s in stmts for a in ast.walk(s)})
    bound = {b for s in stmts for b in _bound(s)}
    if prune and any(b not in used for b in bound):
        return False
    return all(name.split(".")[0] in bound for name in needed)


def _isort_order(lines: list[str]) -> list[str]:
    """The same imports in the order isort gives them (standard library, third party, local; then by name)."""
    import isort

    return [ast.unparse(s) for s in ast.parse(isort.code("\n".join(lines) + "\n")).body]


def _asks_to_prune(instruction: str) -> bool:
    """Whether the request asks for unused imports to go ("sort imports" alone asks for an order only)."""
    return re.search(r"unused|not used|remove|drop|prune|clean|tidy|fix|mess|autoflake|superfluous", instruction,
                     re.I) is not None


# -- one check per family: (task, proposal tree, proposal text) -> bool ------------------------------------------
# `before` may not parse (fix_syntax_error); checks that compare with it treat an unparsable before as count 0.

Check = Callable[[EditTask, ast.AST, str], bool]


def _more(count) -> Check:
    def check(task, tree, code):
        before = parse(task.before)
        return count(tree) > (count(before) if before is not None else 0)
    return check


def _rename(task: EditTask, tree, code) -> bool:
    names = _names(tree)
    return task.meta["new"] in names and task.meta["old"] not in names


def _fix_name(task: EditTask, tree, code) -> bool:
    names = _names(tree)
    return task.meta["good"] in names and task.meta["bad"] not in names


def _to_fstring(task, tree, code) -> bool:
    before = parse(task.before)
    return _old_style_formats(tree) < _old_style_formats(before) and \
        _count(tree, ast.JoinedStr) > _count(before, ast.JoinedStr)


def _loop_to_comp(task, tree, code) -> bool:
    before = parse(task.before)
    return _count(tree, *_COMPS) > _count(before, *_COMPS) and _count(tree, ast.For) < _count(before, ast.For)


def _comp_to_loop(task, tree, code) -> bool:
    before = parse(task.before)
    return _count(tree, *_COMPS) < _count(before, *_COMPS) and _count(tree, ast.For) > _count(before, ast.For)


def _remove_debug(task, tree, code) -> bool:
    before, reference, which = parse(task.before), parse(task.after), _asked_debug(task.instruction)
    return _debug_stmts(tree, which) < _debug_stmts(before, which) and \
        _debug_stmts(tree, which) <= _debug_stmts(reference, which)


def _print_to_logging(task, tree, code) -> bool:
    before = parse(task.before)
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
    return has_main and any(is_main_guard(s) for s in tree.body)


CHANGE_CHECKS: dict[str, Check] = {
    "add_docstrings": _more(_docstrings),
    "add_type_hints": _more(_annotations),
    "add_comments": lambda task, tree, code: comment_count(code) > comment_count(task.before),
    # no more comments left than the exact refactor leaves (tool directives such as `# noqa` stay)
    "remove_comments": lambda task, tree, code: comment_count(code) <= comment_count(task.after) < comment_count(task.before),
    "add_error_handling": _more(lambda t: _count(t, ast.Try, getattr(ast, "TryStar", ast.Try))),
    "rename_variable": _rename,
    "rename_function": _rename,
    "to_fstring": _to_fstring,
    "loop_to_comprehension": _loop_to_comp,
    "comprehension_to_loop": _comp_to_loop,
    "remove_debug": _remove_debug,
    "print_to_logging": _print_to_logging,
    "sort_imports": lambda task, tree, code: _imports_clean(tree, task.meta.get("needed") or (),
                                                            _asks_to_prune(task.instruction)),
    "fix_syntax_error": lambda task, tree, code: True,  # the before does not parse; the proposal does
    "fix_misspelt_name": _fix_name,
    "extract_constant": _extract_constant,
    "wrap_main": _wrap_main,
}
