"""A loop that builds a collection <-> the comprehension that builds it, both ways, exactly.

    loop_to_comprehension(code)     out = []                        ->  out = [f(v) for v in data if v]
                                    for v in data:
                                        if v:
                                            out.append(f(v))
    comprehension_to_loop(code)     the other way

Lists (`x = []` / `list()`, `x.append(e)`), sets (`set()`, `x.add(e)`) and dicts (`{}` / `dict()`, `x[k] = v`), one
loop with its body only that one addition, optionally under one `if` without `else`. The cell must hold exactly
one such loop (one such comprehension assigned to a name as a statement): which one is meant is otherwise the
model's question. Only those lines change. A part over several lines keeps its lines and comments (moved as far as
its start moves; inside the brackets the layout is free), so `0x20202020` stays hex; other comments of those lines
move in front of the new statement. Each result is checked to parse to the expected tree, else it is written again
with parentheses, or with its parts unparsed onto one line.

Refused (RefactorError) where the other form would behave differently or the meaning check
(`train.families.modernise`) cannot confirm it: an `async for`, a loop `else`, `await`/`yield`/`:=`, a lambda or
a comprehension inside, a class body (a comprehension there does not see the class's names), the collection read
while it is built, a loop variable that is read after the loop (a comprehension does not leak it) or that the
loop version would overwrite (a name of the same scope or of another cell), several generators or conditions (no
single loop of this shape), a dict whose key and value both call something (a loop evaluates the value first).
"""
from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass

from .base import RefactorError
from .scopes import Analysis, Scope

_COMPS = {ast.ListComp: "list", ast.SetComp: "set", ast.DictComp: "dict"}
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)
_EMPTY = {"list": "[]", "set": "set()", "dict": "{}"}
_ONE_LINE = 100  # a longer comprehension is written over several lines, one part a line


@dataclass
class Build:
    """A collection built by a loop (`stmts` = the empty assignment and the loop) or a comprehension (`stmts` = its
    assignment): the parts both forms share."""
    name: str
    kind: str  # list | set | dict
    target: ast.expr
    iter: ast.expr
    conds: list[ast.expr]
    elt: ast.expr  # the item, or a dict's value
    key: ast.expr | None
    stmts: list[ast.stmt]
    loop: ast.AST  # the For/AsyncFor, or the comprehension node

    @property
    def parts(self) -> list[ast.expr]:
        return [self.target, self.iter, *self.conds, self.elt, *([self.key] if self.key is not None else [])]


# -- finding them --------------------------------------------------------------------------------------------------


def _bodies(tree):
    for node in ast.walk(tree):
        for fld in ("body", "orelse", "finalbody"):
            body = getattr(node, fld, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                yield body


def _empty_kind(value) -> str | None:
    if isinstance(value, ast.List) and not value.elts:
        return "list"
    if isinstance(value, ast.Dict) and not value.keys:
        return "dict"
    if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in _EMPTY
            and not value.args and not value.keywords):
        return value.func.id
    return None


def _assigned_name(stmt) -> str | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    return None


def _addition(stmt, x: str, kind: str):
    """(key, item) when `stmt` adds one item to `x`: x.append(e) / x.add(e) / x[k] = v."""
    if kind == "dict":
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Subscript)
                and isinstance(stmt.targets[0].value, ast.Name) and stmt.targets[0].value.id == x
                and not isinstance(stmt.targets[0].slice, ast.Slice)):
            return stmt.targets[0].slice, stmt.value
        return None
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
            and call.func.value.id == x and call.func.attr == ("append" if kind == "list" else "add")
            and len(call.args) == 1 and not call.keywords and not isinstance(call.args[0], ast.Starred)):
        return None, call.args[0]
    return None


def append_loops(tree) -> list[Build]:
    """Every `x = <empty>` directly followed by a loop whose body only adds one item to x (under one `if`)."""
    found = []
    for body in _bodies(tree):
        for assign, loop in zip(body, body[1:]):
            x = _assigned_name(assign)
            kind = _empty_kind(assign.value) if x else None
            if kind is None or not isinstance(loop, (ast.For, ast.AsyncFor)) or len(loop.body) != 1:
                continue
            stmt, conds = loop.body[0], []
            if isinstance(stmt, ast.If) and not stmt.orelse and len(stmt.body) == 1:
                stmt, conds = stmt.body[0], [stmt.test]
            added = _addition(stmt, x, kind)
            if added is not None:
                found.append(Build(x, kind, loop.target, loop.iter, conds, added[1], added[0], [assign, loop], loop))
    return found


