"""The edit guard against independent references (issue 19): what refactoring tools produce must pass, what
changes behaviour must not.

The units are a fixed selection of the training corpus's standard-library units (spark_nb.train.corpus), the
ones holding what each tool converts. The references are the tools themselves, used as documented: flynt
(%-format and str.format -> f-strings), isort (import order), autoflake (unused imports), black (layout only)
and rope (scope-aware renames). Every conversion a tool makes must be accepted under the family that asks for
it. The mutations are made with `ast` on the same units, and on the tools' conversions, so that "a refactor plus
one slip" is tried too: swapped operands, a changed constant, a dropped statement, a use renamed without its
binding. Each must be refused, except where the family may make exactly that change (a dropped print under
remove_debug); ≥ 99 % of each kind under each family, by the family's meaning check itself.
"""
from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import random
import tempfile
import warnings

import pytest

from spark_nb.edits.guard import judge, semantics_preserved
from spark_nb.train import corpus
from spark_nb.train.families import FAMILIES

for _tool in ("flynt", "isort", "autoflake", "black", "rope"):  # the references (the test extra)
    pytest.importorskip(_tool)

PER_KIND = 120  # units holding %-/str.format strings, imports, functions: 341 units together (Python 3.11)
REFACTOR_FAMILIES = sorted(name for name, fam in FAMILIES.items() if fam.refactor)


# -- the units -------------------------------------------------------------------------------------------------------


