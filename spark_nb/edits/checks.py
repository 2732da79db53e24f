"""What the guard refuses whatever the edit family, once a result parses: each check returns one error message
naming what is wrong, or None.

    hint_error(original, result)                                            # a new type hint that is not a type
    hint_contradiction(original, result)                 # new hints the function's own arithmetic contradicts
    unbound_error(original, result, context=earlier_cells, names=user_ns)  # names the edit reads, nothing binds
    fix_scope_error(original, result, "fix_syntax_error", context, names)  # a fix that rewrites other lines

Each judges only what the edit introduced: a name the original already read, a hint it already had, is the
user's business. Where a check cannot tell (a star import, a cell Python's symbol table refuses, a fix whose
error it cannot locate), it says nothing rather than refuse valid code.
"""
from __future__ import annotations

import ast
import builtins
import difflib
import io
import operator
import re
import symtable
import tokenize
import warnings

__all__ = ["unbound_error", "unbound_names", "hint_error", "hint_contradiction", "fix_scope_error"]

# what a notebook's namespace holds without any cell binding it: IPython's own names and output history (_3, _i3)
IPYTHON = frozenset({"get_ipython", "display", "In", "Out", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh",
                     "_dh", "exit", "quit"})
_ALWAYS = re.compile(r"_i?\d+|__\w+__")  # history entries and dunders (__name__, __file__, __class__ in a method)
_WORD = re.compile(r"[^\W\d]\w*")


# -- names nothing binds ---------------------------------------------------------------------------------------------


def unbound_error(original: str, result: str, context=(), names=()) -> str | None:
    """"uses names nothing defines: ..." when the result reads names that neither it, the earlier cells, the
    kernel's namespace (`names`) nor builtins bind, and that the original did not read."""
    new = unbound_names(original, result, context, names)
    if not new:
        return None
    return (f"uses names nothing defines: {', '.join(new)} (not in this cell, earlier cells, the kernel or "
            "builtins): import or define them first")


def unbound_names(original: str, result: str, context=(), names=()) -> list[str] | None:
    """The names `unbound_error` refuses, in order of first use; None when it cannot judge (a star import in the
    result or an earlier cell, `%run`, or a result Python's symbol table refuses)."""
    found = _globals(result)
    known = _known(context, names)
    if found is None or known is None:
        return None
    reads, bound, star = found
    if star:
        return None
    read = _read_by(original)
    missing = {m for m in reads - bound - known
               if not _ALWAYS.fullmatch(m) and not (m in read if read is not None else m in original)}
    return _in_order(result, missing)


def free_names(code: str) -> set[str] | None:
    """The names code reads at module scope and does not bind (earlier cells, the kernel or builtins supply them);
    None when it does not parse or Python's symbol table refuses it."""
    found = _globals(code)
    return None if found is None else found[0] - found[1]


def _globals(code: str):
    """(names read from module scope, names bound at module scope, star import) of parsing code, scope by scope
    as Python resolves them (symtable: a method does not see its class's names, a comprehension's variable stays
    inside it); None when symtable refuses the code (`nonlocal` at module level and the like)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tables, tree = [symtable.symtable(code, "<cell>", "exec")], ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    reads, bound = set(), set()
    while tables:
        table = tables.pop()
        module = table.get_type() == "module"
        for sym in table.get_symbols():
            name = sym.get_name()
            if sym.is_referenced() and sym.is_global():
                reads.add(name)
            if (module and (sym.is_assigned() or sym.is_imported() or sym.is_namespace())) or \
                    (sym.is_declared_global() and sym.is_assigned()):
                bound.add(name)
        tables.extend(table.get_children())
    deleted_only = _deleted_only(tree)  # symtable counts `del x` as binding x: deleting an unbound name fails
    star = any(isinstance(n, ast.ImportFrom) and n.names[0].name == "*" for n in ast.walk(tree))
    return reads | deleted_only, bound - deleted_only, star


def _deleted_only(tree) -> set[str]:
    deleted = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Del)}
    return deleted - {name for node in ast.walk(tree) for name in _binds(node)}


def _binds(node) -> list[str]:
    """The names one node binds: an assignment target, a def or class, a parameter, an import, a capture."""
    if isinstance(node, ast.Name):
        return [node.id] if isinstance(node.ctx, ast.Store) else []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
        return [node.name] if node.name else []
    return [node.rest] if isinstance(node, ast.MatchMapping) and node.rest else []


def _known(context, names) -> set[str] | None:
    """Names bound before the cell runs: earlier cells' module-level names, the kernel's, builtins; None when an
    earlier cell could bind anything (a star import, %run). A cell that is not plain Python (magics) lends all
    its words: this check must not refuse what the user's own cell could have defined."""
    known = set(names) | set(dir(builtins)) | IPYTHON
    for cell in [context] if isinstance(context, str) else context:
        found = _globals(cell)
        if found is None:
            if re.search(r"import\s+\*|^\s*%run\b", cell, re.M):
                return None
            known |= set(_WORD.findall(cell))
        elif found[2]:
            return None
        else:
            known |= found[1]
    return known