def assigned_comprehensions(tree) -> list[Build]:
    """Every statement `x = <list, set or dict comprehension>`."""
    found = []
    for node in ast.walk(tree):
        x = _assigned_name(node)
        comp = node.value if x else None
        if type(comp) in _COMPS:
            gen = comp.generators[0]
            elt = comp.value if isinstance(comp, ast.DictComp) else comp.elt
            found.append(Build(x, _COMPS[type(comp)], gen.target, gen.iter, list(gen.ifs), elt,
                               getattr(comp, "key", None), [node], comp))
    return found


def count(code: str, what: str) -> int:
    """How many loops (what="loops") or assigned comprehensions ("comprehensions") the cell holds; 0 when it does
    not parse. The router routes only a cell with exactly one."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0
    return len(append_loops(tree) if what == "loops" else assigned_comprehensions(tree))


def kinds(code: str, what: str) -> set[str]:
    """The kinds (list, set, dict) of what `count` counts."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    return {b.kind for b in (append_loops(tree) if what == "loops" else assigned_comprehensions(tree))}


def _the_one(builds: list[Build], what: str, whats: str) -> Build:
    if not builds:
        raise RefactorError(f"the cell has no {what}")
    if len(builds) > 1:
        lines = ", ".join(str(b.stmts[0].lineno) for b in builds)
        raise RefactorError(f"the cell has {len(builds)} {whats} (lines {lines}): say which one")
    return builds[0]


# -- what would change behaviour -------------------------------------------------------------------------------


def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _common_refusals(b: Build, analysis: Analysis) -> Scope:
    """Refusals both directions share; the scope the statements run in."""
    scope = analysis.occurrence_at(b.stmts[0].targets[0]).scope
    if scope.kind == "class":
        raise RefactorError("it is in a class body, where a comprehension does not see the class's names")
    for part in b.parts:
        for node in ast.walk(part):
            if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
                what = {ast.Await: "await", ast.NamedExpr: "an assignment expression (:=)"}.get(type(node), "yield")
                raise RefactorError(f"it holds {what}, which a comprehension evaluates in another scope")
            if isinstance(node, _SCOPES):
                raise RefactorError("it holds a lambda or another comprehension: the meaning check cannot "
                                    "compare those, so this is the model's")
    if any(b.name in _names(part) for part in b.parts):
        raise RefactorError(f"{b.name} is read while it is built")
    if b.key is not None and any(isinstance(n, ast.Call) for n in ast.walk(b.key)) and \
            any(isinstance(n, ast.Call) for n in ast.walk(b.elt)):
        raise RefactorError("the key and the value both call something: a loop evaluates the value first, a dict "
                            "comprehension the key")
    if not all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Starred, ast.expr_context))
               for n in ast.walk(b.target)):
        raise RefactorError("the loop assigns to an attribute or an item, not to plain names")
    return scope


def _loop_variables(b: Build) -> list[str]:
    return [n.id for n in ast.walk(b.target) if isinstance(n, ast.Name)]


def _observer(name: str, analysis: Analysis, scope: Scope, start: int, end: int):
    """The first occurrence of `name` outside [start, end) that would see or change what a loop variable `name` of
    `scope` holds once the statements there are a loop (or stop being one), or None. Harmless: a variable of a
    function or comprehension nested in `scope`, a plain assignment, a read before the loop (not inside an outer
    loop) or in the body of another loop that binds the name first."""
    aug = {id(n.target) for n in ast.walk(scope.node) if isinstance(n, ast.AugAssign)}  # x += 1 reads x too
    for o in analysis.occurrences:
        if not o.variable or o.name != name or o.start is not None and start <= o.start < end:
            continue
        if not (o.scope is scope or scope in o.scope.ancestors()):
            continue  # another function's
        if o.binding is not None and o.binding is not scope and scope in o.binding.ancestors():
            continue  # a variable of a nested function or comprehension
        if o.binding is not scope:
            return o  # a global or an outer function's: the loop version would bind it here
        if o.binds and id(o.node) not in aug:
            continue
        if not _harmless_read(o, analysis, scope, start, name):
            return o
    return None


# -- the text ----------------------------------------------------------------------------------------------------