def _holds(tree) -> set[str]:
    """What in a unit some tool converts: old-style formatting, imports, functions with parameters or locals."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod) and isinstance(n.left, ast.Constant) \
                and isinstance(n.left.value, str):
            out.add("format")
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "format" \
                and isinstance(n.func.value, ast.Constant):
            out.add("format")
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.add("imports")
        elif isinstance(n, ast.FunctionDef) and _rename_sites(n, tree):
            out.add("rename")
    return out


@functools.lru_cache(maxsize=None)
def selection() -> dict[str, tuple[str, ...]]:
    """{kind: the first PER_KIND units of that kind}, reading the standard library's files in the order of a hash
    of their path (deterministic, and a spread over the library rather than its first packages)."""
    src = corpus.stdlib_source()
    files = sorted(src.files, key=lambda f: hashlib.sha1(f[0].encode()).hexdigest())
    wanted = {"format": [], "imports": [], "rename": []}
    for rel, path in files:
        text = corpus._read(path)
        for unit in corpus.dedup(corpus.extract_units(text or "", src.name, rel)):
            for kind in _holds(ast.parse(unit.text)) & set(wanted):
                if len(wanted[kind]) < PER_KIND:
                    wanted[kind].append(unit.text)
        if all(len(v) == PER_KIND for v in wanted.values()):
            break
    return {kind: tuple(v) for kind, v in wanted.items()}


def units() -> tuple[str, ...]:
    """Every selected unit once."""
    return tuple(dict.fromkeys(t for v in selection().values() for t in v))


# -- the tools: text in, text out --------------------------------------------------------------------------------


def flynt(code: str) -> str:
    from flynt.code_editor import fstringify_code_by_line
    from flynt.state import State

    return fstringify_code_by_line(code, State())[0]  # the defaults: % and .format, not concatenation or join


def isort_(code: str) -> str:
    import isort

    return isort.code(code)


def autoflake_(code: str) -> str:
    import autoflake

    return autoflake.fix_code(code, remove_all_unused_imports=True)  # every unused import, not only the stdlib's


def black_(code: str) -> str:
    import black

    return black.format_str(code, mode=black.Mode())


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)


def _rename_sites(fn, tree) -> dict[str, ast.AST]:
    """{what: node} a rope rename can take in one function: the function, its first parameter (not self / cls),
    its first local variable. Left out where rope 1.x gets it wrong or cannot know: a function that reaches
    names through locals() / vars() / eval / exec; a local that a comprehension or nested function binds too
    (rope renames uses inside the comprehension that are not the local's); a parameter or local that a keyword
    argument in the cell also names (rope renames `link=` in `self.copy_file(dest, link=link)` too)."""
    if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("locals", "vars", "eval", "exec")
           for n in ast.walk(fn)):
        return {}
    own, todo = [], list(fn.body)  # the nodes of fn's own scope, nested scopes' insides left out
    while todo:
        n = todo.pop(0)
        own.append(n)
        if not isinstance(n, _SCOPES):
            todo.extend(ast.iter_child_nodes(n))
    nested = {x.id if isinstance(x, ast.Name) else x.arg for n in own if isinstance(n, _SCOPES) for x in ast.walk(n)
              if isinstance(x, ast.arg) or (isinstance(x, ast.Name) and not isinstance(x.ctx, ast.Load))}
    keywords = {k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords}
    a = fn.args
    params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    declared = {name for n in own if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
    stored = sorted((n for n in own if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
                     and n.id not in declared | nested | keywords | {x.arg for x in params}),
                    key=lambda n: (n.lineno, n.col_offset))
    sites = {"function": fn}
    if params and params[0].arg not in keywords:
        sites["parameter"] = params[0]
    if stored:
        sites["local"] = stored[0]
    return sites


ROPE = ("local", "parameter", "function")


@functools.lru_cache(maxsize=None)
def rope_conversions() -> dict[str, list[tuple[str, str]]]:
    """{what: [(unit, renamed unit)]}: in the first function of each "rename" unit that has one, rope renames a
    local, a parameter, the function (top-level only), to a name not yet in the unit."""
    from rope.base.project import Project
    from rope.refactor.rename import Rename

    out: dict[str, list[tuple[str, str]]] = {what: [] for what in ROPE}
    with tempfile.TemporaryDirectory() as root:
        project = Project(root, ropefolder=None)
        resource = project.root.create_file("unit.py")
        for code in selection()["rename"]:
            tree = ast.parse(code)
            fns = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
            fns += [m for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body
                    if isinstance(m, ast.FunctionDef)]
            done = set()
            for fn in fns:
                for what, node in _rename_sites(fn, tree).items():
                    if what in done or (what == "function" and fn not in tree.body):
                        continue  # a method: rope renames it through every object it infers; not our family
                    name = fn.name if what == "function" else getattr(node, "arg", None) or node.id
                    start = code.index(name, _offset(code, node.lineno, node.col_offset))  # `def name`: after def
                    resource.write(code)
                    try:
                        project.do(Rename(project, resource, start).get_changes(f"{name}_renamed"))
                    except Exception:  # noqa: BLE001 - rope declines some renames; it is the reference, not the test
                        continue
                    out[what].append((code, resource.read()))
                    done.add(what)
        project.close()
    return out


# -- positions -------------------------------------------------------------------------------------------------------


def _offset(code: str, lineno: int, byte_col: int) -> int:
    """The character offset of ast's (line, UTF-8 byte column). Lines end at \\n only, as the parser counts
    them (str.splitlines would also split at form feeds, which the standard library has)."""
    lines = code.split("\n")
    start = sum(len(ln) + 1 for ln in lines[:lineno - 1])
    return start + len(lines[lineno - 1].encode()[:byte_col].decode(errors="ignore"))


def _span(code: str, node) -> tuple[int, int]:
    return _offset(code, node.lineno, node.col_offset), _offset(code, node.end_lineno, node.end_col_offset)


# -- mutations -------------------------------------------------------------------------------------------------------

_OPS = {ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**", ast.LShift: "<<",
        ast.RShift: ">>", ast.MatMult: "@"}  # non-commutative: a swap changes the value
_CMPS = {ast.Lt: "<", ast.Gt: ">", ast.LtE: "<=", ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in"}
KINDS = ("swap", "constant", "drop", "rename")


def _is_debug(stmt) -> bool:
    """A print / breakpoint() / pdb statement: what remove_debug may delete."""
    if isinstance(stmt, ast.Import):
        return all(a.name in ("pdb", "ipdb") for a in stmt.names)
    call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
    f = call.func if call else None
    return (isinstance(f, ast.Name) and f.id in ("print", "breakpoint")) or (
        isinstance(f, ast.Attribute) and f.attr == "set_trace" and isinstance(f.value, ast.Name)
        and f.value.id in ("pdb", "ipdb"))


def _free_to_change(family: str, tree) -> set[int]:
    """ids of the nodes the family may change or remove outright: there a mutation is the family's latitude."""
    inside = []
    for n in ast.walk(tree):
        if family == "remove_debug" and isinstance(n, ast.stmt) and _is_debug(n):
            inside.append(n)
        elif family == "add_type_hints":  # annotations, and the typing imports they need
            if isinstance(n, ast.arg) and n.annotation:
                inside.append(n.annotation)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns:
                inside.append(n.returns)
            elif isinstance(n, ast.AnnAssign):
                inside.append(n.annotation)
            elif isinstance(n, ast.ImportFrom) and n.module in ("typing", "__future__"):
                inside.append(n)
    free = {id(x) for n in inside for x in ast.walk(n)}
    if family == "sort_imports":  # an import of names the unit never reads: pruning it is the family's job
        read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        read |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        free |= {id(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                 and not {(a.asname or a.name).split(".")[0] for a in n.names} & read}
    return free


def _bodies(tree):
    for n in ast.walk(tree):
        for fld in ("body", "orelse", "finalbody"):
            b = getattr(n, fld, None)
            if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                yield n, b


def _sites(kind: str, tree, code: str):
    """(node, do, text edit) for each place the kind can mutate: `do()` changes the tree the same way and
    returns the undo. Sites where the change would not change the meaning are not offered."""
    if kind == "swap":
        for n in ast.walk(tree):
            if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
                a, b, sym = n.left, n.right, _OPS[type(n.op)]
            elif isinstance(n, ast.Compare) and len(n.ops) == 1 and type(n.ops[0]) in _CMPS:
                a, b, sym = n.left, n.comparators[0], _CMPS[type(n.ops[0])]
            else:
                continue
            if ast.dump(a) == ast.dump(b):
                continue  # x - x swapped is x - x
            text = f"({_seg(code, b)}) {sym} ({_seg(code, a)})"
            yield n, functools.partial(_swap, n), (*_span(code, n), text)
    elif kind == "constant":
        docs = {id(s.value) for _, body in _bodies(tree) for s in body if _is_string_statement(s)}
        fstring_parts = {id(x) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for x in ast.walk(n)}
        for n in ast.walk(tree):
            if not isinstance(n, ast.Constant) or id(n) in docs or id(n) in fstring_parts:
                continue  # a docstring does nothing when run; inside an f-string 3.11 gives no positions
            v = n.value
            new = (not v if isinstance(v, bool) else v + 1 if isinstance(v, (int, float, complex))
                   else v + "x" if isinstance(v, str) else v + b"x" if isinstance(v, bytes) else None)
            if new is not None:
                yield n, functools.partial(_set, n, "value", new, kind=None), (*_span(code, n), repr(new))
    elif kind == "drop":
        for parent, body in _bodies(tree):
            for s in body:
                if isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)):
                    continue  # dropping pass, a docstring or `...` changes nothing that runs
                if s is body[-1] and isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        isinstance(s, ast.Return) and (s.value is None or
                                                       (isinstance(s.value, ast.Constant) and s.value.value is None)):
                    continue  # a function returns None at its end anyway
                yield s, functools.partial(_drop, body, s), _drop_edit(code, body, s)
    elif kind == "rename":
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        bound |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
        bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                     ast.ClassDef))}
        bound |= {(a.asname or a.name).split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        for n in ast.walk(tree):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in bound:
                new = n.id + "_mutant"  # a name nothing binds: the use no longer reaches its binding
                yield n, functools.partial(_set, n, "id", new), (*_span(code, n), new)


def _is_string_statement(s) -> bool:
    return isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)


