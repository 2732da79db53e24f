"""Edit families on real standard-library units: validity, semantic keys, independent checks, line ops."""
from __future__ import annotations

import ast
import functools
import io
import random
import tokenize

import pytest

from spark_nb.train import corpus as C
from spark_nb.train.families import FAMILIES, EditTask, parses
from spark_nb.train.families.imports import import_key
from spark_nb.train.tasks import (KEEP, Op, apply_line_ops, continuation_task, line_aligned_example, make_tasks,
                                  read_jsonl, to_line_ops, write_jsonl)

PER_FAMILY = 30
MIN_TASKS = 5
HUMAN = {"add_docstrings", "add_type_hints", "add_comments", "add_error_handling"}


@functools.lru_cache(maxsize=1)
def stdlib_units():
    corp = C.build_corpus(include_packages=False, limit_files=260)
    units = corp.train + corp.validation + corp.test
    random.Random(1).shuffle(units)
    return units


@functools.lru_cache(maxsize=None)
def tasks_for(name: str) -> list[EditTask]:
    fam = FAMILIES[name]
    rng = random.Random(hash(name) & 0xFFFF)
    out = []
    for u in stdlib_units():
        t = fam.make(u.text, rng)  # direct call: a bug must raise here, not be swallowed
        if t is not None:
            t.meta["unit"] = u.text
            out.append(t)
            if len(out) >= PER_FAMILY:
                break
    return out


def test_registry():
    assert len(FAMILIES) >= 12
    assert sum(not f.mechanical for f in FAMILIES.values()) >= 4
    assert HUMAN <= {n for n, f in FAMILIES.items() if not f.mechanical}
    for name, fam in FAMILIES.items():
        assert fam.name == name
        assert len(fam.paraphrases) >= 8, name
        lens = sorted(len(p) for p in fam.paraphrases)
        assert lens[0] <= 25 and lens[-1] >= 30, name  # terse to formal


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_on_stdlib(name):
    fam = FAMILIES[name]
    tasks = tasks_for(name)
    assert len(tasks) >= MIN_TASKS, f"{name}: only {len(tasks)} tasks"
    for t in tasks:
        assert t.family == name and t.instruction and "{" not in t.instruction.replace("{}", "")
        assert t.before != t.after
        assert parses(t.after)
        assert parses(t.before) == fam.before_parses
        if fam.refactor:
            assert fam.semantic_key(t.before) == fam.semantic_key(t.after), (name, t.before, t.after)
        if not fam.mechanical and t.meta.get("mode") != "real":
            assert t.after == t.meta["unit"]  # human-written target
        # line-aligned ops reproduce the target exactly
        ops = to_line_ops(t.before, t.after)
        assert apply_line_ops(t.before, ops) == t.after
        assert sum(op.kind != "insert" for op in ops) == len(t.before.splitlines())


# ------------------------------------------------------------------------------------------------ independent checks
def _name_diffs(a, b, out):
    """Parallel walk of two ASTs: record (a_name, b_name) where they differ; anything else must be equal."""
    if isinstance(a, ast.Name) and isinstance(b, ast.Name):
        if a.id != b.id:
            out.append((a.id, b.id))
        assert type(a.ctx) is type(b.ctx)
        return
    if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)) and a.name != b.name:
        out.append((a.name, b.name))
    assert type(a) is type(b)
    for (fa, va), (fb, vb) in zip(ast.iter_fields(a), ast.iter_fields(b)):
        if fa == "name" and isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(va, list):
            assert len(va) == len(vb)
            for x, y in zip(va, vb):
                if isinstance(x, ast.AST):
                    _name_diffs(x, y, out)
                else:
                    assert x == y
        elif isinstance(va, ast.AST):
            _name_diffs(va, vb, out)
        else:
            assert va == vb, (fa, va, vb)


