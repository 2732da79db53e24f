"""`%` formatting and `str.format` calls -> f-strings, only where the f-string means exactly the same.

Converted (the rules flynt follows without --aggressive, made stricter where it guesses):

- `"..." % (a, b)` and `"..." % a` (one value that is not a tuple or dict display) with the directives
  %s %r %a (flag `-`, width, precision: `%-10s` -> `{a!s:<10}`), %f %F %e %E %g %G (flags, width, precision:
  `%8.3f` -> `{a:8.3f}`), %x %X %o (flags, width), %d %i only for a value that is surely an int (an int literal,
  `len(...)`, `int(...)`: `"%d" % 2.5` truncates where `f"{2.5:d}"` raises), and `%%`;
- `"...".format(...)` with automatic, numbered or named fields, attribute and index lookups (`{0.name}`,
  `{p[key]}`), conversions and format specs, when every argument is used (an unused one would no longer be
  evaluated), an argument used twice is a plain name or literal (it would be evaluated twice), and the fields
  take the arguments in the order they are written or all of them are plain names or literals.

Skipped, the expression left as it is: `%(key)s` mappings and dict values, `*` widths, %c %u, a format spec with
nested fields, `*args`/`**kwargs`, bytes, implicitly concatenated literals, an argument whose source spans lines,
holds a backslash or a `#`, or a call with a comment inside. An f-string expression in Python 3.11 may not reuse
the string's quote: where an argument needs it, the f-string takes the other quote if its text does not use it,
else the expression is skipped. Every conversion is checked before it is made: the f-string's AST must equal the
one built from the literal's evaluated value and the arguments' ASTs, which catches any slip in reading escapes.

`%s` and `{}` become `{a}`, which calls format(a, "") where `%` called str(a): the same for every type that
follows the language's convention for an empty format spec. `%f`-style directives convert a Decimal to float
first where an f-string formats the Decimal itself: the digits can differ in the last place.
"""
from __future__ import annotations

import _string  # the parser str.format itself uses
import ast
import re
import warnings
from dataclasses import dataclass

import libcst as cst

from .base import parse

_ESCAPE = re.compile(r"\\(?:\r\n|N\{[^}]*\}|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{1,3}|.)", re.S)
_DIRECTIVE = re.compile(r"%(\([^)]*\))?([-+ #0]*)(\*|\d+)?(?:\.(\*|\d*))?([hlL]?)(.?)", re.S)
_OTHER_QUOTE = {'"': "'", "'": '"', '"""': "'''", "'''": '"""'}
_PLAIN = (cst.Name, cst.Integer, cst.Float, cst.SimpleString)  # evaluating these twice or early changes nothing
_NO_PARENS = (cst.Name, cst.Attribute, cst.Subscript, cst.Call)  # `x.attr` / `x[key]` need no parentheses


def to_fstrings(code: str) -> str:
    """The cell with every exactly convertible `%` / `.format` string turned into an f-string; the rest as is."""
    return parse(code).visit(_Convert()).code


@dataclass(frozen=True)
class _Field:
    value: cst.BaseExpression  # the argument
    path: tuple = ()  # attribute / index lookups: (is_attr, key) pairs as str.format applies them
    conversion: str | None = None  # "r", "s", "a"
    spec: str = ""


class _Convert(cst.CSTTransformer):
    def leave_BinaryOperation(self, original, updated):
        if isinstance(updated.operator, cst.Modulo) and _is_text(updated.left):
            return _replace(updated, updated.left, _percent, updated.right)
        return updated

    def leave_Call(self, original, updated):
        func = updated.func
        if isinstance(func, cst.Attribute) and func.attr.value == "format" and _is_text(func.value):
            return _replace(updated, func.value, _format, updated.args)
        return updated


def _is_text(node) -> bool:
    return isinstance(node, cst.SimpleString) and not {"b", "f"} & set(node.prefix.lower())