def _read_by(original: str) -> set[str] | None:
    """What the original reads (a name it relies on is the user's business); None when it does not parse (a
    fix's original): then any name in its text counts, even inside a longer word (`appendweakref.ref(` reads
    `weakref` once its bracket is back)."""
    try:
        tree = ast.parse(original)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)}


def _in_order(code: str, missing: set[str]) -> list[str]:
    first = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name) and node.id in missing:
            first[node.id] = min(first.get(node.id, (node.lineno, node.col_offset)), (node.lineno, node.col_offset))
    return sorted(missing, key=lambda m: (first.get(m, (0, 0)), m))


# -- type hints that are not types -----------------------------------------------------------------------------------


def hint_error(original: str, result: str) -> str | None:
    """"line N: 'x' is not a type (...)" for the first annotation the result adds that is not a type expression:
    names, dotted names, their subscripts, `X | Y`, None, a string holding one; inside a subscript also
    constants, `...` and lists (Literal["a", 1], tuple[int, ...], Callable[[int], str]); Annotated's metadata
    and Literal's values may be anything."""
    had = _hints(original)
    for node, what in _annotations(ast.parse(result)):
        text = ast.get_source_segment(result, node) or ast.unparse(node)
        if (ast.unparse(node) in had if had is not None else text in original):
            continue
        if not _type_expr(node):
            return f"line {node.lineno}: {text!r} is not a type ({what}): a type hint must name a type"
    return None


# one value of each builtin scalar type a hint may name: what an operation on values of that type does is what
# Python does with these (the numeric tower: an int is accepted where float or complex is hinted, as PEP 484 says)
_SAMPLES = {"int": 3, "float": 2.5, "complex": 1.5j, "bool": True, "str": "ab", "bytes": b"ab"}
_ACCEPTS = {"float": (int, float), "complex": (int, float, complex)}
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
              ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
              ast.BitXor: operator.xor, ast.BitAnd: operator.and_, ast.USub: operator.neg, ast.UAdd: operator.pos,
              ast.Invert: operator.invert, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
              ast.GtE: operator.ge}