@pytest.mark.parametrize("name", ["rename_variable", "rename_function"])
def test_rename_maps_back(name):
    """Independent of semantic_key: the only AST differences are old -> new renames, and mapping the new
    name back at those places gives the original; no other binding of the new name exists in ``before``."""
    for t in tasks_for(name):
        old, new = t.meta["old"], t.meta["new"]
        diffs = []
        _name_diffs(ast.parse(t.before), ast.parse(t.after), diffs)
        assert diffs and set(diffs) == {(old, new)}
        before_names = {n.id for n in ast.walk(ast.parse(t.before)) if isinstance(n, ast.Name)}
        if name == "rename_function" or new not in t.meta.get("unit", ""):
            assert new not in before_names
        assert new in t.instruction


class Anything:
    """Stand-in value for free names: every attribute, call, index and format gives something printable."""

    def __init__(self, tag="v"):
        self.tag = tag

    def __getattr__(self, k):
        return Anything(f"{self.tag}.{k}")

    def __call__(self, *a, **k):
        return Anything(f"{self.tag}()")

    def __getitem__(self, k):
        return Anything(f"{self.tag}[{k!r}]")

    def __repr__(self):
        return f"<A {self.tag}>"

    def __str__(self):
        return f"A:{self.tag}"

    def __format__(self, spec):  # like object.__format__: the empty spec means str()
        return str(self) if not spec else f"A:{self.tag}:{spec}"

    def __len__(self):
        return 2

    def __iter__(self):  # finite: the __getitem__ fallback would iterate forever
        return iter([Anything(f"{self.tag}#0"), Anything(f"{self.tag}#1")])


def _converted_pairs(a, b):
    if isinstance(b, ast.JoinedStr) and not isinstance(a, ast.JoinedStr):
        yield a, b
        return
    if type(a) is not type(b):
        return
    for fa, fb in zip(ast.iter_fields(a), ast.iter_fields(b)):
        va, vb = fa[1], fb[1]
        if isinstance(va, list) and isinstance(vb, list):
            for x, y in zip(va, vb):
                if isinstance(x, ast.AST):
                    yield from _converted_pairs(x, y)
        elif isinstance(va, ast.AST) and isinstance(vb, ast.AST):
            yield from _converted_pairs(va, vb)


def _eval(expr, ns):
    try:
        return ("ok", eval(compile(ast.Expression(expr), "<e>", "eval"), dict(ns)))
    except Exception:  # noqa: BLE001 - both versions must fail (which error comes first may differ:
        return ("err",)  # str.format evaluates all arguments before formatting any)


def test_fstring_values_match():
    checked = 0
    for t in tasks_for("to_fstring"):
        pairs = list(_converted_pairs(ast.parse(t.before), ast.parse(t.after)))
        assert pairs
        for old, new in pairs:
            names = {n.id for n in ast.walk(old) if isinstance(n, ast.Name)}
            for sample in ({k: Anything(k) for k in names}, {k: 42 for k in names}, {k: "txt" for k in names}):
                ns = {"__builtins__": __builtins__, **sample}
                assert _eval(old, ns) == _eval(new, ns), (ast.unparse(old), ast.unparse(new))
                checked += 1
    assert checked >= 10


def test_fstring_synthetic_cases():
    fam = FAMILIES["to_fstring"]
    src = ('def f(name, n, xs):\n    a = "hi %s, %r!" % (name, n)\n    b = "{} has {:>4} items {{ok}}".format(name, n)\n'
           '    c = "{0}-{0}-{k}".format(name, k=n)\n    d = "%d" % n\n    return a, b, c, d\n')
    t = fam.make(src, random.Random(0))
    assert 'f"hi {name}, {n!r}!"' in t.after or "f'hi {name}, {n!r}!'" in t.after
    assert '"%d" % n' in t.after  # %d is not equivalent to {n}: left alone
    ns_b, ns_a = {}, {}
    exec(t.before, ns_b)
    exec(t.after, ns_a)
    for args in (("bob", 3, []), ("x", 12345, [1])):
        assert ns_b["f"](*args) == ns_a["f"](*args)