def _replace(node, literal: cst.SimpleString, fields_of, args):
    """`node` as an f-string, or `node` itself when the conversion is not exact."""
    if _has_comment(node):
        return node  # an f-string on one line would lose it
    raw = literal.prefix.lower() == "r"
    body = literal.raw_value
    chunks = _chunks(body, raw)
    if chunks is None:
        return node
    got = fields_of(chunks, args)  # (pieces of the f-string's body: str or _Field) from the literal's source
    expect = fields_of([("text", literal.evaluated_value)], args)  # and from its value, as the check
    if got is None or expect is None or not any(isinstance(p, _Field) for p in got):
        return node
    for quote in (literal.quote, _OTHER_QUOTE[literal.quote]):
        if quote != literal.quote and quote[0] in body:
            break  # switching quotes would need the text re-escaped
        src = _render(literal.prefix.replace("u", "").replace("U", "") + "f", quote, got)
        if src is not None and _same(src, expect):
            return cst.parse_expression(src)  # an f-string is atomic: parentheses around the old form can go
    return node


def _has_comment(node) -> bool:
    found = []

    class Finder(cst.CSTVisitor):
        def visit_Comment(self, n):
            found.append(n)

    node.visit(Finder())
    return bool(found)


def _chunks(body: str, raw: bool) -> list[tuple[str, str]] | None:
    """The literal's source text as ("text", ...) and ("escape", ...) pieces; None when an escape stands for
    a character that formatting reads (`\\x25` is a `%`)."""
    if raw:
        return [("text", body)]
    out, pos = [], 0
    for m in _ESCAPE.finditer(body):
        out.append(("text", body[pos:m.start()]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an invalid escape like \d is the cell's business
            value = ast.literal_eval(f"'{m.group()}'")
        if set(value) & set("%{}"):
            return None
        out.append(("escape", m.group()))
        pos = m.end()
    out.append(("text", body[pos:]))
    return out


# -- % formatting --------------------------------------------------------------------------------------------


def _percent(chunks, right) -> list | None:
    if isinstance(right, (cst.Dict, cst.DictComp)):
        return None
    if isinstance(right, cst.Tuple):
        if any(isinstance(e, cst.StarredElement) for e in right.elements):
            return None
        values = [e.value for e in right.elements]
    else:
        values = [right]
    pieces, values = [], list(values)
    for kind, text in chunks:
        if kind == "escape":
            pieces.append(text)
            continue
        pos = 0
        for m in _DIRECTIVE.finditer(text):
            pieces.append(_braces(text[pos:m.start()]))
            pos = m.end()
            if m.group(0) == "%%":
                pieces.append("%")
                continue
            if not values:
                return None
            field = _directive(m, values.pop(0))
            if field is None:
                return None
            pieces.append(field)
        pieces.append(_braces(text[pos:]))
    return None if values else pieces


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _directive(m: re.Match, value) -> _Field | None:
    key, flags, width, prec, length, kind = m.groups()
    if key or length or width == "*" or prec == "*" or not kind:
        return None
    flags = set(flags)
    if prec == "":
        prec = "0"  # "%.f" is "%.0f"
    width = width or ""
    align = "<" if "-" in flags and width else ""
    sign = "+" if "+" in flags else " " if " " in flags else ""
    zero = "0" if "0" in flags and "-" not in flags and width else ""
    if kind in "sra":
        if flags - {"-"}:
            return None
        if not width and prec is None:
            return _Field(value, conversion=None if kind == "s" else kind)
        spec = (align or ">") + width if width else ""
        return _Field(value, conversion=kind, spec=spec + (f".{prec}" if prec is not None else ""))
    if kind in "di":
        if prec is not None or "#" in flags or not _surely_int(value):
            return None
        spec = f"{align}{sign}{zero}{width}"
        return _Field(value, spec=spec + "d" if spec else "")
    if kind in "fFeEgG":
        alt = "#" if "#" in flags else ""
        return _Field(value, spec=f"{align}{sign}{alt}{zero}{width}" + (f".{prec}" if prec is not None else "") + kind)
    if kind in "xXo":
        if prec is not None:
            return None
        alt = "#" if "#" in flags else ""
        return _Field(value, spec=f"{align}{sign}{alt}{zero}{width}{kind}")
    return None


def _surely_int(node) -> bool:
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        node = node.expression
    return isinstance(node, cst.Integer) or (isinstance(node, cst.Call) and isinstance(node.func, cst.Name)
                                              and node.func.value in ("int", "len"))


# -- str.format --------------------------------------------------------------------------------------------------


def _format(chunks, args) -> list | None:
    if any(a.star for a in args):
        return None
    positional = [a.value for a in args if a.keyword is None]
    named = {a.keyword.value: a.value for a in args if a.keyword is not None}
    pieces, used, auto = [], [], None
    for kind, text in chunks:
        if kind == "escape":
            pieces.append(text)
            continue
        try:
            parsed = list(_string.formatter_parser(text))
        except ValueError:
            return None  # a lone brace, which str.format refuses too
        for literal, name, spec, conversion in parsed:
            pieces.append(_braces(literal))
            if name is None:
                continue
            if "{" in spec or "}" in spec:
                return None  # nested fields: `{:{width}}`
            first, rest = _string.formatter_field_name_split(name)
            if first == "":
                if auto is False:
                    return None  # mixing {} and {0}: str.format raises
                auto, first = True, len([u for u in used if isinstance(u, int)])
            elif isinstance(first, int):
                if auto:
                    return None
                auto = False
            if isinstance(first, int) and first >= len(positional) or isinstance(first, str) and first not in named:
                return None
            used.append(first)
            value = positional[first] if isinstance(first, int) else named[first]
            pieces.append(_Field(value, tuple(rest), conversion, spec))
    keys = list(range(len(positional))) + list(named)
    if not used or set(used) != set(keys):
        return None  # an unused argument would no longer be evaluated
    values = {k: positional[k] if isinstance(k, int) else named[k] for k in keys}
    if any(used.count(k) > 1 and not isinstance(values[k], _PLAIN) for k in keys):
        return None  # evaluated once by .format, once per field in an f-string
    if list(dict.fromkeys(used)) != keys and not all(isinstance(v, _PLAIN) for v in values.values()):
        return None  # the f-string would evaluate them in another order
    return pieces


# -- the f-string, and the check ---------------------------------------------------------------------------------


def _render(prefix: str, quote: str, pieces: list) -> str | None:
    """The f-string's source, or None when an expression cannot sit in it under Python 3.11's rules."""
    inner = _OTHER_QUOTE[quote][0]  # quote for index keys inside expressions
    out = []
    for p in pieces:
        if isinstance(p, str):
            out.append(p)
            continue
        expr = _expression(p, inner)
        if expr is None or set(expr) & {"\\", "#", "\n", "\r", quote[0]} or set(p.spec) & {"\\", quote[0]}:
            return None
        if expr.startswith("{") or expr.endswith("}"):
            expr = f" {expr} "  # `{{` would be a literal brace
        out.append("{" + expr + (f"!{p.conversion}" if p.conversion else "") + (f":{p.spec}" if p.spec else "") + "}")
    return f"{prefix}{quote}{''.join(out)}{quote}"


def _expression(field: _Field, inner_quote: str) -> str | None:
    value = field.value
    if not isinstance(value, (cst.Tuple, cst.GeneratorExp)):  # parentheses that only grouped against `%` go
        value = value.with_changes(lpar=[], rpar=[])
    expr = cst.Module([]).code_for_node(value)
    if isinstance(value, (cst.Lambda, cst.NamedExpr, cst.Yield)) or field.path and not isinstance(value, _NO_PARENS):
        expr = f"({expr})"  # a top-level `:` would start the format spec
    for is_attr, key in field.path:
        if is_attr:
            expr += f".{key}"
        elif isinstance(key, int):
            expr += f"[{key}]"
        elif set(key) & {"'", '"', "\\"}:
            return None
        else:
            expr += f"[{inner_quote}{key}{inner_quote}]"
    return expr


def _same(src: str, expect: list) -> bool:
    """The rendered f-string's AST is the one `expect` (built from the literal's evaluated value) describes."""
    try:
        got = ast.parse(src, mode="eval").body
    except SyntaxError:
        return False
    values, text = [], ""
    for p in expect:
        if isinstance(p, str):
            text += p.replace("{{", "{").replace("}}", "}")
            continue
        if text:
            values.append(ast.Constant(text))
            text = ""
        node = ast.parse(cst.Module([]).code_for_node(p.value).strip(), mode="eval").body
        for is_attr, key in p.path:
            node = ast.Attribute(node, key, ast.Load()) if is_attr else ast.Subscript(node, ast.Constant(key), ast.Load())
        spec = ast.JoinedStr([ast.Constant(p.spec)]) if p.spec else None
        values.append(ast.FormattedValue(node, ord(p.conversion) if p.conversion else -1, spec))
    if text:
        values.append(ast.Constant(text))
    return ast.dump(got) == ast.dump(ast.JoinedStr(values))