def hint_contradiction(original: str, result: str) -> str | None:
    """"line N: ..." where a function whose hints the edit added or changed cannot do what its own code does with
    them: an operation on parameters hinted as builtin scalars (int, float, complex, bool, str, bytes) and
    constants that raises TypeError for values of those types (`w * h` with w, h: str), a return of such an
    operation whose type its return hint does not accept (float where it says int), or a value returned where the
    return hint says None. Only expressions made of
    those parameters (never reassigned in the function), constants and operators are judged, with one value of
    each type: what Python does with them; anything else (calls, attributes, other hints) is not judged."""
    had = _hints(original)
    for node in ast.walk(ast.parse(result)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if had is not None and all(ast.unparse(h) in had for h, _ in function_hints(node)):
            continue  # the edit added or changed none of its hints
        error = _returns_despite_none(node) or _contradiction(node)
        if error:
            return error
    return None


def _returns_despite_none(fn) -> str | None:
    """A function hinted `-> None` that returns a value in its own scope (`return x`, not `return None`)."""
    if not (isinstance(fn.returns, ast.Constant) and fn.returns.value is None):
        return None
    for node in _own_nodes(fn):
        if isinstance(node, ast.Return) and node.value is not None and \
                not (isinstance(node.value, ast.Constant) and node.value.value is None):
            return (f"line {node.lineno}: {fn.name} returns {ast.unparse(node.value)!r} here, but its return hint "
                    "says None: a type hint must fit what the code does")
    return None


def _contradiction(fn) -> str | None:
    a = fn.args
    params = {arg.arg: arg.annotation.id for arg in a.posonlyargs + a.args + a.kwonlyargs
              if isinstance(arg.annotation, ast.Name) and arg.annotation.id in _SAMPLES}
    body = list(_own_nodes(fn))
    assigned = {n.id for n in body if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    assigned |= {name for n in body if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
    assigned |= {n.name for n in body if isinstance(n, ast.ExceptHandler) and n.name}
    assigned |= {(a.asname or a.name).split(".")[0] for n in body if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in n.names}
    values = {name: _SAMPLES[hint] for name, hint in params.items() if name not in assigned}
    if not values:
        return None
    for node in body:
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare)):
            try:
                _value(node, values)
            except TypeError as err:
                used = ", ".join(f"{n}: {params[n]}" for n in values if n in _names(node))
                return (f"line {node.lineno}: {ast.unparse(node)!r} cannot run with the hints {used} ({err}): a "
                        "type hint must fit what the code does")
            except _Unjudged:
                pass
        elif isinstance(node, ast.Return) and node.value is not None and isinstance(fn.returns, ast.Name) \
                and fn.returns.id in _SAMPLES:
            try:
                got = type(_value(node.value, values))
            except (TypeError, _Unjudged):
                continue
            hint = fn.returns.id
            if not issubclass(got, _ACCEPTS.get(hint, (type(_SAMPLES[hint]),))):
                used = ", ".join(f"{n}: {params[n]}" for n in values if n in _names(node.value))
                return (f"line {node.lineno}: {fn.name} returns a {got.__name__} here ({ast.unparse(node.value)!r}"
                        f"{' with ' + used if used else ''}), but its return hint says {hint}: a type hint must "
                        "fit what the code does")
    return None


class _Unjudged(Exception):
    """An expression the check does not evaluate."""


def _value(node, values):
    """The value of an expression of parameters (values), constants and operators, as Python computes it."""
    if isinstance(node, ast.Name) and node.id in values:
        return values[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex, str, bytes)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _value(node.left, values), _value(node.right, values)
        return _computed(_OPERATORS[type(node.op)], left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _computed(_OPERATORS[type(node.op)], _value(node.operand, values))
    if isinstance(node, ast.Compare) and all(type(op) in _OPERATORS for op in node.ops):
        operands = [_value(node.left, values)] + [_value(c, values) for c in node.comparators]
        return all(_computed(_OPERATORS[type(op)], x, y) for op, x, y in zip(node.ops, operands, operands[1:]))
    raise _Unjudged


def _computed(op, *args):
    """op(*args); an error other than a TypeError (a sample divided by zero, a huge power) judges nothing."""
    if op is operator.pow or op is operator.lshift:
        if any(isinstance(a, (str, bytes)) for a in args):
            return op(*args)  # raises the TypeError, cheaply
        raise _Unjudged  # a constant exponent may be huge
    if op is operator.mod and isinstance(args[0], (str, bytes)):
        raise _Unjudged  # %-formatting: whether it works depends on the string's own text, not its type
    if op is operator.mul and any(isinstance(a, (str, bytes)) for a in args) \
            and any(isinstance(a, int) and abs(a) > 1_000 for a in args):
        raise _Unjudged  # "ab" * 10**9 is valid, and large
    try:
        return op(*args)
    except TypeError:
        raise
    except Exception:
        raise _Unjudged from None


def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _own_nodes(fn):
    """The nodes of a function's own scope: its body without nested functions, lambdas, classes and
    comprehensions (their names are their own)."""
    todo = list(fn.body)
    while todo:
        node = todo.pop()
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp,
                                 ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            yield node
            todo.extend(ast.iter_child_nodes(node))


def function_hints(fn):
    """(annotation, what it annotates) for a function's own parameters and return."""
    a = fn.args
    for arg in a.posonlyargs + a.args + [a.vararg] + a.kwonlyargs + [a.kwarg]:
        if arg is not None and arg.annotation is not None:
            yield arg.annotation, f"annotation of parameter {arg.arg} of {fn.name}"
    if fn.returns is not None:
        yield fn.returns, f"return annotation of {fn.name}"


def _hints(code: str) -> set[str] | None:
    try:
        return {ast.unparse(node) for node, _ in _annotations(ast.parse(code))}
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _annotations(tree):
    """(annotation, what it annotates) for every parameter, return and annotated assignment."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from function_hints(node)
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation, f"annotation of {ast.unparse(node.target)}"


def _type_expr(node, inside: bool = False) -> bool:
    """A type expression; inside: an argument of a subscripted type, where constants and lists are arguments."""
    if isinstance(node, ast.Name) or (isinstance(node, ast.Attribute) and _dotted(node)):
        return True
    if isinstance(node, ast.Constant):
        if node.value is None or inside:
            return True
        return isinstance(node.value, str) and _string_type(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _type_expr(node.left, inside) and _type_expr(node.right, inside)
    if isinstance(node, ast.Subscript) and _dotted(node.value):
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        last = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
        if last == "Literal":
            return True
        if last == "Annotated":
            args = args[:1]
        return all(_type_expr(arg, inside=True) for arg in args)
    if isinstance(node, ast.Starred):  # *Ts, *tuple[int, ...]
        return _type_expr(node.value, inside)
    if inside and isinstance(node, ast.List):
        return all(_type_expr(e, inside=True) for e in node.elts)
    if inside and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return isinstance(node.operand, ast.Constant)
    return False


def _dotted(node) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _string_type(text: str) -> bool:
    try:
        return _type_expr(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


# -- a fix that changes more than it fixes ---------------------------------------------------------------------------


def fix_scope_error(original: str, result: str, family: str | None, context=(), names=()) -> str | None:
    """"the fix changes N lines beyond line L" when a fix family's result differs from the original on lines
    other than those it fixes: the syntax error's line (with its neighbours, and the bracket or block it spans),
    or the lines using a misspelt name. None for other families or where the error cannot be located."""
    if family == "fix_syntax_error":
        found = _syntax_error_lines(original, result)
    elif family == "fix_misspelt_name":
        found = _misspelt_lines(original, context, names)
    else:
        return None
    if not found:
        return None
    allowed, blamed = found
    beyond = _changed_beyond(original.splitlines(), result.splitlines(), allowed)
    if not beyond:
        return None
    return (f"the fix changes {beyond} line{'s' * (beyond != 1)} beyond {_lines(blamed)}: a fix changes only "
            "the line it fixes")


def _changed_beyond(before: list[str], after: list[str], allowed: set[int]) -> int:
    """How many lines the change touches outside `allowed` (1-based lines of `before`); a change on allowed
    lines may add one line (a closing bracket, a body for a completed header)."""
    beyond = 0
    ops = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    for op, i1, i2, j1, j2 in ops:
        if op == "equal":
            continue
        outside = sum(i + 1 not in allowed for i in range(i1, i2))
        near = outside < i2 - i1 or (i1 == i2 and ({i1, i1 + 1} & allowed))
        beyond += outside + max(0, (j2 - j1) - (i2 - i1) - bool(near))
    return beyond


def _syntax_error_lines(original: str, result: str) -> tuple[set[int], set[int]] | None:
    """(lines the fix may change, lines Python's parser blames): those it blames, one either side, widened to
    the block whose indentation it rejects and to the brackets (in the result) that open or close on them;
    None when the original compiles."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(original, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        return None
    except SyntaxError as err:
        if not err.lineno:
            return None
        first, last = err.lineno, max(err.end_lineno or err.lineno, err.lineno)
        indentation = isinstance(err, IndentationError)
    except (ValueError, RecursionError, MemoryError):
        return None
    allowed = set(range(first - 1, last + 2))
    if indentation:
        allowed |= _block_start(original, first)
    for a, b in _bracket_spans(result):
        if first <= a <= last or first <= b <= last:
            allowed |= set(range(a, b + 1))
    return {n for n in allowed if n >= 1}, set(range(first, last + 1))


def _block_start(code: str, line: int) -> set[int]:
    """Where a wrong indentation at `line` may have begun: the lines that opened the indentation levels just
    below and just above its own (one of them, or `line` itself, is indented wrongly)."""
    opened = []  # (line, width) of the indentation levels open, innermost last
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.start[0] >= line:
                break
            if tok.type == tokenize.INDENT:
                opened.append((tok.start[0], len(tok.string)))
            elif tok.type == tokenize.DEDENT and opened:
                opened.pop()
    except (tokenize.TokenError, SyntaxError):
        pass
    lines = code.splitlines()
    width = len(lines[line - 1]) - len(lines[line - 1].lstrip()) if line <= len(lines) else 0
    below = [at for at, w in opened if w < width][-1:]
    above = [at for at, w in opened if w > width][:1]
    return set(below + above)


def _bracket_spans(code: str) -> list[tuple[int, int]]:
    """(opening line, closing line) of every bracket pair spanning lines."""
    spans, stack = [], []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                stack.append(tok.start[0])
            elif tok.type == tokenize.OP and tok.string in ")]}" and stack:
                start = stack.pop()
                if start != tok.start[0]:
                    spans.append((start, tok.start[0]))
    except (tokenize.TokenError, SyntaxError):
        pass
    return spans


def _misspelt_lines(original: str, context, names) -> tuple[set[int], set[int]] | None:
    """(lines the fix may change, the same): those using a name the original reads that nothing binds, and
    those of a name it binds but never reads that is spelt like it (the definition may be the misspelt side);
    None when there is none to find (the misspelt name is an attribute, or bound by something unseen)."""
    bad = unbound_names("", original, context, names)
    if not bad:
        return None
    nodes = list(ast.walk(ast.parse(original)))
    read = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    unread = {name for n in nodes for name in _binds(n)} - read
    bad = set(bad).union(*(difflib.get_close_matches(b, unread, n=5, cutoff=0.8) for b in bad))
    lines = {n.lineno for n in nodes if hasattr(n, "lineno") and
             ((isinstance(n, ast.Name) and n.id in bad) or bad.intersection(_binds(n)))}
    return lines, lines


def _lines(numbers: set[int]) -> str:
    """"line 3", "lines 3-5", "lines 2, 7-8"."""
    runs, ordered = [], sorted(numbers)
    for n in ordered:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
    return ("line " if len(ordered) == 1 else "lines ") + text