def test_fstrings_people_wrote_become_targets():
    """Code without old-style formatting: its f-strings, put back into %/str.format, are the before; the code as
    written is the target, and both compute the same strings (checked by running them)."""
    fam = FAMILIES["to_fstring"]
    src = ('def f(name, n, d):\n    a = f"hi {name!r}, {n:>4} is 100% {{braced}}"\n    b = f\'{d["k"]}-{n + 1}\'\n'
           '    c = rf"raw {name}\\d"\n    w = 6\n    e = f"{n:{w}}"\n    return a, b, c, e\n')
    for seed in range(6):  # both old styles get drawn
        t = fam.make(src, random.Random(seed))
        assert t.after == src and t.meta["inverted"]
        assert 'c = rf"raw {name}\\d"' in t.before and 'e = f"{n:{w}}"' in t.before  # raw, computed spec: kept
        assert 'a = f' not in t.before and "b = f" not in t.before
        assert 'd["k"]' in t.before  # the expression as written, not re-quoted
        ns_b, ns_a = {}, {}
        exec(t.before, ns_b)
        exec(t.after, ns_a)
        for args in (("bob", 3, {"k": 1}), (("t", "u"), 12345, {"k": "x"})):
            assert ns_b["f"](*args) == ns_a["f"](*args)
        assert fam.semantic_key(t.before) == fam.semantic_key(t.after)


def test_comprehension_families_learn_from_code_as_written():
    src = "def f(xs):\n    out = [x * 10 for x in xs if x % 2]\n    return out\n"
    t = FAMILIES["loop_to_comprehension"].make(src, random.Random(0))
    assert t.after == src and "append" in t.before and "] " not in t.before and " if x % 2]" not in t.before
    src2 = "def g(xs):\n    out = []\n    for x in xs:\n        out.append(x - 1)\n    return out\n"
    t2 = FAMILIES["comprehension_to_loop"].make(src2, random.Random(0))
    assert t2.after == src2 and "append" not in t2.before
    for task, name in ((t, "f"), (t2, "g")):
        ns_b, ns_a = {}, {}
        exec(task.before, ns_b)
        exec(task.after, ns_a)
        assert ns_b[name](list(range(9))) == ns_a[name](list(range(9)))


def test_comprehension_families_execute_the_same():
    src = ("def f(xs):\n    out = []\n    for x in xs:\n        if x % 2:\n            out.append(x * 10)\n"
           "    seen = set()\n    for y in xs:\n        seen.add(y // 3)\n    d = {}\n    for z in xs:\n        d[z] = z * z\n"
           "    return out, seen, d\n")
    t = FAMILIES["loop_to_comprehension"].make(src, random.Random(0))
    assert "append" not in t.after and ".add(" not in t.after and "for" in t.after
    back = FAMILIES["comprehension_to_loop"].make(t.after, random.Random(0))
    for code in (t.after, back.after):
        ns = {}
        exec(code, ns)
        ref = {}
        exec(src, ref)
        assert ns["f"](list(range(10))) == ref["f"](list(range(10)))


def test_docstrings_and_comments_targets_are_human():
    for t in tasks_for("add_docstrings"):
        ds = lambda c: sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))  # noqa: E731
                           and ast.get_docstring(n) is not None for n in ast.walk(ast.parse(c)))
        assert ds(t.before) < ds(t.after)
    for t in tasks_for("add_comments"):
        assert ast.dump(ast.parse(t.before)) == ast.dump(ast.parse(t.after))
        assert t.before.count("#") < t.after.count("#")
    for t in tasks_for("add_type_hints"):
        assert "->" in t.after or ":" in t.after
        fam = FAMILIES["add_type_hints"]
        stripped = ast.dump(fam.normalize(ast.parse(t.after)))
        assert stripped == ast.dump(fam.normalize(ast.parse(t.before)))
        assert not any(isinstance(n, ast.arg) and n.annotation is not None for n in ast.walk(ast.parse(t.before)))


def test_error_handling_removes_one_try():
    for t in tasks_for("add_error_handling"):
        count = lambda c: sum(isinstance(n, ast.Try) for n in ast.walk(ast.parse(c)))  # noqa: E731
        assert count(t.before) < count(t.after)


