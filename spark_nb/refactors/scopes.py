"""Which variable every name in a cell refers to, as the compiler resolves it.

`ast` says where the names are; the compiler's own symbol tables (`symtable`) say what each one means in its scope
(local, global, free), so the subtle cases come out as Python has them: comprehension scopes and their first
iterable, class bodies that methods do not see, `global`/`nonlocal`, an assignment expression in a comprehension,
match captures. Both are C code: a 50-line cell is analysed in about a millisecond (libcst's ScopeProvider took
25 ms and places neither of the last two).

Every occurrence carries its span in the source (character offsets), checked to read exactly the name, so a
refactor can rewrite those spans and leave every other character as it was.
"""
from __future__ import annotations

import ast
import io
import symtable
import tokenize
import warnings
from dataclasses import dataclass, field
from functools import cached_property

from .base import RefactorError, check_parses

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(eq=False)
class Scope:
    """One symbol table: the module, a function, a lambda, a class body or a comprehension."""
    table: symtable.SymbolTable
    node: ast.AST
    parent: Scope | None
    children: list[Scope] = field(default_factory=list)

    @property
    def kind(self) -> str:
        if isinstance(self.node, ast.Module):
            return "module"
        if isinstance(self.node, ast.ClassDef):
            return "class"
        if isinstance(self.node, ast.Lambda):
            return "lambda"
        return "comprehension" if isinstance(self.node, _COMPREHENSIONS) else "function"

    @property
    def name(self) -> str | None:
        return getattr(self.node, "name", None)

    def ancestors(self):
        scope = self.parent
        while scope is not None:
            yield scope
            scope = scope.parent

    def sees(self, other: Scope) -> bool:
        """Whether a name looked up here may find a variable of `other` (itself, or an enclosing non-class)."""
        return other is self or other.kind != "class" and other in self.ancestors()

    def __repr__(self):
        return f"<{self.kind} {self.name or ''}>"


@dataclass(eq=False)
class Occurrence:
    """A name in the source: a variable's binding or use, a declaration, or (`variable` False) an attribute,
    a keyword argument, an import's module path."""
    name: str
    start: int | None  # character offsets of the name itself (None: Python misreports where it is)
    end: int | None
    scope: Scope  # where it occurs
    binding: Scope | None  # whose variable it is: the module for globals and builtins alike, None for a free
    #                        name no enclosing function binds
    binds: bool  # assigns it (store, parameter, def, class, import, except-as, for, with-as); a `del` reads it
    node: ast.AST  # the ast node it belongs to (Name, arg, FunctionDef, ClassDef, alias, Attribute, keyword, ...)
    variable: bool = True


