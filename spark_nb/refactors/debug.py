"""Remove debug code: print statements, breakpoint(), pdb/ipdb set_trace(), and the pdb/ipdb imports that leaves
unused.

A print that writes to a file (`file=f`) is output, not debugging, and stays; one to sys.stdout or sys.stderr
goes. A print inside an expression (`x = print(...)`, a lambda) stays: only whole statements are removed.
"""
from __future__ import annotations

import libcst as cst

from .base import STRUCTURE, StatementRemover, dotted_name, is_call_to, parse
from .imports import prune_imports

_DEBUGGERS = ("pdb", "ipdb")
_TRACES = ("breakpoint", "pdb.set_trace", "ipdb.set_trace")


def remove_debug(code: str, *, prints: bool = True, debuggers: bool = True) -> str:
    """The cell without its debug prints (`prints`) and debugger calls and imports (`debuggers`); see the module
    docstring for what counts."""
    module = parse(code)
    traces = _TRACES + (("set_trace",) if _imports_set_trace(module) else ()) if debuggers else ()
    module = module.visit(StatementRemover(lambda small: _is_debug(small, traces, prints)))
    if not debuggers:
        return module.code
    return prune_imports(module.code, lambda mod, name: mod.split(".")[0] in _DEBUGGERS, module)


def is_print_statement(small: cst.BaseSmallStatement) -> bool:
    """`print(...)` as a statement, writing to stdout or stderr."""
    if not (isinstance(small, cst.Expr) and is_call_to(small.value, "print")):
        return False
    out = next((a.value for a in small.value.args if a.keyword is not None and a.keyword.value == "file"), None)
    return out is None or dotted_name(out) in ("sys.stdout", "sys.stderr")


def _is_debug(small: cst.BaseSmallStatement, traces: tuple[str, ...], prints: bool) -> bool:
    return prints and is_print_statement(small) or isinstance(small, cst.Expr) and is_call_to(small.value, *traces)


def _imports_set_trace(module: cst.Module) -> bool:
    """`from pdb import set_trace` (or ipdb) somewhere: then a bare set_trace() is the debugger too."""
    found = []

    class Finder(cst.CSTVisitor):
        def on_visit(self, node):
            if isinstance(node, cst.ImportFrom) and node.module is not None and \
                    dotted_name(node.module) in _DEBUGGERS and not isinstance(node.names, cst.ImportStar):
                found.extend(a for a in node.names if dotted_name(a.name) == "set_trace" and a.asname is None)
            return isinstance(node, STRUCTURE)

    module.visit(Finder())
    return bool(found)
