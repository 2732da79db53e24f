"""Modernising refactors: %-format / str.format -> f-strings; loop-append <-> list comprehension.

Each family also learns from code already written the way it asks for: where a unit has nothing to convert, its
f-strings (its comprehensions, its append loops) are rewritten the other way to make the before, and the code as a
person wrote it is the target (kept only when both mean the same under the family's semantic key)."""
from __future__ import annotations

import ast
import copy
import re
import string

from .base import SCOPES, Family, Text, apply_edits, parses
from .rename import own_scope_nodes

# ------------------------------------------------------------------------------------------------ f-strings
# one printf-style conversion: %% or flags, width, precision, a length modifier (ignored by Python), the type
_PCT = re.compile(r"%(?:(%)|([-+ #0]*)(\d*)(?:\.(\d*))?[hlL]?([diouxXeEfFgGcrsa]))")
_SIMPLE = (ast.Name, ast.Attribute, ast.Constant, ast.Subscript)
_AS_CONVERSION = {"str": ord("s"), "repr": ord("r"), "ascii": ord("a")}


def _fv(expr, conv: int = -1, spec: str | None = None) -> ast.FormattedValue:
    fs = ast.JoinedStr(values=[ast.Constant(value=spec)]) if spec else None
    return ast.FormattedValue(value=expr, conversion=conv, format_spec=fs)


def _joined(parts: list) -> ast.JoinedStr:
    vals = []
    for p in parts:
        if isinstance(p, str):
            if not p:
                continue
            if vals and isinstance(vals[-1], ast.Constant):
                vals[-1] = ast.Constant(value=vals[-1].value + p)
            else:
                vals.append(ast.Constant(value=p))
        else:
            vals.append(p)
    return ast.JoinedStr(values=vals)


def _is_int_call(expr) -> bool:
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in ("int", "len")


def _percent_field(flags: str, width: str, precision: str | None, kind: str, value,
                   specs: bool) -> tuple[int, str | None] | None:
    """(conversion, format spec) of the f-string field that formats ``value`` as one %-conversion does, or None
    where no field does the same for every value (the rules of printf-style formatting in the library reference,
    the ones flynt converts): %s %r %a without width or precision are str / repr / ascii; e E f F g G x X o take
    the same flags, width and precision in a format spec; %d %i %u truncate a float, so only a value that is an int
    (a call of int or len, as flynt requires) formats alike, and format(n, "5") is format(n, "5d") for an int.
    Refused: '-' (left-justify, '<' in a spec), a precision on an integer (zero-padding in %), %c (a string too),
    and any spec unless ``specs``."""
    if kind in "sra":
        if flags or width or precision is not None:
            return None
        return {"s": -1, "r": ord("r"), "a": ord("a")}[kind], None
    if not specs or "-" in flags or kind == "c" or (precision is not None and kind in "diouxX"):
        return None
    if kind in "diu":
        if not _is_int_call(value):
            return None
        kind = ""
    sign = "+" if "+" in flags else " " if " " in flags else ""  # a spec takes them in this order, % in any
    spec = sign + "#" * ("#" in flags) + "0" * ("0" in flags) + width
    spec += (f".{precision or 0}" if precision is not None else "") + kind
    return -1, spec or None