class Analysis:
    """The cell's scopes and every occurrence of every name (see the module docstring)."""

    def __init__(self, code: str):
        self.code = code
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes and the like are the cell's business
                self.tree = ast.parse(code)
                table = symtable.symtable(code, "<cell>", "exec")
        except (SyntaxError, ValueError) as err:
            check_parses(code)  # the RefactorError that says where, when the parser refuses it
            raise RefactorError(f"the cell is not valid Python: {err}") from None  # e.g. nonlocal at the top
        self._offsets = _LineOffsets(code)
        self._tokens: list[tokenize.TokenInfo] | None = None
        self.module = Scope(table, self.tree, None)
        self.occurrences: list[Occurrence] = []
        self.captured: set[str] = set()  # names bound by match patterns (refactors leave those alone)
        self.complex_annotations: list[str] = []  # string annotations that are more than a name
        self.calls: list[ast.Call] = []
        self.exported: list[ast.Constant] = []  # the strings given to __all__ (=, +=, .extend, .append)
        self.imports: list[tuple[ast.stmt, Scope, bool]] = []  # (Import/ImportFrom, scope, inside a try)
        _Walker(self).module()

    # -- queries ---------------------------------------------------------------------------------------------

    def scopes(self):
        todo = [self.module]
        while todo:
            scope = todo.pop()
            yield scope
            todo.extend(scope.children)

    def of(self, name: str, *, variable: bool = True) -> list[Occurrence]:
        return [o for o in self.occurrences if o.name == name and o.variable == variable]

    def uses_of(self, scope: Scope, name: str) -> list[Occurrence]:
        return [o for o in self.occurrences if o.name == name and o.variable and o.binding is scope]

    def bound_in(self, scope: Scope, name: str) -> bool:
        return any(o.binds for o in self.uses_of(scope, name))

    def occurrence_at(self, node: ast.AST) -> Occurrence | None:
        return self._by_node.get(id(node))

    @cached_property
    def _by_node(self) -> dict[int, Occurrence]:
        return {id(o.node): o for o in self.occurrences if o.variable}

    # -- positions -------------------------------------------------------------------------------------------

    def span(self, node: ast.AST, name: str) -> tuple[int | None, int | None]:
        """The span of `name` at the start of `node` (a Name, an arg, a keyword)."""
        start = self._offsets.at(node.lineno, node.col_offset)
        return self._checked(start, name)

    def span_before_end(self, node: ast.AST, name: str) -> tuple[int | None, int | None]:
        """The span of `name` at the end of `node` (an Attribute's attr)."""
        end = self._offsets.at(node.end_lineno, node.end_col_offset)
        return self._checked(end - len(name), name)

    def token_spans(self, node: ast.AST, names, after=None) -> list[tuple[str, int, int]]:
        """(name, start, end) of the NAME tokens spelling one of `names` inside `node` (after offset `after`)."""
        lo = self._offsets.at(node.lineno, node.col_offset) if after is None else after
        hi = self._offsets.at(node.end_lineno, node.end_col_offset)
        out = []
        for tok in self.tokens:
            if tok.type == tokenize.NAME and tok.string in names:
                start = self._offsets.at_char(*tok.start)
                if lo <= start < hi:
                    out.append((tok.string, start, start + len(tok.string)))
        return out

    @property
    def tokens(self) -> list[tokenize.TokenInfo]:
        if self._tokens is None:
            self._tokens = list(tokenize.generate_tokens(io.StringIO(self.code).readline))
        return self._tokens

    def offset(self, lineno: int, col_offset: int) -> int:
        return self._offsets.at(lineno, col_offset)

    def _checked(self, start: int, name: str) -> tuple[int | None, int | None]:
        if self.code[start:start + len(name)] != name:
            return None, None  # Python 3.11 can misplace names inside some f-strings: a refactor must not edit it
        return start, start + len(name)


class _LineOffsets:
    """ast columns are UTF-8 byte offsets within a line; tokenize's are characters: both to string offsets."""

    def __init__(self, code: str):
        self.lines = code.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def at(self, lineno: int, col_offset: int) -> int:
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:col_offset].decode("utf-8", "replace"))

    def at_char(self, row: int, col: int) -> int:
        return self.starts[row - 1] + col if row - 1 < len(self.starts) else self.starts[-1]