class _Source:
    def __init__(self, code: str, analysis: Analysis):
        self.code, self.a = code, analysis
        self.lines = code.splitlines(keepends=True)
        self.verbatim = True  # pieces over several lines as written (False: unparsed)
        self.base = ""  # the indentation of the statement being replaced
        self.kept: list[tuple[int, int]] = []  # the spans of pieces over several lines kept as written

    def span(self, node) -> tuple[int, int]:
        return self.a.offset(node.lineno, node.col_offset), self.a.offset(node.end_lineno, node.end_col_offset)

    def piece(self, node, parens: bool = False, at: int = 0) -> str:
        """The expression as written, in parentheses if asked and it has none. One over several lines keeps its
        lines and comments where `verbatim`, its continuation lines moved as far as its start moves (`at`: the
        column it starts at in the new statement, less the statement's indentation); else it is unparsed onto one
        line and its comments move in front of the statement."""
        a, b = self.span(node)
        text = self.code[a:b]
        parens = parens and not _parenthesised(text)
        if "\n" in text and self.verbatim:
            self.kept.append((a, b))
            shift = at + parens - (a - self.a.offset(node.lineno, 0))  # new column less the old one
            first, *rest = text.split("\n")
            text = "\n".join([first, *(_shift(line, shift) for line in rest)])
        elif "\n" in text:
            text = ast.unparse(node)
        return f"({text})" if parens else text

    def target(self, node) -> str:
        """A loop's or comprehension's target, a tuple without its parentheses (`for k, v in ...`)."""
        text = self.piece(node)
        return text[1:-1] if isinstance(node, ast.Tuple) and _parenthesised(text) else text

    def lines_of(self, stmts) -> tuple[int, int]:
        """Offsets of the whole lines the statements take; a RefactorError where they share a line with others."""
        first, last = stmts[0], stmts[-1]
        a, _ = self.span(first)
        _, b = self.span(last)
        start = self.a.offset(first.lineno, 0)
        end = self.a.offset(last.end_lineno + 1, 0) if last.end_lineno < len(self.lines) else len(self.code)
        if self.code[start:a].strip() or self.code[b:end].strip() and not self.code[b:end].strip().startswith("#"):
            raise RefactorError(f"line {first.lineno} holds other statements too")
        return start, end

    def comments(self, start: int, end: int) -> list[str]:
        """The comments between two offsets, in order, but those inside pieces kept as written."""
        first = self.code.count("\n", 0, start) + 1
        last = self.code.count("\n", 0, end) + (0 if end and self.code[end - 1] == "\n" else 1)
        text = "".join(self.lines[first - 1:last])
        try:
            found = [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT]
        except (tokenize.TokenError, IndentationError, SyntaxError):
            raise RefactorError("cannot read the comments of those lines") from None
        at = self.a.offset(first, 0)
        return [t.string for t in found
                if not any(a <= at + len("".join(text.splitlines(keepends=True)[:t.start[0] - 1])) + t.start[1] < b
                           for a, b in self.kept)]

    def indent(self, node) -> str:
        line = self.lines[node.lineno - 1]
        return line[:len(line) - len(line.lstrip())]

    def unit(self) -> str:
        """One level of indentation as the cell writes it (its first indented block), else four spaces."""
        try:
            for t in tokenize.generate_tokens(io.StringIO(self.code).readline):
                if t.type == tokenize.INDENT:
                    return t.string
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass
        return "    "


def _replace(src: _Source, b: Build, new: str, expected: list[ast.stmt]) -> str:
    """The cell with b's lines replaced by `new` (indented, comments in front), checked to parse to `expected`."""
    start, end = src.lines_of(b.stmts)
    ind = src.indent(b.stmts[0])
    head = "".join(f"{ind}{c}\n" for c in src.comments(start, end))
    try:
        got = ast.parse(new).body
    except SyntaxError:
        got = None
    if got is None or [ast.dump(s) for s in got] != [ast.dump(s) for s in expected]:
        raise RefactorError("cannot write it so that it parses back to the same code")
    body = "".join(ind + line if line.strip() else line for line in new.splitlines(keepends=True))
    tail = "" if end == len(src.code) and not src.code.endswith("\n") else "\n"
    return src.code[:start] + head + body.rstrip("\n") + tail + src.code[end:]


def _shift(line: str, by: int) -> str:
    """`line` moved right by `by` columns (left: as far as it has leading spaces)."""
    if by >= 0:
        return " " * by + line if line.strip() else line
    n = 0
    while n < -by and n < len(line) and line[n] == " ":
        n += 1
    return line[n:]