def percent_to_joined(node, specs: bool = False) -> ast.JoinedStr | None:
    """``"..%s..%.2f.." % (a, b)`` (a tuple literal, or one value that is not a tuple or mapping literal) as the
    equivalent JoinedStr, each conversion as :func:`_percent_field` allows: %s %r %a, and with ``specs`` the
    numeric ones too (the meaning check takes those; the tasks and their checks, which try values of any type,
    keep to the three that need no type). One value: ``"<%s>" % type(x).__name__``, as flynt converts it (that a
    name could hold a tuple at run time is the caveat flynt shares)."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)):
        return None
    if isinstance(node.right, (ast.Dict, ast.DictComp, ast.Starred)):
        return None  # a mapping formats %(name)s; a starred value is no single value
    fmt = node.left.value
    args = list(node.right.elts) if isinstance(node.right, ast.Tuple) else [node.right]
    if any(isinstance(a, ast.Starred) for a in args):
        return None
    rest = _PCT.sub("", fmt)
    if "%" in rest:
        return None
    parts, pos, i = [], 0, 0
    for m in _PCT.finditer(fmt):
        parts.append(fmt[pos:m.start()])
        pos = m.end()
        if m.group(1):
            parts.append("%")
            continue
        if i >= len(args):
            return None
        field = _percent_field(*m.group(2, 3, 4, 5), args[i], specs)
        if field is None:
            return None
        parts.append(_fv(args[i], *field))
        i += 1
    if i != len(args) or i == 0:
        return None
    parts.append(fmt[pos:])
    return _joined(parts)


def format_to_joined(node) -> ast.JoinedStr | None:
    """``"..{}..{name!r:>4}..".format(a, name=b)`` as a JoinedStr, when evaluation order/count is kept."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)):
        return None
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
        return None
    args, kws = list(node.args), {k.arg: k.value for k in node.keywords}
    try:
        pieces = list(string.Formatter().parse(node.func.value.value))
    except ValueError:
        return None
    parts, auto, used = [], 0, []
    for lit, fname, spec, conv in pieces:
        parts.append(lit)
        if fname is None:
            continue
        if spec and ("{" in spec or "}" in spec):
            return None
        if fname == "":
            key = auto
            auto += 1
        elif fname.isdigit():
            key = int(fname)
        elif fname.isidentifier():
            key = fname
        else:
            return None
        expr = args[key] if isinstance(key, int) and key < len(args) else kws.get(key) if isinstance(key, str) else None
        if expr is None:
            return None
        used.append(key)
        c = {None: -1, "r": ord("r"), "s": ord("s"), "a": ord("a")}.get(conv)
        if c is None:
            return None
        parts.append(_fv(copy.deepcopy(expr), c, spec or None))
    keys = list(range(len(args))) + list(kws)
    if sorted(map(str, set(used))) != sorted(map(str, keys)) or not used:
        return None  # an argument unused: its evaluation would vanish
    for k in set(used):
        e = args[k] if isinstance(k, int) else kws[k]
        if used.count(k) > 1 and not isinstance(e, (ast.Name, ast.Constant)):
            return None  # evaluated twice in an f-string
    # evaluation order must match: positional args in order of first use, keywords after
    firsts = list(dict.fromkeys(used))
    order = [k for k in firsts]
    expect = [k for k in keys if k in firsts]
    if order != expect and not all(isinstance(args[k] if isinstance(k, int) else kws[k], (ast.Name, ast.Constant))
                                   for k in firsts):
        return None
    return _joined(parts)


def to_joined(node, specs: bool = False):
    return percent_to_joined(node, specs) or format_to_joined(node)