class _Walker:
    """Visits the tree scope by scope, in the scope where Python evaluates each part (defaults, decorators,
    annotations, bases and a comprehension's first iterable belong to the enclosing scope)."""

    def __init__(self, analysis: Analysis):
        self.a = analysis
        self.try_depth = 0

    def module(self):
        self.body(self.a.tree.body, self.a.module)

    def _child(self, node: ast.AST, parent: Scope, name: str) -> Scope:
        """The symbol table the compiler made for `node`: among its parent's, the next one of that name and line."""
        taken = {id(c.table) for c in parent.children}
        table = next((t for t in parent.table.get_children() if id(t) not in taken and t.get_name() == name
                      and t.get_lineno() == node.lineno), None)
        if table is None:
            raise RefactorError(f"cannot match the scope of {name} on line {node.lineno} to the compiler's tables")
        scope = Scope(table, node, parent)
        parent.children.append(scope)
        return scope

    # -- statements and expressions --------------------------------------------------------------------------

    def body(self, stmts, scope):
        for stmt in stmts:
            self.visit(stmt, scope)

    def visit(self, node, scope):
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is not None:
            method(node, scope)
        else:
            self.generic(node, scope)

    def generic(self, node, scope):
        for child in ast.iter_child_nodes(node):
            self.visit(child, scope)

    def visit_Name(self, node, scope):
        self.add(node.id, *self.a.span(node, node.id), scope, node, isinstance(node.ctx, ast.Store))

    def visit_FunctionDef(self, node, scope):  # in the compiler's order, which matches same-line lambdas up
        self.arguments_outside(node.args, scope)
        if node.returns is not None:
            self.annotation(node.returns, scope)
        for deco in node.decorator_list:
            self.visit(deco, scope)
        self.add_token(node, node.name, scope, after=self.a.offset(node.lineno, node.col_offset))
        inner = self._child(node, scope, node.name)
        self.arguments_inside(node.args, inner)
        self.body(node.body, inner)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node, scope):
        self.arguments_outside(node.args, scope)
        inner = self._child(node, scope, "lambda")
        self.arguments_inside(node.args, inner)
        self.visit(node.body, inner)

    def visit_ClassDef(self, node, scope):
        for part in (*node.bases, *node.keywords, *node.decorator_list):
            self.visit(part, scope)
        self.add_token(node, node.name, scope, after=self.a.offset(node.lineno, node.col_offset))
        self.body(node.body, self._child(node, scope, node.name))

    def visit_ListComp(self, node, scope):
        first, *rest = node.generators
        self.visit(first.iter, scope)  # evaluated where the comprehension stands
        name = {ast.ListComp: "listcomp", ast.SetComp: "setcomp", ast.DictComp: "dictcomp",
                ast.GeneratorExp: "genexpr"}[type(node)]
        inner = self._child(node, scope, name)
        self.visit(first.target, inner)
        for cond in first.ifs:
            self.visit(cond, inner)
        for gen in rest:
            self.generic(gen, inner)
        for part in ("elt", "key", "value"):
            if hasattr(node, part):
                self.visit(getattr(node, part), inner)

    visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ListComp

    def arguments_outside(self, args: ast.arguments, scope):
        for default in (*args.defaults, *(d for d in args.kw_defaults if d is not None)):
            self.visit(default, scope)
        for arg in self.all_args(args):
            if arg.annotation is not None:
                self.annotation(arg.annotation, scope)

    def arguments_inside(self, args: ast.arguments, scope):
        for arg in self.all_args(args):
            self.add(arg.arg, *self.a.span(arg, arg.arg), scope, arg, True)

    @staticmethod
    def all_args(args: ast.arguments):
        return [*args.posonlyargs, *args.args, *([args.vararg] if args.vararg else []), *args.kwonlyargs,
                *([args.kwarg] if args.kwarg else [])]

    def annotation(self, node, scope):
        """An annotation, where a string that is just a name counts as a use of that name."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value.strip()
            source = ast.get_source_segment(self.a.code, node) or ""
            if name.isidentifier() and source[1:-1].strip() == name and source[0] in "'\"" and source[-1] == source[0]:
                start = self.a.offset(node.lineno, node.col_offset) + 1 + source[1:-1].index(name)
                self.add(name, start, start + len(name), scope, node, False)
            else:
                self.a.complex_annotations.append(node.value)
            return
        self.visit(node, scope)

    def visit_AnnAssign(self, node, scope):
        if isinstance(node.target, ast.Name) and node.target.id == "__all__":
            self._exported([node.value])
        self.visit(node.target, scope)
        self.annotation(node.annotation, scope)
        if node.value is not None:
            self.visit(node.value, scope)

    def visit_Attribute(self, node, scope):
        self.visit(node.value, scope)
        self.add(node.attr, *self.a.span_before_end(node, node.attr), scope, node, False, variable=False)

    def visit_keyword(self, node, scope):
        if node.arg is not None:
            self.add(node.arg, *self.a.span(node, node.arg), scope, node, False, variable=False)
        self.visit(node.value, scope)

    def visit_Call(self, node, scope):
        self.a.calls.append(node)
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "__all__":
            self._exported(node.args)
        self.generic(node, scope)

    def visit_Assign(self, node, scope):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            self._exported([node.value])
        self.generic(node, scope)

    visit_AugAssign = visit_Assign

    def _exported(self, values):
        self.a.exported += [c for v in values if v is not None for c in ast.walk(v)
                            if isinstance(c, ast.Constant) and isinstance(c.value, str)]

    def visit_Global(self, node, scope):
        for name, start, end in self.a.token_spans(node, set(node.names)):
            self.add(name, start, end, scope, node, False)

    visit_Nonlocal = visit_Global

    def visit_Import(self, node, scope):
        self.a.imports.append((node, scope, self.try_depth > 0))
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            spans = self.a.token_spans(alias, set(alias.name.split(".")) | {alias.asname})
            *path, last = spans
            if alias.asname:
                self.add(bound, last[1], last[2], scope, alias, True)
                spans = path
            else:
                self.add(bound, spans[0][1], spans[0][2], scope, alias, True)
                spans = spans[1:]
            for name, start, end in spans:  # the module path beyond the bound name: not a variable
                self.add(name, start, end, scope, alias, False, variable=False)

    def visit_ImportFrom(self, node, scope):
        self.a.imports.append((node, scope, self.try_depth > 0))
        module_end = node.names[0].col_offset if node.names else None
        if node.module:
            head = ast.Module(body=[], type_ignores=[])  # the module path's span: from `from` to the first alias
            head.lineno, head.col_offset = node.lineno, node.col_offset
            head.end_lineno, head.end_col_offset = node.names[0].lineno, module_end
            for name, start, end in self.a.token_spans(head, set(node.module.split("."))):
                self.add(name, start, end, scope, node, False, variable=False)
        for alias in node.names:
            if alias.name == "*":
                continue
            spans = self.a.token_spans(alias, {alias.name, alias.asname})
            if alias.asname:
                self.add(alias.name, spans[0][1], spans[0][2], scope, alias, False, variable=False)
            self.add(alias.asname or alias.name, spans[-1][1], spans[-1][2], scope, alias, True)

    def visit_Try(self, node, scope):
        self.try_depth += 1
        self.generic(node, scope)
        self.try_depth -= 1

    visit_TryStar = visit_Try

    def visit_ExceptHandler(self, node, scope):
        if node.type is not None:
            self.visit(node.type, scope)
        if node.name:
            after = self.a.offset(node.type.end_lineno, node.type.end_col_offset)
            name, start, end = next(s for s in self.a.token_spans(node, {node.name}, after=after))
            self.add(name, start, end, scope, node, True)
        self.body(node.body, scope)

    def visit_MatchAs(self, node, scope):
        self._captured(node.name)
        self.generic(node, scope)

    def visit_MatchStar(self, node, scope):
        self._captured(node.name)

    def visit_MatchMapping(self, node, scope):
        self._captured(node.rest)
        self.generic(node, scope)

    def visit_MatchClass(self, node, scope):
        self.visit(node.cls, scope)
        for pattern in (*node.patterns, *node.kwd_patterns):
            self.visit(pattern, scope)

    def _captured(self, name):
        if name:
            self.a.captured.add(name)

    # -- recording ---------------------------------------------------------------------------------------------

    def add_token(self, node, name, scope, after):
        _, start, end = next(s for s in self.a.token_spans(node, {name}, after=after))
        self.add(name, start, end, scope, node, True)

    def add(self, name, start, end, scope, node, binds, variable=True):
        binding = _resolve(name, scope) if variable else None
        self.a.occurrences.append(Occurrence(name, start, end, scope, binding, binds, node, variable))


def _mangled(name: str, scope: Scope) -> str:
    """`__x` as the compiler spells it inside class C: `_C__x` (private names)."""
    if not name.startswith("__") or name.endswith("__"):
        return name
    cls = next((s for s in (scope, *scope.ancestors()) if s.kind == "class"), None)
    return f"_{cls.name.lstrip('_')}{name}" if cls is not None and cls.name.strip("_") else name


def _resolve(name: str, scope: Scope) -> Scope | None:
    """The scope whose variable `name` is, looked up from `scope` as the compiler does.

    Symbol.is_global() is not asked: in Python 3.11 it takes any table named "top" (a function called top) for
    the module; the checks below read only what that bug leaves right."""
    name = _mangled(name, scope)
    module = scope
    while module.parent is not None:
        module = module.parent
    try:
        symbol = scope.table.lookup(name)
    except KeyError:  # a name only a string annotation mentions: looked up like a global
        return module
    if scope is module or symbol.is_declared_global():
        return module
    if symbol.is_free():  # nonlocal, or read from an enclosing function
        for outer in scope.ancestors():
            if outer.kind in ("class", "module"):
                continue
            try:
                if outer.table.lookup(name).is_local():
                    return outer
            except KeyError:
                continue
        return None
    return scope if symbol.is_local() else module