def _parenthesised(text: str) -> bool:
    """Whether the brackets that open the text close at its end."""
    if not text.startswith("("):
        return False
    depth = 0
    for i, char in enumerate(text):  # a string holding a bracket only makes this say False: then one more pair
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i == len(text) - 1
    return False


# -- loop -> comprehension ---------------------------------------------------------------------------------------


def loop_to_comprehension(code: str, *, used_elsewhere: Iterable[str] = ()) -> str:
    """The cell's one loop that builds a list, set or dict as a comprehension, or a RefactorError (see the module
    docstring). used_elsewhere: names other cells read (a module-level loop variable they read must stay)."""
    analysis = Analysis(code)
    b = _the_one(append_loops(analysis.tree), "loop that builds a list, set or dict",
                 "loops that build a list, set or dict")
    loop = b.loop
    if isinstance(loop, ast.AsyncFor):
        raise RefactorError("it is an async for loop")
    if loop.orelse:
        raise RefactorError("the loop has an else clause")
    scope = _common_refusals(b, analysis)
    src = _Source(code, analysis)
    lo, hi = src.span(loop)
    for name in _loop_variables(b):
        if scope.parent is None and name in set(used_elsewhere):
            raise RefactorError(f"another cell reads the loop variable {name}")
        seen = _observer(name, analysis, scope, lo, hi)
        if seen is not None:
            raise RefactorError(f"the loop variable {name} is used outside the loop (line {seen.node.lineno}), "
                                "and a comprehension would not set it")
    opening, closing = ("[", "]") if b.kind == "list" else ("{", "}")
    src.base, unit = src.indent(b.stmts[0]), src.unit()  # the parts start one level in, after their keyword
    gen = ast.comprehension(target=b.target, iter=b.iter, ifs=b.conds, is_async=0)
    comp = (ast.DictComp(key=b.key, value=b.elt, generators=[gen]) if b.kind == "dict" else
            (ast.ListComp if b.kind == "list" else ast.SetComp)(elt=b.elt, generators=[gen]))
    expected = [ast.Assign(targets=[ast.Name(id=b.name, ctx=ast.Store())], value=comp, type_comment=None)]

    def write(careful: bool) -> str:
        def wrap(node, at, bare=_BARE_IN_FOR):
            return src.piece(node, _needs_parens(node, bare, careful), len(unit) + at)
        if b.key is not None:
            key = wrap(b.key, 0, ())
            item = f"{key}: {wrap(b.elt, len(key.rsplit(chr(10), 1)[-1]) + 2, ())}"
        else:
            item = wrap(b.elt, 0, ())
        target = src.target(b.target)
        parts = [item, f"for {target} in {wrap(b.iter, len(f'for {target} in '))}",
                 *(f"if {wrap(c, 3)}" for c in b.conds)]
        new = f"{b.name} = {opening}{' '.join(parts)}{closing}\n"
        if len(src.base + new) > _ONE_LINE or "\n" in new[:-1]:
            new = f"{b.name} = {opening}\n" + "".join(f"{unit}{p}\n" for p in parts) + f"{closing}\n"
        return new

    return _rewrite(src, b, expected, write)


def _rewrite(src: _Source, b: Build, expected: list[ast.stmt], write) -> str:
    """The cell with b's lines replaced by the first text `write(careful)` makes that parses back to `expected`:
    parts over several lines as written, then unparsed; each with the parentheses a position needs
    (careful=False), then around all but atoms."""
    for src.verbatim, careful in ((True, False), (True, True), (False, False), (False, True)):
        src.kept = []
        try:
            return _replace(src, b, write(careful), expected)
        except RefactorError as err:
            error = err
    raise error


_ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant, ast.List, ast.Dict, ast.Set,
          ast.JoinedStr)
_BARE_IN_FOR = (ast.IfExp, ast.Lambda, ast.NamedExpr, ast.Yield, ast.YieldFrom)  # a comprehension's `in` and
#                                                                                   `if` take neither of these bare


def _needs_parens(node, bare, careful: bool) -> bool:
    if careful:
        return not isinstance(node, _ATOMS)
    return isinstance(node, bare) or isinstance(node, (ast.Tuple, ast.Starred))