def _fstring_text(j: ast.JoinedStr) -> str | None:
    try:
        s = ast.unparse(j)
    except Exception:  # noqa: BLE001 - unparse can refuse odd quoting
        return None
    try:
        back = ast.parse(s, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(back, ast.JoinedStr) or ast.dump(back) != ast.dump(_canon(j)):
        return None
    return s


def _canon(j: ast.JoinedStr) -> ast.JoinedStr:
    return ast.parse(ast.unparse(j), mode="eval").body


def _one_form(j: ast.JoinedStr):
    """The f-string in one form, as flynt writes it: a field ``{str(x)}`` / ``{repr(x)}`` / ``{ascii(x)}`` is
    ``{x!s}`` / ``{x!r}`` / ``{x!a}`` (str, repr, ascii being the builtins is flynt's caveat), a field that holds a
    string literal is that text, and an f-string of text alone is a plain string."""
    parts = []
    for v in j.values:
        if isinstance(v, ast.FormattedValue) and v.conversion == -1 and v.format_spec is None:
            x = v.value
            if isinstance(x, ast.Constant) and isinstance(x.value, str):
                parts.append(x.value)
                continue
            if isinstance(x, ast.Call) and isinstance(x.func, ast.Name) and x.func.id in _AS_CONVERSION \
                    and len(x.args) == 1 and not x.keywords and not isinstance(x.args[0], ast.Starred):
                v = _fv(x.args[0], _AS_CONVERSION[x.func.id])
        parts.append(v.value if isinstance(v, ast.Constant) else v)
    out = _joined(parts)
    if not any(isinstance(v, ast.FormattedValue) for v in out.values):
        return ast.Constant(value="".join(v.value for v in out.values))
    try:
        return _canon(out)
    except (SyntaxError, ValueError):
        return out


class _ToJoined(ast.NodeTransformer):
    def visit_FormattedValue(self, node):  # its format spec belongs to the field: not an f-string of its own
        node.value = self.visit(node.value)
        return node

    def generic_visit(self, node):
        super().generic_visit(node)
        if isinstance(node, (ast.BinOp, ast.Call)):
            node = to_joined(node, specs=True) or node
        return _one_form(node) if isinstance(node, ast.JoinedStr) else node


class ToFString(Family):
    name = "to_fstring"
    refactor = True
    paraphrases = (
        "Convert the string formatting to f-strings.",
        "Please replace %-formatting and str.format() calls with f-strings.",
        "Modernise the string formatting using f-strings.",
        "Use f-strings instead of the old formatting.",
        "Rewrite the format strings as f-strings.",
        "use f-strings",
        "f-strings pls",
        "fstrings",
        "to f-string",
        "modernize string formatting",
        "% -> f-string",
        ".format -> f-strings",
    )

    def normalize(self, tree):
        return _ToJoined().visit(tree)

    def make(self, text, rng):
        tree = ast.parse(text)
        t = Text(text)
        edits = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.BinOp, ast.Call)):
                j = to_joined(node)
                if j is None or any(isinstance(x, ast.JoinedStr) for x in ast.walk(node) if x is not node):
                    continue
                s = _fstring_text(j)
                if s is None:
                    continue
                edits.append((*t.node_span(node), s))
        edits = _outermost(edits)
        if edits:
            return self.task(rng, text, apply_edits(text, edits), n_converted=len(edits))
        # Nothing old-style here: the f-strings people wrote, put back into the old style, are the target.  Code
        # with f-strings is many times commoner than code with convertible %/format calls, and its targets are human.
        edits = _outermost(old_style_edits(tree, t, rng))
        return _inverted(self, text, (apply_edits(text, edits), {"n_converted": len(edits)}) if edits else None, rng)


