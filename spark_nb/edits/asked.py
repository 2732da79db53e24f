"""Keep only the change an instruction asked for, where that change has known places: carried from the model's
answer onto the user's own cell.

    asked_change("add_type_hints", original, answer)  ->  the original with the answer's new hints, nothing else
    asked_change("add_docstrings", original, answer)  ->  the original with the answer's new docstrings
    asked_change("add_comments", original, answer)    ->  the original with the answer's new comments

Asked for type hints, docstrings or comments, models rewrite more than they were asked: Qwen2.5-Coder-1.5B added `import
pandas as pd` and a made-up `monthly = pd.read_csv(...)` above hinted code, swapped `collections.deque` for an
imported `deque`, reworded a docstring while hinting its function, wrapped a method in a class it invented (5 of
its 16 type-hint answers in one run). The guard refuses such an answer whole, and it should: the extra changes are
not what the user asked for. But the asked-for change is there and lives in places a program can find, so it is
carried over alone:

- type hints: a parameter's annotation and a def's return annotation, for each def the cell has (matched by its
  class and def names and its place among defs of the same name) whose parameters the answer kept, same names in
  the same order; only where the cell had none (a hint the cell has is the user's);
- docstrings: the first statement of a module, class or def body, where the cell's had none;
- with the hints, the answer's new top-level imports that bind only names the carried hints read and the cell
  does not bind (`from collections import deque` for `-> deque[str]`);
- comments: on the code lines the answer kept as they were (difflib's matching of code lines, comments aside), a
  comment at a line's end where the cell's line has none, and the comment lines just above such a line, at its
  indentation; never inside a string over several lines or after a backslash (Qwen2.5-Coder-0.5B rewrote a
  `plt.hist` call and invented a `total = sum(...)` line while commenting a plotting function: its comments on
  the lines it kept are carried, the rest is not).

Everything else stays as the user wrote it: code, defaults, comments, layout. The result is judged by the guard
like any answer (the hints' own check, names nothing defines), so a wrong hint is still refused. An answer none of
whose hints, docstrings or comments can be carried is left as it was, for the guard to judge.
"""
from __future__ import annotations

import ast
import difflib
import io
import tokenize
from collections import Counter

import libcst as cst

from .answer_imports import with_imports
from .checks import free_names, function_hints

__all__ = ["asked_change", "CARRIED", "CARRIED_WORDS"]


class _Keys:
    """Keys for the classes and defs of a module in visiting order: their names from the module down, and which
    occurrence of that path this is (two `def f` in one class: a property and its setter)."""

    def __init__(self):
        self.keys: list[tuple] = []  # (path, occurrence) of the classes and defs being visited, innermost last
        self.seen: Counter = Counter()

    def enter(self, name: str) -> tuple:
        path = (*self.keys[-1][0], name) if self.keys else (name,)
        self.seen[path] += 1
        self.keys.append((path, self.seen[path]))
        return self.keys[-1]

    def leave(self) -> tuple:
        return self.keys.pop()


def _docstring(body) -> cst.SimpleStatementLine | None:
    """The docstring statement a body starts with, if any."""
    statements = body.body if isinstance(body, (cst.IndentedBlock, cst.Module)) else ()
    if not statements or not isinstance(statements[0], cst.SimpleStatementLine):
        return None
    line = statements[0]
    if len(line.body) == 1 and isinstance(line.body[0], cst.Expr) and \
            isinstance(line.body[0].value, (cst.SimpleString, cst.ConcatenatedString)):
        return line
    return None


def _params(fn: cst.FunctionDef) -> list[cst.Param]:
    p = fn.params
    star = [p.star_arg] if isinstance(p.star_arg, cst.Param) else []
    kwargs = [p.star_kwarg] if p.star_kwarg is not None else []
    return [*p.posonly_params, *p.params, *star, *p.kwonly_params, *kwargs]


class _Collect(cst.CSTVisitor):
    """The answer's defs and classes by key: the def nodes, and every docstring statement (the module's too)."""

    def __init__(self):
        self.keys = _Keys()
        self.defs: dict = {}
        self.docstrings: dict = {}

    def visit_Module(self, node):
        self.docstrings[()] = _docstring(node)

    def visit_ClassDef(self, node):
        key = self.keys.enter("class " + node.name.value)
        self.docstrings[key] = _docstring(node.body)

    def leave_ClassDef(self, node):
        self.keys.leave()

    def visit_FunctionDef(self, node):
        key = self.keys.enter("def " + node.name.value)
        self.defs[key] = node
        self.docstrings[key] = _docstring(node.body)

    def leave_FunctionDef(self, node):
        self.keys.leave()