def _seg(code: str, node) -> str:
    a, b = _span(code, node)
    return code[a:b]


def _swap(n):
    if isinstance(n, ast.BinOp):
        n.left, n.right = n.right, n.left
    else:
        n.left, n.comparators = n.comparators[0], [n.left]
    return lambda: _swap(n)


def _set(n, field, value, **also):
    old = {k: getattr(n, k) for k in (field, *also)}
    setattr(n, field, value)
    for k, v in also.items():
        setattr(n, k, v)
    return lambda: [setattr(n, k, v) for k, v in old.items()]


def _drop(body, s):
    saved = body[:]
    body[:] = [x for x in body if x is not s] or [ast.Pass()]
    return lambda: body.__setitem__(slice(None), saved)


def _drop_edit(code: str, body, s) -> tuple[int, int, str]:
    """Delete the statement's lines (a lone statement becomes `pass`); one that shares its lines loses only its
    own text."""
    a, b = _span(code, s)
    first = min([s.lineno] + [d.lineno for d in getattr(s, "decorator_list", [])])
    line = code.split("\n")[first - 1]
    indent = line[:len(line) - len(line.lstrip())]
    start, end = _offset(code, first, 0), code.find("\n", b)
    end = len(code) if end < 0 else end + 1
    head_ok = line.lstrip().startswith("@") if first < s.lineno else not code[start:a].strip()
    if head_ok and code[b:end].strip()[:1] in ("", "#"):
        return start, end, "" if len(body) > 1 else indent + "pass\n"
    return a, b, "" if len(body) > 1 else "pass"