def _outermost(edits: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Drop edits nested in (overlapping) an earlier one."""
    clean = []
    for e in sorted(edits):
        if not clean or e[0] >= clean[-1][1]:
            clean.append(e)
    return clean


def _quoted(s: str, quote: str) -> str:
    """A plain string literal for ``s``, in ``quote`` where repr's choice of quote allows it."""
    r = repr(s)
    if r[0] != quote and quote not in s and "\\" not in r:  # no escapes in r: swapping the quotes is safe
        r = quote + r[1:-1] + quote
    return r


def _expr_source(t: Text, expr) -> str:
    """The expression as written, when ast's position for it inside an f-string can be trusted; else unparsed."""
    try:
        seg = t.segment(expr)
        if ast.dump(ast.parse(seg.strip(), mode="eval").body) == ast.dump(expr):
            return seg.strip()
    except (SyntaxError, ValueError, IndexError):
        pass
    return ast.unparse(expr)


def joined_to_old_style(t: Text, node: ast.JoinedStr, quote: str, percent: bool) -> str | None:
    """``f"a {x!r} b {y:>4}"`` as ``"a {!r} b {:>4}".format(x, y)``, or with ``percent`` (possible without format
    specs) as ``"a %r b %s" % (x, y)``: the forms that :func:`to_joined` turns back into the same f-string."""
    fmt, args = [], []
    for v in node.values:
        if isinstance(v, ast.Constant):
            fmt.append(v.value.replace("%", "%%") if percent else v.value.replace("{", "{{").replace("}", "}}"))
            continue
        if any(isinstance(x, ast.JoinedStr) for x in ast.walk(v.value)):
            return None
        spec = v.format_spec.values if v.format_spec is not None else []
        if not all(isinstance(x, ast.Constant) for x in spec):
            return None  # a computed format spec, f"{x:{width}}"
        spec = "".join(x.value for x in spec)
        if percent:
            if spec or v.conversion not in (-1, ord("r"), ord("a")):
                return None
            fmt.append("%" + ("s" if v.conversion == -1 else chr(v.conversion)))
        else:
            fmt.append("{" + ("" if v.conversion == -1 else "!" + chr(v.conversion)) + (":" + spec if spec else "") + "}")
        args.append(_expr_source(t, v.value))
    if not args:
        return None
    literal = _quoted("".join(fmt), quote)
    if percent:
        return f"{literal} % ({', '.join(args)}{',' if len(args) == 1 else ''})"
    return f"{literal}.format({', '.join(args)})"


def old_style_edits(tree, t: Text, rng) -> list[tuple[int, int, str]]:
    """(start, end, old-style text) for each one-line, one-token, non-raw f-string of the module."""
    specs = {id(v.format_spec) for v in ast.walk(tree) if isinstance(v, ast.FormattedValue) and v.format_spec}
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.JoinedStr) or id(node) in specs or node.lineno != node.end_lineno:
            continue
        seg = t.segment(node)
        if not re.fullmatch(r"[fF](\"|')(?:(?!\1)[^\\\n]|\\.)*\1", seg):
            continue  # raw, triple-quoted or implicitly concatenated: not worth the risk
        old = joined_to_old_style(t, node, seg[1], percent=rng.random() < 0.4)
        old = old or joined_to_old_style(t, node, seg[1], percent=False)
        if old is not None:
            edits.append((*t.node_span(node), old))
    return edits


# ------------------------------------------------------------------------------------------------ comprehensions
def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _empty_kind(value) -> str | None:
    if isinstance(value, ast.List) and not value.elts:
        return "list"
    if isinstance(value, ast.Dict) and not value.keys:
        return "dict"
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and not value.args and not value.keywords \
            and value.func.id in ("list", "set", "dict"):
        return value.func.id
    return None


def _loop_pattern(assign, loop):
    """``x = []`` / ``set()`` / ``{}`` followed by ``for v in it: [if c:] x.append(e)`` / ``x.add(e)`` /
    ``x[k] = e`` -> (x, target, iter, cond, elt, kind, key) or None."""
    if not (isinstance(assign, ast.Assign) and len(assign.targets) == 1 and isinstance(assign.targets[0], ast.Name)):
        return None
    kind = _empty_kind(assign.value)
    if kind is None:
        return None
    if not (isinstance(loop, ast.For) and not loop.orelse and len(loop.body) == 1):
        return None
    x = assign.targets[0].id
    stmt, cond = loop.body[0], None
    if isinstance(stmt, ast.If) and not stmt.orelse and len(stmt.body) == 1:
        cond, stmt = stmt.test, stmt.body[0]
    key = None
    if kind == "dict":
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Subscript)
                and isinstance(stmt.targets[0].value, ast.Name) and stmt.targets[0].value.id == x
                and not isinstance(stmt.targets[0].slice, ast.Slice)):
            return None
        key, elt = stmt.targets[0].slice, stmt.value
    else:
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and not stmt.value.keywords
                and len(stmt.value.args) == 1 and not isinstance(stmt.value.args[0], ast.Starred)):
            return None
        f = stmt.value.func
        meth = "append" if kind == "list" else "add"
        if not (isinstance(f, ast.Attribute) and f.attr == meth and isinstance(f.value, ast.Name) and f.value.id == x):
            return None
        elt = stmt.value.args[0]
    used = _names(loop.iter) | _names(elt) | _names(loop.target) | (_names(cond) if cond is not None else set())
    if key is not None:
        used |= _names(key)
    if x in used or any(isinstance(n, (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await, *SCOPES))
                        for n in ast.walk(loop)):
        return None
    return x, loop.target, loop.iter, cond, elt, kind, key