def test_sort_imports_guard_refuses_dropping_or_swapping_a_used_import():
    """Sorting, deduplicating and pruning unused imports keep the meaning; removing an import the code uses, or
    binding a used name to another module, does not (NameError or a different function at run time)."""
    from spark_nb.edits.guard import check

    cell = "import sys\nimport collections\nimport os\nimport json\n\nprint(os.sep, sys.argv, collections.Counter())\n"
    body = "\nprint(os.sep, sys.argv, collections.Counter())\n"
    assert check(cell, "import collections\nimport os\nimport sys\n" + body, "sort_imports") == (True, None)
    assert check(cell, "import os\nimport os\nimport sys\nimport collections\n" + body, "sort_imports")[0]
    for wrong in ("import os\nimport sys\n", "import collections\nimport os.path as os\nimport sys\n",
                  "from os import sep\nimport collections\nimport sys\n"):
        ok, error = check(cell, wrong + body, "sort_imports")
        assert not ok and "changes what the code does" in error, wrong


def test_sort_imports_target_is_sorted_and_used():
    for t in tasks_for("sort_imports"):
        tree = ast.parse(t.after)
        lead = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        lines = [ast.unparse(s) for s in lead]
        assert lines == sorted(lines, key=import_key)
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
               {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        for s in lead:
            for a in s.names:
                assert (a.asname or a.name).split(".")[0] in used


def _names(code):
    return {tk.string for tk in tokenize.generate_tokens(io.StringIO(code).readline) if tk.type == tokenize.NAME}


def test_fixes_and_debug():
    for t in tasks_for("fix_syntax_error"):
        with pytest.raises(SyntaxError):
            ast.parse(t.before)
    for t in tasks_for("fix_misspelt_name"):
        assert t.meta["bad"] in _names(t.before) and t.meta["bad"] not in _names(t.after)
        assert t.meta["good"] in _names(t.after)
        assert len(t.before) - len(t.after) in (-1, 0, 1)
    for t in tasks_for("remove_debug"):
        assert ("print(" in t.before or "breakpoint()" in t.before or "set_trace" in t.before)


def test_extract_constant_and_wrap_main():
    for t in tasks_for("extract_constant"):
        const = t.meta["const"]
        tree = ast.parse(t.after)
        assert isinstance(tree.body[0], ast.Assign) and tree.body[0].targets[0].id == const
        assert const not in _names(t.before) and len(const) >= 3
        assert sum(isinstance(n, ast.Name) and n.id == const for n in ast.walk(tree)) >= 2
    for t in tasks_for("wrap_main"):
        tree = ast.parse(t.after)
        assert any(isinstance(s, ast.FunctionDef) and s.name == "main" for s in tree.body)
        assert t.after.rstrip().endswith("main()")


# ------------------------------------------------------------------------------------------------ tasks / format
def test_make_tasks_mixes_families_and_context(tmp_path):
    units = stdlib_units()[:400]
    tasks = make_tasks(units, random.Random(0), per_unit=2, continuation=0.2, context_prob=0.5)
    fams = {t.family for t in tasks}
    assert len(fams) >= 12 and "continue" in fams
    assert any(t.context for t in tasks)
    p = tmp_path / "tasks.jsonl"
    assert write_jsonl(tasks, p) == len(tasks)
    back = read_jsonl(p)
    assert [b.to_dict() for b in back] == [t.to_dict() for t in tasks]
    for t in tasks:
        assert apply_line_ops(t.before, to_line_ops(t.before, t.after)) == t.after
    ex = line_aligned_example(tasks[0])
    assert ex["ops"] and ex["instruction"]


def test_continuation_task():
    text = "def f(x):\n    a = x\n    b = a\n    return b\n"
    t = continuation_task(text, random.Random(0))
    assert text.startswith(t.before) and t.after == text


def test_line_ops_edge_cases():
    cases = [("", "x = 1\n"), ("x = 1\n", ""), ("a\nb\nc\n", "a\nB\nc\n"), ("a\nb\nc", "a\nb\nc\nd"),
             ("a\nb\n", "x\ny\nz\na\nb\n"), ("a\nb\nc\nd\n", "a\nX\n"), ("a\n", "a")]
    for before, after in cases:
        ops = to_line_ops(before, after)
        assert apply_line_ops(before, ops) == after
    ops = to_line_ops("a\nb\n", "a\nb\n")
    assert ops == [Op(KEEP), Op(KEEP)]
    with pytest.raises(ValueError):
        apply_line_ops("a\nb\n", [Op(KEEP)])
