"""Extract a literal number into a named module-level constant, exactly.

    extract_constant(code, "0.05", "RATE")    # every 0.05 in the cell -> RATE, and `RATE = 0.05` after the imports

Every occurrence of the number is replaced: equal in value and in type (5e-2 is the float 0.05; 1 is neither 1.0 nor
True) and written in the same base (0x10 is not 16), a negative one as a unary minus applied to it ("-1" matches `-1`, and "1"
matches the 1 of `-1`, which becomes `-NAME`), in default arguments and in f-string fields too; strings and
f-strings' text are not numbers. An index or a slice's bound (`row[3]`, `s[:5]`) is a position rather than the
quantity and stays, as in the extract_constant family's reference. The constant is written as the cell first writes the number, after a module
docstring and the imports at the top (or first in the cell, two blank lines before a def or class).

Refused: a name that is not a valid identifier, a keyword or a builtin; a name the cell already uses (as a variable,
anywhere) or another cell defines; a value that is not a number or does not occur; a number in a `case` pattern
(a name there captures instead of comparing). The result is checked to parse to the original AST with exactly those
numbers replaced.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import re
import warnings
from collections.abc import Iterable

from .base import RefactorError
from .scopes import Analysis

_NUMBER = (int, float, complex)


def literal_number(text: str) -> int | float | complex | None:
    """The number a literal spells ("0.05", "-1", "1_000", "0x10", "2j"), or None when it spells no number."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = node.operand
    else:
        inner = node
    if not (isinstance(inner, ast.Constant) and type(inner.value) in _NUMBER):
        return None
    return ast.literal_eval(node)


def extract_constant(code: str, value: str, name: str, *, defined_elsewhere: Iterable[str] = ()) -> str:
    """`code` with every occurrence of the number `value` (its literal text) replaced by `name`, defined once at the
    top, or a RefactorError (see the module docstring). defined_elsewhere: names other cells define."""
    if not name.isidentifier() or keyword.iskeyword(name) or name in dir(builtins):
        raise RefactorError(f"{name!r} cannot name a constant: it is not a valid name, or it is a keyword or builtin")
    number = literal_number(value)
    if number is None:
        raise RefactorError(f"{value!r} is not a number")
    analysis = Analysis(code)
    used = next((o for o in analysis.occurrences if o.variable and o.name == name), None)
    if used is not None:
        raise RefactorError(f"{name} is already used in the cell (line {used.node.lineno})")
    if name in set(defined_elsewhere):
        raise RefactorError(f"another cell defines {name}")
    tree = analysis.tree
    found = _occurrences(tree, number)
    if not found:
        raise RefactorError(f"{value} does not occur in the cell (as a number)")
    edits, written, kept = [], None, []
    for node in found:
        a = analysis.offset(node.lineno, node.col_offset)
        b = analysis.offset(node.end_lineno, node.end_col_offset)
        text = code[a:b]
        if literal_number(text) != number:  # Python 3.11 can misplace what an f-string's field holds
            raise RefactorError(f"cannot place the {value} on line {node.lineno} exactly")
        if _base(text) != _base(value):
            continue  # 0x10 is a flag where 16 is a count: the same int, written for another reason
        kept.append(node)
        written = written or re.sub(r"\s+", "", text)
        before = " " if a and (code[a - 1].isalnum() or code[a - 1] == "_") else ""
        after = " " if b < len(code) and (code[b].isalnum() or code[b] == "_") else ""  # `1if x else 2`
        edits.append((a, b, before + name + after))
    if not kept:
        raise RefactorError(f"{value} occurs in the cell only written in another base")
    at, line = _insertion(code, tree, analysis)
    edits.append((at, at, line.format(f"{name} = {written}")))
    result = code
    for a, b, text in sorted(edits, reverse=True):
        result = result[:a] + text + result[b:]
    _check(result, tree, kept, name, written)
    return result


def _base(literal: str) -> str:
    """How a number is written: "0x", "0o", "0b", or "" (decimal)."""
    digits = literal.strip().lstrip("+-").strip().lower()
    return digits[:2] if digits[:2] in ("0x", "0o", "0b") else ""


def _occurrences(tree, number) -> list[ast.expr]:
    """The nodes that spell `number`: constants of its type and value, or a unary minus applied to one."""
    negative_of, positions = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            negative_of[id(node.operand)] = node
        elif isinstance(node, ast.Subscript):
            positions.add(id(node.slice))
        elif isinstance(node, ast.Slice):
            positions.update(id(part) for part in (node.lower, node.upper, node.step))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) in _NUMBER and id(node) not in positions:
            outer = negative_of.get(id(node))
            if outer is not None and _same(-node.value, number):
                if id(outer) not in positions:
                    found.append(outer)
            elif _same(node.value, number) and not (outer is not None and _same(-node.value, number)):
                found.append(node)
    in_patterns = {id(n) for p in ast.walk(tree) if isinstance(p, ast.MatchValue) for n in ast.walk(p)}
    for node in found:
        if id(node) in in_patterns:
            raise RefactorError(f"the number is a case pattern on line {node.lineno}, where a name would capture")
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def _insertion(code: str, tree, analysis: Analysis) -> tuple[int, str]:
    """(offset, template) where the constant goes: after a module docstring and the imports at the top, else first."""
    body, i = tree.body, 0
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        i = 1
    while i < len(body) and isinstance(body[i], (ast.Import, ast.ImportFrom)):
        i += 1
    if i:
        end = body[i - 1].end_lineno
        at = analysis.offset(end + 1, 0) if end < len(code.splitlines()) else len(code)
        return at, ("" if code[:at].endswith("\n") else "\n") + "\n{}\n"
    first = body[0] if body else None
    starts_def = isinstance(first, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    return 0, "{}\n" + ("\n\n" if starts_def else "\n")


def _check(result: str, tree, found, name: str, written: str):
    """The result must be the original tree with the occurrences replaced and the one assignment added."""
    replace = {id(n) for n in found}

    class Replace(ast.NodeTransformer):
        def visit(self, node):
            if id(node) in replace:
                return ast.Name(id=name, ctx=ast.Load())
            return super().visit(node)

    expected = Replace().visit(tree)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # `1if x else 2`: the cell's own business
            got = ast.parse(result)
    except SyntaxError:
        got = None
    assign = ast.parse(f"{name} = {written}").body[0]
    if got is None or ast.dump(ast.Module(body=[s for s in got.body if ast.dump(s) != ast.dump(assign)],
                                          type_ignores=[])) != ast.dump(expected) or \
            sum(ast.dump(s) == ast.dump(assign) for s in got.body) != 1:
        raise RefactorError("cannot write the constant so that the cell parses back to the same code")