def _harmless_read(o, analysis: Analysis, scope: Scope, loop_start: int, name: str) -> bool:
    """A read of the loop variable outside the loop that cannot see the value the loop leaves: in the same scope,
    before the loop and not inside another loop, or in the body of another loop that binds it first."""
    if o.scope is not scope or o.start is None:
        return False
    for node in ast.walk(scope.node):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)) and node.body:
            a = analysis.offset(node.body[0].lineno, node.body[0].col_offset)
            b = analysis.offset(node.end_lineno, node.end_col_offset)
            if a <= o.start < b and isinstance(node, (ast.For, ast.AsyncFor)) and name in _names(node.target):
                return True  # that loop binds it before its body reads it
            if analysis.offset(node.lineno, node.col_offset) < loop_start < b and o.start < loop_start:
                return False  # the loop runs again after the read: the next read sees the leaked value
    return o.start < loop_start


# -- comprehension -> loop ---------------------------------------------------------------------------------------


def comprehension_to_loop(code: str, *, used_elsewhere: Iterable[str] = (),
                          defined_elsewhere: Iterable[str] = ()) -> str:
    """The cell's one comprehension assigned to a name as an explicit loop, or a RefactorError (see the module
    docstring). used_elsewhere / defined_elsewhere: names other cells read or define, which a module-level loop
    variable must not overwrite."""
    analysis = Analysis(code)
    b = _the_one(assigned_comprehensions(analysis.tree), "comprehension assigned to a name",
                 "comprehensions assigned to names")
    comp = b.loop
    if len(comp.generators) > 1 or len(b.conds) > 1:
        raise RefactorError("the comprehension has several for or if clauses: the meaning check compares one "
                            "loop with at most one if, so this is the model's")
    if comp.generators[0].is_async:
        raise RefactorError("it is an async comprehension")
    scope = _common_refusals(b, analysis)
    elsewhere = set(used_elsewhere) | set(defined_elsewhere)
    lo, hi = _Source(code, analysis).span(b.stmts[0])
    for name in _loop_variables(b):
        seen = _observer(name, analysis, scope, lo, hi)
        if name == b.name or seen is not None:
            where = f" (line {seen.node.lineno})" if seen is not None else ""
            raise RefactorError(f"{name} is also used outside the comprehension{where}: the loop would set it")
        if scope.parent is None and name in elsewhere:
            raise RefactorError(f"another cell uses {name}: the loop would overwrite it")
    if b.kind == "set" and any(o.name == "set" and o.binds for o in analysis.occurrences):
        raise RefactorError("set is rebound in the cell, so set() would not make an empty set")
    src = _Source(code, analysis)
    unit, src.base = src.unit(), src.indent(b.stmts[0])
    if b.key is not None:
        stmt = ast.Assign(targets=[ast.Subscript(value=ast.Name(id=b.name, ctx=ast.Load()), slice=b.key,
                                                 ctx=ast.Store())], value=b.elt, type_comment=None)
    else:
        method = "append" if b.kind == "list" else "add"
        stmt = ast.Expr(value=ast.Call(func=ast.Attribute(value=ast.Name(id=b.name, ctx=ast.Load()), attr=method,
                                                          ctx=ast.Load()), args=[b.elt], keywords=[]))
    body = [ast.If(test=b.conds[0], body=[stmt], orelse=[])] if b.conds else [stmt]
    empty = ast.parse(_EMPTY[b.kind], mode="eval").body
    expected = [ast.Assign(targets=[ast.Name(id=b.name, ctx=ast.Store())], value=empty, type_comment=None),
                ast.For(target=b.target, iter=b.iter, body=body, orelse=[], type_comment=None)]
    def write(careful: bool) -> str:
        def wrap(node, at):
            return src.piece(node, careful and not isinstance(node, _ATOMS), at)
        inner = len(unit) * (2 if b.conds else 1)  # where the addition's line starts
        if b.key is not None:
            key = wrap(b.key, inner + len(b.name) + 1)
            add = f"{b.name}[{key}] = {wrap(b.elt, inner + len(f'{b.name}[{key}] = '.rsplit(chr(10), 1)[-1]))}"
        else:
            add = f"{b.name}.{method}({wrap(b.elt, inner + len(f'{b.name}.{method}('))})"
        target = src.target(b.target)
        new = f"{b.name} = {_EMPTY[b.kind]}\nfor {target} in {wrap(b.iter, len(f'for {target} in '))}:\n"
        return new + (f"{unit}if {wrap(b.conds[0], len(unit) + 3)}:\n{unit}{unit}{add}\n" if b.conds
                      else f"{unit}{add}\n")

    return _rewrite(src, b, expected, write)
