"""Scope-aware rename of one variable, parameter, function, class, method or class attribute.

    rename(code, "total", "value")                      # the one binding of `total` in the cell
    rename(code, "x", "width", within="area")           # the `x` of function `area`, when several exist
    rename(code, "f", "area", kind="function")          # refuse unless `f` is a function

A binding is a name in one scope (module, function, class, lambda, comprehension), as the compiler resolves it
(`scopes.Analysis`): every place that binds it and every use that reads it are renamed, and nothing else. Besides
plain names that covers `global`/`nonlocal` declarations, names inside f-strings, `__all__` entries, string
annotations that are just the name, an import (`import m` -> `import m as new`), keyword arguments at the calls of
a renamed parameter's function when those calls are in the cell, and, for a method or class attribute,
`self.name`, `cls.name` and `Class.name`. Only those spans of the source change.

Whatever cannot be decided from the cell is refused with a RefactorError rather than guessed: a name bound in
several scopes (say which with `within`), a `.name` attribute on an object that may or may not be the class,
calls that may pass a renamed parameter by keyword through `**` or an alias, a new name that is already bound or
used where it would change meaning, or a module-level name that would shadow a builtin; names a match pattern
binds.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import re
from collections.abc import Iterable

from .base import RefactorError
from .scopes import Analysis, Occurrence, Scope

KINDS = ("variable", "parameter", "function", "method", "class", "attribute")
_ACCEPTS = {  # what a requested kind may turn out to be: users call parameters variables, methods functions
    "variable": {"variable", "parameter", "attribute"},
    "parameter": {"parameter"},
    "function": {"function", "method"},
    "method": {"method"},
    "class": {"class"},
    "attribute": {"attribute", "method"},
}
_BUILTINS = frozenset(dir(builtins))


def rename(code: str, old: str, new: str, *, kind: str | None = None, within: str | None = None,
           defined_elsewhere: Iterable[str] = ()) -> str:
    """`code` with the binding `old` renamed to `new`, or a RefactorError.

    kind: one of KINDS, to refuse when `old` is something else. within: the function or class whose `old` is
    meant. defined_elsewhere: names other cells of the notebook define, which `new` must not take."""
    for name in (old, new):
        if not name.isidentifier() or keyword.iskeyword(name):
            raise RefactorError(f"{name!r} is not a valid Python name")
    if old == new:
        raise RefactorError(f"{old} is already called {new}")
    if kind is not None and kind not in _ACCEPTS:
        raise RefactorError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    plan = _Plan(Analysis(code), old, new)
    plan.choose(kind, within)
    plan.check_new_name(set(defined_elsewhere))
    return plan.apply()


def bindings(code: str, old: str, *, kind: str | None = None, within: str | None = None) -> list[str]:
    """Where the cell binds `old` (as `kind`, in `within`), e.g. ["function area", "the module level"]: what
    `rename` chooses from (it renames only when there is exactly one)."""
    return sorted(_where(s) for s in _Plan(Analysis(code), old, old).candidates(kind, within))


def _where(scope: Scope) -> str:
    if scope.kind == "module":
        return "the module level"
    if scope.kind in ("comprehension", "lambda"):
        return f"a {scope.kind}" + ("" if scope.parent.kind == "module" else " in " + _where(scope.parent))
    return f"{scope.kind} {scope.name}"


class _Plan:
    """Which binding, whether the new name is free, and every span that changes."""

    def __init__(self, analysis: Analysis, old: str, new: str):
        self.a, self.old, self.new = analysis, old, new
        self.scope: Scope | None = None
        self.kind = ""
        self.edits: dict[int, tuple[int, str]] = {}  # start -> (end, replacement)

    # -- which binding ---------------------------------------------------------------------------------------

    def candidates(self, kind: str | None, within: str | None) -> list[Scope]:
        found = list(dict.fromkeys(o.binding for o in self.a.of(self.old) if o.binds and o.binding is not None))
        if within is not None:
            mine = [s for s in found if s.name == within and s.kind in ("function", "class")]
            found = mine or [s for s in found if any(p.name == within for p in s.ancestors())]
        if kind is not None:
            found = [s for s in found if self._kind(s) in _ACCEPTS[kind]]
        return found

    def _kind(self, scope: Scope) -> str:
        nodes = [o.node for o in self.a.uses_of(scope, self.old) if o.binds]
        if any(isinstance(n, ast.arg) for n in nodes):
            return "parameter"
        if all(isinstance(n, ast.ClassDef) for n in nodes):
            return "class"
        if all(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in nodes):
            return "method" if scope.kind == "class" else "function"
        if any(isinstance(n, ast.alias) for n in nodes):
            return "import"
        return "attribute" if scope.kind == "class" else "variable"

    def choose(self, kind: str | None, within: str | None):
        if any(_private(n) for n in (self.old, self.new)) and any(s.kind == "class" for s in self.a.scopes()):
            raise RefactorError("names like __x are spelt differently inside classes (name mangling): rename by hand")
        if self.old in self.a.captured or self.new in self.a.captured:
            name = self.old if self.old in self.a.captured else self.new
            raise RefactorError(f"a match pattern binds {name}: rename by hand")
        found = self.candidates(kind, within)
        if not found:
            if not self.candidates(None, None):
                raise RefactorError(f"{self.old} is not defined in this cell" + (
                    " (it is only used here: rename it where it is defined)" if self.a.of(self.old) else ""))
            if within is not None and not self.candidates(None, within):
                raise RefactorError(f"{self.old} is not defined in a function or class called {within}")
            raise RefactorError(f"{self.old} is not a {kind} in this cell")
        if len(found) > 1:
            places = ", ".join(sorted(_where(s) for s in found))
            raise RefactorError(f"{self.old} is defined in several places ({places}): say which, e.g. "
                                f"'rename {self.old} to {self.new} in <function>'")
        self.scope = found[0]
        self.kind = self._kind(self.scope)

    # -- is the new name free --------------------------------------------------------------------------------

    def check_new_name(self, taken: set[str]):
        """`new` must not change what any name means: no use of `old` may find another `new` first, no use of
        `new` may find the renamed binding instead of its own. A function's local may take the name of an outer
        one it does not read (`s` -> `slope` inside fit_line, beside a module-level `slope`; `f` -> `filter` where
        the function calls no filter()): the code means the same, as the checks below make sure, and linters'
        "redefined outer name" is a matter of style. A module-level name is the notebook's: it may not take a
        builtin's name or one another cell defines."""
        new, scope = self.new, self.scope
        if scope.kind == "module":  # the notebook's namespace: later cells would find the new name changed
            if new in _BUILTINS:
                raise RefactorError(f"{new} would shadow the builtin {new}")
            if new in taken:
                raise RefactorError(f"{new} is already defined elsewhere in the notebook")
        if self.a.bound_in(scope, new):
            raise RefactorError(f"{new} is already defined in {_where(scope)}")
        binders = {o.binding for o in self.a.of(new) if o.binds}
        for use in self.a.uses_of(scope, self.old):
            for s in _chain(use.scope, scope):
                if s in binders:
                    raise RefactorError(f"{self.old} is used in {_where(s)}, where {new} already means "
                                        "something else")
        for use in self.a.of(new):
            if use.scope.sees(scope) and use.binding not in _chain(use.scope, scope):
                raise RefactorError(f"{new} is already used in {_where(use.scope)}: it would then mean the "
                                    f"renamed {self.old}")
        if self.kind in ("method", "attribute"):
            if _dunder(self.old) or _dunder(new):
                raise RefactorError("special (dunder) methods and attributes are not renamed: Python looks them "
                                    "up by name")
            for att in self.a.of(new, variable=False):
                if isinstance(att.node, ast.Attribute) and self._member_base(att.node) is not None:
                    raise RefactorError(f"{new} is already an attribute of {scope.name}")

    # -- every span that changes -----------------------------------------------------------------------------

    def apply(self) -> str:
        for o in self.a.uses_of(self.scope, self.old):
            self._occurrence(o)
        if self.scope.kind == "module":
            self._dunder_all()
        if self.kind == "parameter":
            self._keywords()
        if self.kind in ("method", "attribute"):
            self._members()
        if any(re.search(rf"\b{re.escape(self.old)}\b", text) for text in self.a.complex_annotations):
            raise RefactorError(f"{self.old} appears inside a string annotation: rename by hand")
        code, pos, out = self.a.code, 0, []
        for start in sorted(self.edits):
            end, text = self.edits[start]
            out += [code[pos:start], text]
            pos = end
        return "".join(out + [code[pos:]])

    def _edit(self, o: Occurrence, text: str | None = None):
        if o.start is None:
            raise RefactorError(f"Python misreports where {o.name} is in an f-string: rename by hand")
        self.edits[o.start] = (o.end, self.new if text is None else text)

    def _occurrence(self, o: Occurrence):
        if isinstance(o.node, ast.alias) and o.node.asname is None:
            if "." in o.node.name:
                raise RefactorError(f"{self.old} comes from a dotted import (import {o.node.name}): rename the "
                                    "import by hand")
            self._edit(o, f"{self.old} as {self.new}")  # `import old` -> `import old as new`
        else:
            self._edit(o)

    def _dunder_all(self):
        """The module's `__all__` names it as a string: that string is renamed too."""
        for el in self.a.exported:
            if el.value == self.old:
                start = self.a.offset(el.lineno, el.col_offset)
                if self.a.code[start + 1:start + 1 + len(self.old) + 1] != self.old + self.a.code[start]:
                    raise RefactorError(f"__all__ spells {self.old} in a way this rename does not follow")
                self.edits[start + 1] = (start + 1 + len(self.old), self.new)

    def _keywords(self):
        """A renamed parameter is renamed at the calls that pass it by keyword, when they can all be found."""
        fn = self.scope.node
        param = next(o.node for o in self.a.uses_of(self.scope, self.old) if isinstance(o.node, ast.arg))
        args = fn.args
        if param in args.posonlyargs or param is args.vararg or param is args.kwarg:
            return  # never passed by keyword
        by_keyword = [c for c in self.a.calls if any(k.arg == self.old for k in c.keywords)]
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in fn.decorator_list:  # @parametrize("old", ...), @click.option(... old=...): names as data
                if re.search(rf"\b{re.escape(self.old)}\b", ast.get_source_segment(self.a.code, deco) or ""):
                    raise RefactorError(f"a decorator of {fn.name} mentions {self.old}: rename by hand")
        if isinstance(fn, ast.Lambda) or self.scope.parent.kind == "class":
            if by_keyword:
                raise RefactorError(f"calls in the cell pass {self.old}= by keyword and cannot all be traced to "
                                    f"this {'lambda' if isinstance(fn, ast.Lambda) else 'method'}")
            return
        owner = self.scope.parent
        uses = self.a.uses_of(owner, fn.name)
        defs = [o for o in uses if o.binds]
        direct = [c for c in self.a.calls if isinstance(c.func, ast.Name) and self.a.occurrence_at(c.func) in uses]
        if len(defs) > 1 and any(c in by_keyword for c in direct):
            raise RefactorError(f"{fn.name} is defined more than once: cannot tell which call gets {self.old}=")
        for c in direct:
            if any(k.arg is None for k in c.keywords):
                raise RefactorError(f"a call to {fn.name} passes **keywords, which may hold {self.old}")
            for k in c.keywords:
                if k.arg == self.old:
                    self._edit(next(o for o in self.a.of(self.old, variable=False) if o.node is k))
        escapes = len(uses) - len(defs) > len(direct)  # passed around, aliased, decorated...
        if escapes and any(c not in direct for c in by_keyword):
            raise RefactorError(f"{fn.name} is used other than by calling it, and a call passes {self.old}= by "
                                "keyword: cannot tell whether that call reaches it")

    def _members(self):
        cls = self.scope.node
        if self.kind == "attribute" and (cls.decorator_list or cls.bases or cls.keywords):
            raise RefactorError(f"{cls.name} has decorators or base classes, which may read its attributes by "
                                "name (dataclass fields, enum members, ...): rename by hand")
        for att in self.a.of(self.old, variable=False):
            if not isinstance(att.node, ast.Attribute):
                continue
            if self._member_base(att.node) != "ours":
                source = ast.get_source_segment(self.a.code, att.node)
                raise RefactorError(f"cannot tell whether {source} is {cls.name}.{self.old}: rename it by hand")
            self._edit(att)

    def _member_base(self, att: ast.Attribute) -> str | None:
        """"ours" for `self.x`, `cls.x` or `Class.x` of the class being changed; "maybe" when the base is one
        of those among other things; None otherwise."""
        base = self.a.occurrence_at(att.value) if isinstance(att.value, ast.Name) else None
        if base is None:
            return None
        cls = self.scope.node
        if base.binding is self.scope.parent and base.name == cls.name:
            return "ours" if all(o.node is cls for o in self.a.uses_of(self.scope.parent, cls.name) if o.binds) \
                else "maybe"
        for method in self.scope.children:
            node = method.node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or any(
                    isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list):
                continue
            first = (node.args.posonlyargs + node.args.args)[:1]
            if first and base.binding is method and base.name == first[0].arg:
                return "ours"
        return None


def _chain(inner: Scope, outer: Scope) -> list[Scope]:
    """`inner` and its enclosing scopes, up to but not including `outer`."""
    out = []
    while inner is not None and inner is not outer:
        out.append(inner)
        inner = inner.parent
    return out


def _private(name: str) -> bool:
    return name.startswith("__") and not name.endswith("__")


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")