def _comp_pattern(stmt):
    """``x = [e for v in it if c]`` (one generator, <= 1 condition) -> same tuple or None."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.ListComp) and len(stmt.value.generators) == 1):
        return None
    g = stmt.value.generators[0]
    if g.is_async or len(g.ifs) > 1:
        return None
    x = stmt.targets[0].id
    cond = g.ifs[0] if g.ifs else None
    used = _names(g.iter) | _names(stmt.value.elt) | _names(g.target) | (_names(cond) if cond is not None else set())
    if x in used or any(isinstance(n, (ast.NamedExpr, ast.Await, *SCOPES[:5])) for n in ast.walk(stmt.value)
                        if n is not stmt.value):
        return None
    return x, g.target, g.iter, cond, stmt.value.elt


def _bodies(tree):
    for node in ast.walk(tree):
        for fld in ("body", "orelse", "finalbody"):
            b = getattr(node, fld, None)
            if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                yield node, fld, b


def _later_uses(body, i, name: str) -> bool:
    return any(name in _names(s) for s in body[i:])


class _LoopToComp(ast.NodeTransformer):
    def generic_visit(self, node):
        super().generic_visit(node)
        for fld in ("body", "orelse", "finalbody"):
            b = getattr(node, fld, None)
            if not isinstance(b, list) or not b or not isinstance(b[0], ast.stmt):
                continue
            out, i = [], 0
            while i < len(b):
                p = _loop_pattern(b[i], b[i + 1]) if i + 1 < len(b) else None
                if p:
                    x, tgt, it, cond, elt, kind, key = p
                    gens = [ast.comprehension(target=tgt, iter=it, ifs=[cond] if cond else [], is_async=0)]
                    comp = (ast.ListComp(elt=elt, generators=gens) if kind == "list" else
                            ast.SetComp(elt=elt, generators=gens) if kind == "set" else
                            ast.DictComp(key=key, value=elt, generators=gens))
                    out.append(ast.Assign(targets=[ast.Name(id=x, ctx=ast.Store())], value=comp, lineno=0))
                    i += 2
                else:
                    out.append(b[i])
                    i += 1
            setattr(node, fld, out)
        return node


def _src(t: Text, node) -> str:
    s = t.segment(node)
    if "\n" in s or "#" in s:
        s = ast.unparse(node)
    return s


class LoopToComprehension(Family):
    name = "loop_to_comprehension"
    refactor = True
    paraphrases = (
        "Replace the loop that builds the collection with a comprehension.",
        "Please rewrite the append loop as a list comprehension.",
        "Use a list comprehension instead of the for loop.",
        "Make this more Pythonic with a comprehension.",
        "Simplify the loop into a list comprehension.",
        "use a list comprehension",
        "loop -> comprehension",
        "listcomp",
        "comprehension pls",
        "make it a comprehension",
        "turn the for loop into a list comp",
    )

    def normalize(self, tree):
        return _LoopToComp().visit(tree)

    def make(self, text, rng):
        done = self.rewrite(text)
        if done is not None:
            return self.task(rng, text, done[0], **done[1])
        # no append loop here: a comprehension someone wrote, expanded into a loop, is the target
        return _inverted(self, text, ComprehensionToLoop().rewrite(text, rng), rng)

    def rewrite(self, text):
        """(every append loop of ``text`` as a comprehension, meta) or None."""
        tree = ast.parse(text)
        t = Text(text)
        edits = []
        for node, fld, body in _bodies(tree):
            for i in range(len(body) - 1):
                p = _loop_pattern(body[i], body[i + 1])
                if p is None:
                    continue
                x, tgt, it, cond, elt, kind, key = p
                loop = body[i + 1]
                # the comprehension's variable does not leak: skip when the loop variable is used later
                if any(_later_uses(body, i + 2, n) for n in _names(tgt)):
                    continue
                ind = t.indent_of(body[i].lineno)
                if t.line(body[i].lineno).strip() != t.segment(body[i]).strip() or body[i].lineno == loop.lineno:
                    continue
                e = f"{_src(t, key)}: {_src(t, elt)}" if kind == "dict" else _src(t, elt)
                o, c = ("[", "]") if kind == "list" else ("{", "}")
                tg = _src(t, tgt)
                head = f"{e} for {tg} in {_src(t, it)}"
                if cond is not None:
                    head += f" if {_src(t, cond)}"
                line = f"{ind}{x} = {o}{head}{c}\n"
                if len(line) > 100:
                    inner = ind + "    "
                    line = (f"{ind}{x} = {o}\n{inner}{e}\n{inner}for {tg} in {_src(t, it)}\n"
                            + (f"{inner}if {_src(t, cond)}\n" if cond is not None else "") + f"{ind}{c}\n")
                a, _ = t.line_span(body[i].lineno, body[i].lineno)
                _, b = t.line_span(loop.end_lineno, loop.end_lineno)
                edits.append((a, b, line))
        if not edits:
            return None
        try:
            return apply_edits(text, edits), {"n_loops": len(edits)}
        except ValueError:
            return None


class ComprehensionToLoop(Family):
    name = "comprehension_to_loop"
    refactor = True
    paraphrases = (
        "Expand the list comprehension into an explicit for loop.",
        "Please rewrite the comprehension as a for loop that appends.",
        "Unroll the list comprehension into a loop so it is easier to debug.",
        "Replace the list comprehension with a plain loop.",
        "Make the comprehension an explicit loop with append.",
        "comprehension -> loop",
        "expand the listcomp",
        "use a for loop instead",
        "unroll comprehension",
        "explicit loop pls",
        "no list comprehension",
    )

    def normalize(self, tree):
        return _LoopToComp().visit(tree)

    def make(self, text, rng):
        done = self.rewrite(text, rng)
        if done is not None:
            return self.task(rng, text, done[0], **done[1])
        # no comprehension here: an append loop someone wrote, folded into a comprehension, is the target
        return _inverted(self, text, LoopToComprehension().rewrite(text), rng)

    def rewrite(self, text, rng):
        """(one comprehension of ``text``, chosen with ``rng``, as an append loop, meta) or None."""
        tree = ast.parse(text)
        t = Text(text)
        cands = []
        for scope in [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            own = list(own_scope_nodes(scope))
            for st in own:
                p = _comp_pattern(st) if isinstance(st, ast.Assign) else None
                if p is None:
                    continue
                # the loop variable will leak into this scope: it must not be used here otherwise
                if any(isinstance(n, ast.Name) and n.id in _names(p[1]) for n in own):
                    continue
                seg = t.segment(st)
                if t.line(st.lineno).strip() != seg.splitlines()[0].strip() or t.line(st.end_lineno).strip() != \
                        seg.splitlines()[-1].strip():
                    continue
                cands.append((st, p))
        if not cands:
            return None
        st, (x, tgt, it, cond, elt) = rng.choice(cands)
        ind = t.indent_of(st.lineno)
        tgt_s = _src(t, tgt)
        if isinstance(tgt, ast.Tuple) and tgt_s.startswith("("):
            tgt_s = tgt_s[1:-1]
        out = f"{ind}{x} = []\n{ind}for {tgt_s} in {_src(t, it)}:\n"
        if cond is not None:
            out += f"{ind}    if {_src(t, cond)}:\n{ind}        {x}.append({_src(t, elt)})\n"
        else:
            out += f"{ind}    {x}.append({_src(t, elt)})\n"
        a, b = t.line_span(st.lineno, st.end_lineno)
        return text[:a] + out + text[b:], {"target": x}


def _inverted(family: Family, text: str, done, rng):
    """The task whose target is ``text`` as written, from ``done`` = (a rewrite of it the other way, meta): kept
    only when the rewrite parses and means the same under the family's semantic key."""
    if done is None or not parses(done[0]) or family.semantic_key(done[0]) != family.semantic_key(text):
        return None
    return family.task(rng, done[0], text, **done[1], inverted=True)