def _with_docstring(body, docstring: cst.SimpleStatementLine):
    """body with docstring as its first statement (a one-line suite becomes an indented block)."""
    if isinstance(body, cst.SimpleStatementSuite):
        line = cst.SimpleStatementLine(body=body.body, trailing_whitespace=body.trailing_whitespace)
        body = cst.IndentedBlock(body=[line])
    return body.with_changes(body=[docstring.with_changes(leading_lines=()), *body.body])


_SPACED_EQUAL = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" "))


class _Carry(cst.CSTTransformer):
    """The original, with what the answer added in the asked-for places."""

    def __init__(self, answer: _Collect, hints: bool, docstrings: bool):
        self.answer, self.hints, self.docs = answer, hints, docstrings
        self.keys = _Keys()
        self.carried = 0

    def _docstring_of(self, key, body):
        theirs = self.answer.docstrings.get(key)
        if not self.docs or theirs is None or _docstring(body) is not None:
            return body
        self.carried += 1
        return _with_docstring(body, theirs)

    def visit_ClassDef(self, node):
        self.keys.enter("class " + node.name.value)

    def leave_ClassDef(self, original, updated):
        key = self.keys.leave()
        return updated.with_changes(body=self._docstring_of(key, updated.body))

    def visit_FunctionDef(self, node):
        self.keys.enter("def " + node.name.value)

    def leave_FunctionDef(self, original, updated):
        key = self.keys.leave()
        theirs = self.answer.defs.get(key)
        if theirs is None:
            return updated
        if self.hints:
            updated = self._hinted(updated, theirs)
        return updated.with_changes(body=self._docstring_of(key, updated.body))

    def _hinted(self, ours: cst.FunctionDef, theirs: cst.FunctionDef) -> cst.FunctionDef:
        mine, their = _params(ours), _params(theirs)
        if [p.name.value for p in mine] != [p.name.value for p in their]:
            return ours  # the answer changed the signature: nothing of it is carried
        hinted = {}
        for p, q in zip(mine, their):
            if p.annotation is None and q.annotation is not None:
                # `n=5` hinted reads `n: int = 5` (PEP 8's spacing for a hinted default)
                equal = _SPACED_EQUAL if p.default is not None else p.equal
                hinted[id(p)] = p.with_changes(annotation=q.annotation, equal=equal)
        returns = ours.returns
        if returns is None and theirs.returns is not None:
            returns = theirs.returns
            self.carried += 1
        self.carried += len(hinted)
        if not hinted:
            return ours.with_changes(returns=returns)

        def swap(params):
            return [hinted.get(id(p), p) for p in params]

        old = ours.params
        star = hinted.get(id(old.star_arg), old.star_arg) if isinstance(old.star_arg, cst.Param) else old.star_arg
        kwargs = hinted.get(id(old.star_kwarg), old.star_kwarg) if old.star_kwarg is not None else None
        params = old.with_changes(posonly_params=swap(old.posonly_params), params=swap(old.params), star_arg=star,
                                  kwonly_params=swap(old.kwonly_params), star_kwarg=kwargs)
        return ours.with_changes(params=params, returns=returns)

    def leave_Module(self, original, updated):
        return self._docstring_of((), updated)


def _carried_by_libcst(original: str, answer: str, hints: bool, docstrings: bool) -> str | None:
    """The original with the answer's new hints or docstrings (None: nothing to carry)."""
    try:
        ours, theirs = cst.parse_module(original), cst.parse_module(answer)
    except (cst.ParserSyntaxError, RecursionError, MemoryError):
        return None
    collected = _Collect()
    theirs.visit(collected)
    carry = _Carry(collected, hints, docstrings)
    carried = ours.visit(carry)
    if not carry.carried:
        return None
    return _with_their_imports(original, carried.code, answer) if hints else carried.code