@functools.lru_cache(maxsize=None)
def mutants(code: str) -> tuple[tuple[str, frozenset, str], ...]:
    """(kind, the families it is tried under, mutated code): for each kind, sites picked at random (seeded by the
    code) until every family has one it may not change itself. A site counts only where the text edit gives
    exactly the mutated tree (in 3.11 ast gives no positions inside f-strings: such sites are passed over), and
    where Python would compile the result (a `nonlocal` left without its binding is the parse check's business)."""
    tree = ast.parse(code)
    free = {family: _free_to_change(family, tree) for family in REFACTOR_FAMILIES}
    out = []
    for kind in KINDS:
        sites = list(_sites(kind, tree, code))
        random.Random(f"{kind}:{code}").shuffle(sites)
        need = set(REFACTOR_FAMILIES)
        for node, do, (a, b, text) in sites:
            families = {family for family in need if id(node) not in free[family]}
            if not families:
                continue
            undo = do()
            expected = ast.dump(tree)
            undo()
            mutated = code[:a] + text + code[b:]
            if _compiles(mutated) and ast.dump(_parse(mutated)) == expected:
                out.append((kind, frozenset(families), mutated))
                need -= families
                if not need:
                    break
    return tuple(out)


# -- the references' conversions ---------------------------------------------------------------------------------

TOOLS = {"flynt": flynt, "isort": isort_, "autoflake": autoflake_, "black": black_}


@functools.lru_cache(maxsize=None)
def conversions(tool: str) -> tuple[tuple[str, str], ...]:
    """(unit, the tool's conversion) for each unit the tool changes. A conversion that does not parse is the
    tool's mistake, not a refactor: left out."""
    if tool.startswith("rope-"):
        pairs = rope_conversions()[tool[len("rope-"):]]
    else:
        pairs = []
        for code in units():
            try:
                pairs.append((code, TOOLS[tool](code)))
            except Exception:  # noqa: BLE001 - a tool that gives up on a unit converts nothing
                continue
    return tuple((code, new) for code, new in pairs if new != code and _parses(new))


