"""print(...) -> logging.info(...): the same text, logged instead of printed.

The rule: the module-level functions of `logging` (the root logger), so the cell gains no new name and works the
same at the top of a notebook; `import logging` is added when the cell does not have it (and `defined_elsewhere`
does not say an earlier cell does). The message keeps logging's lazy %-style:

    print("loss:", loss, "at", step)   ->  logging.info("loss: %s at %s", loss, step)
    print(f"loss {loss:.3f}")          ->  logging.info(f"loss {loss:.3f}")     (one argument: as it is)
    print(x)                           ->  logging.info("%s", x)
    print("oops", file=sys.stderr)     ->  logging.warning("oops")

String literals among several arguments join the template (their `%` doubled), the other arguments become `%s`
(str(), as print does), a literal `sep=` joins them. A print left as it was: one writing to a file, one with `*args`,
a non-literal `sep`, an `end` other than a newline, or a `flush=` that is not a literal. When the cell rebinds
`print`, or binds `logging` to something else than the module, it is refused.

Root-logger records below WARNING are not shown until logging is configured (`logging.basicConfig(level=
logging.INFO)`): logging them is what was asked; showing them is the notebook's configuration.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable

import libcst as cst

from .base import RefactorError, dotted_name, parse
from .scopes import Analysis

_LEVELS = {"stdout": "info", "sys.stdout": "info", "sys.stderr": "warning"}  # where print wrote -> level


def print_to_logging(code: str, *, defined_elsewhere: Iterable[str] = ()) -> str:
    """The cell with its print calls turned into logging calls (see the module docstring for the rule)."""
    analysis = Analysis(code)
    if any(o.binds for o in analysis.of("print")):
        raise RefactorError("print is redefined in this cell: its calls are not the builtin print")
    has_import = False
    for o in analysis.of("logging"):
        if o.binds:
            if not (isinstance(o.node, ast.alias) and o.node.name == "logging"):
                raise RefactorError("logging is bound to something else than the logging module in this cell")
            has_import = has_import or o.binding.kind == "module"
    convert = _Convert()
    out = parse(code).visit(convert)
    if not convert.converted:
        return code
    if not has_import and "logging" not in set(defined_elsewhere):
        out = _add_import(out)
    return out.code


class _Convert(cst.CSTTransformer):
    def __init__(self):
        super().__init__()
        self.converted = 0

    def leave_Call(self, original, updated):
        if not (isinstance(updated.func, cst.Name) and updated.func.value == "print"):
            return updated
        new = _logging_call(updated)
        if new is None:
            return updated
        self.converted += 1
        return new


def _logging_call(call: cst.Call) -> cst.Call | None:
    values = [a for a in call.args if a.keyword is None]
    options = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    if any(a.star for a in call.args) or set(options) - {"sep", "end", "file", "flush"}:
        return None
    sep = options.get("sep")
    if sep is not None and not (isinstance(sep, cst.SimpleString) and _is_text(sep)):
        return None
    end = options.get("end")
    if end is not None and not (isinstance(end, cst.SimpleString) and _is_text(end) and end.evaluated_value == "\n"):
        return None
    flush = options.get("flush")
    if flush is not None and not (isinstance(flush, cst.Name) and flush.value in ("True", "False")):
        return None
    out = options.get("file")
    target = "stdout" if out is None else dotted_name(out)
    if target not in _LEVELS:
        return None  # a file: that is output, not a message
    func = cst.Attribute(cst.Name("logging"), cst.Name(_LEVELS[target]))
    if len(values) == 1 and _is_template(values[0].value):  # a lone message: as it is, never %-formatted
        return call.with_changes(func=func, args=[values[0].with_changes(comma=call.args[-1].comma)])
    joint = sep.evaluated_value if sep is not None else " "
    parts, rest = [], []
    for arg in values:
        if isinstance(arg.value, cst.SimpleString) and _is_text(arg.value):
            parts.append(arg.value.evaluated_value.replace("%", "%%"))
        else:
            parts.append("%s")
            rest.append(arg)
    quote = next((a.value.quote[0] for a in values if isinstance(a.value, cst.SimpleString)), '"')
    message = cst.SimpleString(_literal(joint.replace("%", "%%").join(parts), quote))
    last_comma = call.args[-1].comma if call.args else cst.MaybeSentinel.DEFAULT  # a trailing comma stays
    if rest:
        lead = values[0].comma if values[0].comma is not cst.MaybeSentinel.DEFAULT else cst.Comma(
            whitespace_after=cst.SimpleWhitespace(" "))
        args = [cst.Arg(message, comma=lead)] + rest[:-1] + [rest[-1].with_changes(comma=last_comma)]
    else:
        args = [cst.Arg(message, comma=last_comma)]
    return call.with_changes(func=func, args=args)


def _is_text(node: cst.SimpleString) -> bool:
    return "b" not in node.prefix.lower()


def _is_template(node) -> bool:
    """A str expression whose text is the message as print would write it."""
    if isinstance(node, cst.SimpleString):
        return _is_text(node)
    if isinstance(node, cst.ConcatenatedString):
        return _is_template(node.left) and _is_template(node.right)
    return isinstance(node, cst.FormattedString)


def _literal(text: str, quote: str) -> str:
    """A string literal for `text`, in the cell's quote where it can be."""
    r = repr(text)
    if quote == '"' and r.startswith("'") and '"' not in text:
        r = '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


def _add_import(module: cst.Module) -> cst.Module:
    """`import logging` among the cell's leading imports (alphabetically among the plain ones), else first."""
    body = list(module.body)
    start = 0
    while start < len(body) and (_is_docstring(body[start]) or _is_future(body[start])):
        start += 1
    end = start
    while end < len(body) and _is_import_line(body[end]):
        end += 1
    new = cst.SimpleStatementLine([cst.Import([cst.ImportAlias(cst.Name("logging"))])])
    if end == start:  # no imports: a line of its own, set off like an import block
        if start < len(body):
            gap = 2 if isinstance(body[start], (cst.FunctionDef, cst.ClassDef)) else 1
            first = body[start]
            new = new.with_changes(leading_lines=first.leading_lines)
            body[start] = first.with_changes(leading_lines=[cst.EmptyLine()] * gap)
        body.insert(start, new)
        return module.with_changes(body=body)
    at = next((i for i in range(start, end) if _plain_import_after(body[i], "logging")), None)
    if at is None:
        plain = [i for i in range(start, end) if isinstance(body[i].body[0], cst.Import)]
        at = plain[-1] + 1 if plain else start
    if at < end:
        before = body[at]
        new = new.with_changes(leading_lines=before.leading_lines)  # a comment heading the imports stays on top
        body[at] = before.with_changes(leading_lines=[])
    body.insert(at, new)
    return module.with_changes(body=body)


def _is_docstring(stmt) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Expr) and isinstance(
        stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))


def _is_future(stmt) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.ImportFrom) and \
        stmt.body[0].module is not None and dotted_name(stmt.body[0].module) == "__future__"


def _is_import_line(stmt) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(isinstance(s, (cst.Import, cst.ImportFrom))
                                                             for s in stmt.body)


def _plain_import_after(stmt, name: str) -> bool:
    first = stmt.body[0]
    return isinstance(first, cst.Import) and dotted_name(first.names[0].name).lower() > name