def _comments(code: str) -> tuple[list[tuple[str, str]], set[int]] | None:
    """Each line of code as (its code, its comment: the text from `#`, "" where it has none), and the lines a
    comment cannot go on or above (inside a string over several lines, or joined to the line before by a
    backslash); None when Python's tokenizer refuses the code."""
    lines = code.splitlines()
    comment, fixed = {}, set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.COMMENT:
                comment[tok.start[0] - 1] = tok.start[1]
            elif tok.start[0] < tok.end[0]:  # a string over several lines
                fixed.update(range(tok.start[0], tok.end[0]))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    fixed |= {i for i, line in enumerate(lines) if line.endswith("\\") or i and lines[i - 1].endswith("\\")}
    return [(line[:comment[i]].rstrip(), line[comment[i]:]) if i in comment else (line.rstrip(), "")
            for i, line in enumerate(lines)], fixed


def _carried_comments(original: str, answer: str) -> str | None:
    """The original with the answer's new comments on the lines whose code both have alike (difflib's matching of
    the code lines, comments aside): a comment at a line's end where the original's line has none, and the comment
    lines just above a matched line (nothing but comments between them) that the original has not there already,
    at that line's indentation. None: nothing to carry."""
    read = _comments(original), _comments(answer)
    if None in read:
        return None
    (ours, fixed), (theirs, _) = read
    mine = [i for i, (code, _) in enumerate(ours) if code.strip() and i not in fixed]
    their = [j for j, (code, _) in enumerate(theirs) if code.strip()]
    matcher = difflib.SequenceMatcher(None, [ours[i][0] for i in mine], [theirs[j][0] for j in their], autojunk=False)
    lines = original.splitlines()
    above: dict[int, list[str]] = {}
    for a, b, size in matcher.get_matching_blocks():
        for i, j in zip(mine[a : a + size], their[b : b + size]):
            if theirs[j][1] and not ours[i][1]:
                lines[i] = ours[i][0] + "  " + theirs[j][1]
            block, k = [], j - 1
            while k >= 0 and not theirs[k][0].strip() and theirs[k][1]:  # their comment lines right above
                block.insert(0, theirs[k][1])
                k -= 1
            had, k = set(), i - 1
            while k >= 0 and not ours[k][0].strip() and ours[k][1]:
                had.add(ours[k][1])
                k -= 1
            indent = ours[i][0][: len(ours[i][0]) - len(ours[i][0].lstrip())]
            above[i] = [indent + c for c in block if c not in had]
    carried = [new for i, line in enumerate(lines) for new in [*above.get(i, []), line]]
    if carried == original.splitlines():
        return None
    return "\n".join(carried) + ("\n" if original.endswith("\n") else "")


# what a family's carried change is called, for the verdict ("only its type hints taken")
CARRIED_WORDS = {"add_type_hints": "type hints", "add_docstrings": "docstrings", "add_comments": "comments"}
# the families whose change has places a program can find, and how it is carried
CARRIED = {"add_type_hints": lambda original, answer: _carried_by_libcst(original, answer, True, False),
           "add_docstrings": lambda original, answer: _carried_by_libcst(original, answer, False, True),
           "add_comments": _carried_comments}


def asked_change(family: str | None, original: str, answer: str) -> str:
    """The original with the answer's change in the family's places (CARRIED), or the answer as it was when the
    family has no such places, either text does not parse, or nothing could be carried."""
    carry = CARRIED.get(family)
    if carry is None or answer == original:
        return answer
    try:
        ast.parse(original), ast.parse(answer)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return answer
    carried = carry(original, answer)
    return answer if carried is None else carried


def _with_their_imports(original: str, carried: str, answer: str) -> str:
    """carried with the answer's new top-level imports that bind only names its hints read and nothing binds."""
    tree, theirs, ours = ast.parse(carried), ast.parse(answer), ast.parse(original)  # asked_change parsed them
    hints = [h for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for h, _ in function_hints(fn)]
    read = {n.id for h in hints for n in ast.walk(h) if isinstance(n, ast.Name)} & (free_names(carried) or set())
    had = {ast.dump(stmt) for stmt in ours.body}
    new = [ast.get_source_segment(answer, stmt) for stmt in theirs.body
           if isinstance(stmt, (ast.Import, ast.ImportFrom)) and ast.dump(stmt) not in had
           and {(a.asname or a.name).split(".")[0] for a in stmt.names} <= read]
    return with_imports(carried, new) if new else carried