def _parse(code: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes in the library's strings are not ours to report
        return ast.parse(code)


def _compiles(code: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(code, "<unit>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _parses(code: str) -> bool:
    try:
        _parse(code)
    except SyntaxError:
        return False
    return True


def _diff(a: str, b: str) -> str:
    return "".join(ln for ln in difflib.unified_diff(a.splitlines(True), b.splitlines(True), n=0)
                   if ln[:1] in "+-")


# -- the tests -------------------------------------------------------------------------------------------------------

CASES = [("flynt", "to_fstring"), ("isort", "sort_imports"), ("autoflake", "sort_imports"),
         ("rope-local", "rename_variable"), ("rope-parameter", "rename_variable"),
         ("rope-function", "rename_function")] + [("black", family) for family in REFACTOR_FAMILIES]
# the family's own tool: its conversions are mutated too, a refactor plus one slip
FAMILY_TOOLS = {"to_fstring": ("flynt",), "sort_imports": ("isort", "autoflake"),
                "rename_variable": ("rope-local", "rope-parameter"), "rename_function": ("rope-function",)}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # rope's own
@pytest.mark.parametrize("tool, family", CASES, ids=[f"{t}-{f}" for t, f in CASES])
def test_the_guard_accepts_what_the_tool_converts(tool, family):
    pairs = conversions(tool)
    assert len(pairs) >= 30, f"{tool} changed only {len(pairs)} of {len(units())} units: the test would say little"
    refused = []
    for code, new in pairs:
        ok, error, checked = judge(code, new, family)
        if not (ok and checked):
            refused.append(_diff(code, new))
    print(f"\n{tool} changed {len(pairs)} of {len(units())} units; {family} accepts "
          f"{len(pairs) - len(refused)}")
    assert not refused, f"{len(refused)} refused, e.g.:\n" + "\n".join(refused[:5])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("family", REFACTOR_FAMILIES)
def test_the_guard_refuses_what_changes_behaviour(family):
    pairs = [(code, code) for code in units()]
    pairs += [pair for tool in FAMILY_TOOLS.get(family, ()) for pair in conversions(tool)]
    tried = dict.fromkeys(KINDS, 0)
    missed = {kind: [] for kind in KINDS}
    for code, base in pairs:
        for kind, families, mutated in mutants(base):
            if family not in families:
                continue
            tried[kind] += 1
            # the meaning check itself must see it: the guard's other checks (a name nothing binds) would hide a
            # key that misses a renamed use
            if semantics_preserved(code, mutated, family) is not False:
                missed[kind].append(_diff(base, mutated))
    n, n_missed = sum(tried.values()), sum(map(len, missed.values()))
    print(f"\n{family}: refused {n - n_missed} of {n} mutations (" + ", ".join(
        f"{kind} {tried[kind] - len(missed[kind])}/{tried[kind]}" for kind in KINDS) + ")")
    for kind in KINDS:
        for d in missed[kind]:
            print(f"missed {kind}:\n{d}")
    assert min(tried.values()) >= 100, tried
    for kind in KINDS:
        assert tried[kind] - len(missed[kind]) >= 0.99 * tried[kind], kind


@pytest.mark.parametrize("expr, x", [
    ("'%.2f|%+08.3f|%0+8.2f|% .1e' % (x, x, x, x)", 3.14159), ("'%#x %05o %X' % (x, x, x)", 255),
    ("'%.f %g %G %E' % (x, x, x, x)", 12345.678), ("'%d|%+5i|%05u' % (len(x), len(x), len(x))", "abc"),
    ("'%s %r %a' % (x, x, x)", "é"), ("'%s' % str(x)", 7), ("'<%s>' % repr(x)", "q"),
])
def test_the_f_string_the_key_takes_for_a_percent_format_prints_the_same(expr, x):
    """Python's % operator is the reference for the specs the to_fstring key maps (flynt converts only some)."""
    from spark_nb.train.families.modernise import _ToJoined

    tree = _ToJoined().visit(ast.parse(expr, mode="eval"))
    assert not any(isinstance(n, ast.BinOp) for n in ast.walk(tree)), "the key left the % format as it was"
    assert eval(compile(tree, "<key>", "eval"), {"x": x}) == eval(expr, {"x": x})
