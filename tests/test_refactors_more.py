"""The exact refactors that stand in for model families: loop <-> comprehension, extract a constant, fix a misspelt
name. Each against hand-written results and refusals, running the cells where they are pure, and on the families'
own tasks (spark_nb.train.families): where a task's instruction routes to the refactor, its result must be the
task's one right answer (the same text, or the same AST where only layout differs), keep the family's meaning
check and pass the evaluation's change check."""
from __future__ import annotations

import ast
import random
import sysconfig
import warnings
from functools import lru_cache
from pathlib import Path

import pytest

from spark_nb.evaluate.checks import CHANGE_CHECKS
from spark_nb.evaluate.sets import notebook_cells
from spark_nb.refactors import (RefactorError, comprehension_to_loop, extract_constant, fix_misspelt_name,
                                loop_to_comprehension, route)
from spark_nb.train.corpus import extract_units
from spark_nb.train.families import FAMILIES, make_task


def run(code: str, leave=()) -> dict:
    """The values a pure cell leaves in its namespace (its functions and the names in `leave` aside)."""
    ns = {}
    exec(compile(code, "<cell>", "exec"), ns)
    return {k: v for k, v in ns.items() if k != "__builtins__" and k not in leave and not callable(v)}


# -- loop -> comprehension ----------------------------------------------------------------------------------------

TO_COMPREHENSION = [  # (id, before, after): written by hand
    ("list-if", "data = [3, 1, 4]\nout = []  # the squares\nfor v in data:\n    if v > 2:  # big ones\n"
                "        out.append(v * v)\nprint(out)\n",
     "data = [3, 1, 4]\n# the squares\n# big ones\nout = [v * v for v in data if v > 2]\nprint(out)\n"),
    ("list()", "out = list()\nfor i in range(4): out.append(i)\n", "out = [i for i in range(4)]\n"),
    ("set", "words = ['a', 'B']\nseen = set()\nfor w in words:\n    seen.add(w.lower())\n",
     "words = ['a', 'B']\nseen = {w.lower() for w in words}\n"),
    ("dict-in-function", "def index(rows):\n    d = {}\n    for k, v in rows:\n        d[k] = v\n    return d\n",
     "def index(rows):\n    d = {k: v for k, v in rows}\n    return d\n"),
    ("tuple-key", "d = dict()\nfor k in 'ab':\n    d[k, 1] = k, 2\n", "d = {(k, 1): (k, 2) for k in 'ab'}\n"),
    ("tuple-iterable", "out = []\nfor v in 1, 2:\n    out.append(v)\n", "out = [v for v in (1, 2)]\n"),
    ("conditional-test", "out = []\nfor v in range(5):\n    if v if v > 1 else 0:\n        out.append(v)\n",
     "out = [v for v in range(5) if (v if v > 1 else 0)]\n"),
    ("other-loop-rebinds", "out = []\nfor v in range(3):\n    out.append(v)\nfor v in 'xy':\n    print(v)\n",
     "out = [v for v in range(3)]\nfor v in 'xy':\n    print(v)\n"),
    ("read-before", "v = 9\nprint(v)\nout = []\nfor v in range(3):\n    out.append(v)\n",
     "v = 9\nprint(v)\nout = [v for v in range(3)]\n"),
    ("hash-in-string", "out = []\nfor r in rows:  # each\n    if '#' in r:\n        out.append(r.strip(\"#\"))\n",
     "# each\nout = [r.strip(\"#\") for r in rows if '#' in r]\n"),
    ("multi-line-part", "def f(words):\n    chunks = []\n    for word in words:\n"
                        "        chunks.append(b'z' if not word else\n                      b'y' if word == 0x20202020 else  # spaces\n"
                        "                      chars[word % 85])\n    return chunks\n",
     "def f(words):\n    chunks = [\n        b'z' if not word else\n        b'y' if word == 0x20202020 else  # spaces\n"
     "        chars[word % 85]\n        for word in words\n    ]\n    return chunks\n"),
    ("long", "def f(records):\n    selected = []\n    for record in records:\n"
             "        if record.get('status') == 'active' and record.get('score', 0) > 10:\n"
             "            selected.append((record['name'], record['score'], record.get('team')))\n    return selected\n",
     "def f(records):\n    selected = [\n        (record['name'], record['score'], record.get('team'))\n"
     "        for record in records\n        if record.get('status') == 'active' and record.get('score', 0) > 10\n"
     "    ]\n    return selected\n"),
]


@pytest.mark.parametrize("before, after", [c[1:] for c in TO_COMPREHENSION], ids=[c[0] for c in TO_COMPREHENSION])
def test_loop_to_comprehension(before, after):
    assert loop_to_comprehension(before) == after
    fam = FAMILIES["loop_to_comprehension"]
    assert fam.semantic_key(after) == fam.semantic_key(before)


REFUSE_COMPREHENSION = [  # (id, code, the reason's words)
    ("none", "x = [v for v in data]\n", "no loop"),
    ("two", "a = []\nfor v in p:\n    a.append(v)\nb = []\nfor v in q:\n    b.append(v)\n", "2 loops"),
    ("variable-read-after", "out = []\nfor v in data:\n    out.append(v)\nprint(v)\n", "v is used outside"),
    ("variable-augmented-after", "out = []\nfor v in data:\n    out.append(v)\nv += 1\n", "v is used outside"),
    ("variable-in-closure", "out = []\nfor v in data:\n    out.append(v)\ndef f():\n    return v\n", "outside"),
    ("variable-read-in-outer-loop", "for r in rows:\n    print(v)\n    out = []\n    for v in r:\n"
                                    "        out.append(v)\n", "outside"),
    ("global-variable", "def f():\n    global v\n    out = []\n    for v in data:\n        out.append(v)\n",
     "outside"),
    ("read-while-built", "out = []\nfor v in data:\n    out.append(len(out))\n", "out is read while it is built"),
    ("else", "out = []\nfor v in data:\n    out.append(v)\nelse:\n    pass\n", "else clause"),
    ("async", "async def f():\n    out = []\n    async for v in g():\n        out.append(v)\n", "async for"),
    ("await", "async def f():\n    out = []\n    for v in data:\n        out.append(await v)\n", "await"),
    ("walrus", "out = []\nfor v in data:\n    out.append((y := v))\n", "assignment expression"),
    ("lambda", "out = []\nfor v in data:\n    out.append(lambda: v)\n", "lambda"),
    ("class-body", "class C:\n    out = []\n    for v in range(3):\n        out.append(v)\n", "class body"),
    ("attribute-target", "out = []\nfor self.v in data:\n    out.append(1)\n", "attribute"),
    ("key-and-value-call", "d = {}\nfor v in data:\n    d[f(v)] = g(v)\n", "evaluates the value first"),
    ("shared-line", "n = 0; out = []\nfor v in data:\n    out.append(v)\n", "other statements"),
    ("other-cell-reads", "out = []\nfor v in data:\n    out.append(v)\n", "another cell"),
]


@pytest.mark.parametrize("code, reason", [c[1:] for c in REFUSE_COMPREHENSION],
                         ids=[c[0] for c in REFUSE_COMPREHENSION])
def test_loop_to_comprehension_refuses(code, reason):
    with pytest.raises(RefactorError, match=reason):
        loop_to_comprehension(code, used_elsewhere={"v"} if reason == "another cell" else ())


# -- comprehension -> loop ---------------------------------------------------------------------------------------

TO_LOOP = [
    ("list-if", "ys = [f(x) for x in xs if x]  # keep\nprint(ys)\n",
     "# keep\nys = []\nfor x in xs:\n    if x:\n        ys.append(f(x))\nprint(ys)\n"),
    ("set", "s = {w.lower() for w in words}\n", "s = set()\nfor w in words:\n    s.add(w.lower())\n"),
    ("dict-tuple-target", "def f(p, q):\n\tpairs = {a: b for (a, b) in zip(p, q)}\n\treturn pairs\n",
     "def f(p, q):\n\tpairs = {}\n\tfor a, b in zip(p, q):\n\t\tpairs[a] = b\n\treturn pairs\n"),
    ("multi-line", "rows = [\n    (name, len(name))  # with its length\n    for name in names\n]\n",
     "# with its length\nrows = []\nfor name in names:\n    rows.append((name, len(name)))\n"),
    ("multi-line-part", "d = {k: f(k,\n         0x10) for k in a +\n                          b}\n",
     "d = {}\nfor k in (a +\n            b):\n    d[k] = f(k,\n            0x10)\n"),
    ("nested-in-loop", "for i in range(3):\n    ys = [i * j for j in r]\n",
     "for i in range(3):\n    ys = []\n    for j in r:\n        ys.append(i * j)\n"),
    ("other-comprehension-same-name", "a = [x for x in p]\nprint([x for x in a])\n",
     "a = []\nfor x in p:\n    a.append(x)\nprint([x for x in a])\n"),
]


@pytest.mark.parametrize("before, after", [c[1:] for c in TO_LOOP], ids=[c[0] for c in TO_LOOP])
def test_comprehension_to_loop(before, after):
    assert comprehension_to_loop(before) == after
    fam = FAMILIES["comprehension_to_loop"]
    assert fam.semantic_key(after) == fam.semantic_key(before)


REFUSE_LOOP = [
    ("none", "print([x for x in xs])\n", "no comprehension assigned"),
    ("two", "a = [x for x in p]\nb = [x for x in q]\n", "2 comprehension"),
    ("variable-used", "def g():\n    x = 1\n    ys = [x for x in r]\n    return x\n", "x is also used"),
    ("variable-global-read", "def g():\n    ys = [x for x in r]\n    return x\n", "x is also used"),
    ("variable-read-by-function", "ys = [x for x in r]\ndef g():\n    return x\n", "x is also used"),
    ("other-cell", "ys = [x for x in r]\n", "another cell"),
    ("self-read", "xs = [x + 1 for x in xs]\n", "xs is read while it is built"),
    ("walrus", "ys = [(y := x) for x in r]\n", "assignment expression"),
    ("nested-generators", "ys = [x for r in rows for x in r]\n", "several for or if"),
    ("two-conditions", "ys = [x for x in r if x if x > 1]\n", "several for or if"),
    ("inner-comprehension", "ys = [sum(y for y in x) for x in rows]\n", "another comprehension"),
    ("class-body", "class C:\n    ys = [x for x in range(3)]\n", "class body"),
    ("set-rebound", "set = frozenset\ns = {x for x in r}\n", "set is rebound"),
]


@pytest.mark.parametrize("code, reason", [c[1:] for c in REFUSE_LOOP], ids=[c[0] for c in REFUSE_LOOP])
def test_comprehension_to_loop_refuses(code, reason):
    with pytest.raises(RefactorError, match=reason):
        comprehension_to_loop(code, defined_elsewhere={"x"} if reason == "another cell" else ())


PURE = [  # cells that run on their own: both directions must leave the same values
    "data = [3, 1, 4, 1, 5]\nout = []\nfor v in data:\n    if v % 2:\n        out.append(v * 10)\n",
    "words = ['Aa', 'b', 'AA']\nseen = set()\nfor w in words:\n    seen.add(w.lower())\n",
    "pairs = [('a', 1), ('b', 2)]\nd = {}\nfor k, n in pairs:\n    d[k] = n * 2\n",
    "def f(n):\n    acc = []\n    for i in range(n):\n        acc.append(i * i)\n    return acc\nr = f(5)\n",
]


@pytest.mark.parametrize("code", PURE)
def test_both_directions_run_alike(code):
    comp = loop_to_comprehension(code)
    loop = comprehension_to_loop(comp)
    loop_variables = ("v", "w", "k", "n")  # a loop leaves its variable set, a comprehension does not
    assert run(comp) == run(code, loop_variables) == run(loop, loop_variables)
    assert ast.dump(ast.parse(loop)) == ast.dump(ast.parse(code))


# -- on the families' own tasks -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def texts() -> list[str]:
    """The notebook cells of the evaluation and the units of the first 120 standard library modules."""
    root = Path(sysconfig.get_paths()["stdlib"])
    units = [u.text for f in sorted(root.glob("*.py"))[:120]
             for u in extract_units(f.read_text(encoding="utf-8", errors="replace"), "stdlib", f.name)]
    return notebook_cells() + units


def agreement(family: str, most: int = 300) -> dict:
    """Over the family's first `most` tasks on texts(): how many route to its exact refactor and what it makes of
    them."""
    fam = FAMILIES[family]
    counts = dict(tasks=0, routed=0, same_text=0, same_ast=0, refused=[], wrong=[])
    for text in texts():
        task = make_task(family, text, random.Random(f"{family}\n{text}"))
        if task is None:
            continue
        if counts["tasks"] == most:
            break
        counts["tasks"] += 1
        refactor = route(task.instruction, task.before)
        if refactor is None:
            continue
        assert refactor.family == family, (task.instruction, refactor)
        counts["routed"] += 1
        try:
            got = refactor.apply(task.before)
        except RefactorError as err:
            counts["refused"].append((task.before, str(err)))
            continue
        tree = ast.parse(got)
        if got == task.after:
            counts["same_text"] += 1
        elif ast.dump(tree) == ast.dump(ast.parse(task.after)):
            counts["same_ast"] += 1
        else:
            counts["wrong"].append((task, got))
        assert CHANGE_CHECKS[family](task, tree, got), (task.before, got)
        if fam.refactor:
            assert fam.semantic_key(got) == fam.semantic_key(task.before), (task.before, got)
    return counts


@pytest.mark.parametrize("family, floor", [("loop_to_comprehension", 0.9), ("comprehension_to_loop", 0.6),
                                           ("extract_constant", 0.95), ("fix_misspelt_name", 0.7)])
def test_the_family_tasks(family, floor):
    """Every routed task gets the family's right answer; `floor`: the share routed at least (measured: see the
    commits), the rest being ambiguous (several loops, several comprehensions, several unbound names)."""
    counts = agreement(family)
    wrong, refused = counts.pop("wrong"), counts.pop("refused")
    print(f"\n{family}: {counts}, refused {len(refused)}", *refused, sep="\n")
    assert counts["tasks"] > 20 and counts["routed"] >= floor * counts["tasks"]
    assert not wrong, wrong[:2]
    # a refusal must be right: the family's answer reads a name the unit's module binds, which the cell lacks
    assert all("not visible" in why for _, why in refused) and len(refused) <= 0.01 * counts["routed"]


# -- extract a constant ----------------------------------------------------------------------------------------------

EXTRACT = [  # (id, code, value, name, expected)
    ("after-imports", '"""Prices."""\nimport os\n\n\ndef net(x, rate=0.05):\n    return x * (1 - 0.05) + 5e-2 * 0.5\n',
     "0.05", "RATE",
     '"""Prices."""\nimport os\n\nRATE = 0.05\n\n\ndef net(x, rate=RATE):\n    return x * (1 - RATE) + RATE * 0.5\n'),
    ("first-before-def", "def f(x):\n    return 42 if x else -42\n", "42", "ANSWER",
     "ANSWER = 42\n\n\ndef f(x):\n    return ANSWER if x else -ANSWER\n"),
    ("negative", "def f(x):\n    return -1 if x else 1\n", "-1", "MISSING",
     "MISSING = -1\n\n\ndef f(x):\n    return MISSING if x else 1\n"),
    ("statements", "y = 3 * x\nprint(f'{y * 3}', '3', 3.0)\n", "3", "N", "N = 3\n\ny = N * x\nprint(f'{y * N}', '3', 3.0)\n"),
    ("glued-keyword", "y = 1if x else 2\n", "2", "TWO", "TWO = 2\n\ny = 1if x else TWO\n"),
    ("positions-stay", "import sys\nhead = sys.argv[5:] + [5]\n", "5", "SKIP",
     "import sys\n\nSKIP = 5\nhead = sys.argv[5:] + [SKIP]\n"),
    ("other-base-stays", "flags = 0x10 | mode\ncount = 16\n", "16", "COUNT", "COUNT = 16\n\nflags = 0x10 | mode\ncount = COUNT\n"),
]


@pytest.mark.parametrize("code, value, name, expected", [c[1:] for c in EXTRACT], ids=[c[0] for c in EXTRACT])
def test_extract_constant(code, value, name, expected):
    assert extract_constant(code, value, name) == expected
    fam = FAMILIES["extract_constant"]
    if value[0] != "-":  # the meaning check inlines a constant that is a number literal, not a negated one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # `1if`
            assert fam.semantic_key(expected) == fam.semantic_key(code)


REFUSE_EXTRACT = [
    ("absent", "y = 3\n", "4", "N", "does not occur"),
    ("type", "y = 3.0 + True\n", "1", "N", "does not occur"),
    ("name-bound", "N = 2\ny = 3\n", "3", "N", "already used"),
    ("name-read", "y = N + 3\n", "3", "N", "already used"),
    ("other-cell", "y = 3\n", "3", "N", "another cell defines N"),
    ("builtin", "y = 3\n", "3", "max", "builtin"),
    ("not-a-number", "y = 'a'\n", "'a'", "A", "not a number"),
    ("case-pattern", "match x:\n    case 3:\n        pass\n", "3", "N", "case pattern"),
]


@pytest.mark.parametrize("code, value, name, reason", [c[1:] for c in REFUSE_EXTRACT],
                         ids=[c[0] for c in REFUSE_EXTRACT])
def test_extract_constant_refuses(code, value, name, reason):
    with pytest.raises(RefactorError, match=reason):
        extract_constant(code, value, name, defined_elsewhere={"N"} if reason.startswith("another") else ())


def test_extract_constant_runs_alike():
    code = "def area(r, pi=3.14159):\n    return 3.14159 * r * r\nvalues = [area(1), area(2, 3), 3.14159 / 2]\n"
    assert run(extract_constant(code, "3.14159", "PI"), {"PI"}) == run(code)


# -- fix a misspelt name ---------------------------------------------------------------------------------------------

FIX = [  # (id, code, bad or None, defined elsewhere, expected)
    ("one", "total = 0\nfor v in [1, 2]:\n    total += v\nprint(totl, f'{totl}')\n", None, (),
     "total = 0\nfor v in [1, 2]:\n    total += v\nprint(total, f'{total}')\n"),
    ("builtin", "n = lne([1, 2])\n", None, (), "n = len([1, 2])\n"),
    ("local", "def f(values):\n    return sum(vaules) / len(values)\n", None, (),
     "def f(values):\n    return sum(values) / len(values)\n"),
    ("other-names-unbound", "monthly = df.groupby('m').sum()\nmonthly.plot()\nprint(montly)\n", None, (),
     "monthly = df.groupby('m').sum()\nmonthly.plot()\nprint(monthly)\n"),
    ("earlier-cell", "print(reslt)\n", None, {"result"}, "print(result)\n"),
    ("named", "alpha = 1\nbeta = 2\nprint(alpah, btea)\n", "btea", (), "alpha = 1\nbeta = 2\nprint(alpah, beta)\n"),
    ("nearest", "names = ['a']\nname = 'b'\nprint(namees)\n", None, (), "names = ['a']\nname = 'b'\nprint(names)\n"),
]


@pytest.mark.parametrize("code, bad, elsewhere, expected", [c[1:] for c in FIX], ids=[c[0] for c in FIX])
def test_fix_misspelt_name(code, bad, elsewhere, expected):
    assert fix_misspelt_name(code, bad, defined_elsewhere=elsewhere) == expected


REFUSE_FIX = [
    ("nothing-unbound", "x = 1\nprint(x)\n", None, (), "every name the cell reads is bound"),
    ("no-match", "print(df.head())\n", None, (), "close to a bound"),
    ("two-typos", "total = 1\ncount = 2\nprint(totl, coutn)\n", None, (), "several names"),
    ("two-matches", "flag = 1\nflags = 2\nprint(flasg)\n", None, (), "as close to flag as to flags"),
    ("named-is-bound", "total = 1\nprint(total)\n", "total", (), "total is bound"),
    ("named-absent", "total = 1\n", "totl", (), "does not read totl"),
    ("defined-elsewhere", "print(reslt)\nresult = 1\n", None, {"reslt"}, "every name"),
    ("not-visible", "def f():\n    total = 1\nprint(totl)\n", None, (), "not visible"),
    ("star-import", "from math import *\nprint(sqroot(2))\n", None, (), "star import"),
    # what looks like a typo in library code but is a name the cell does not show (an import, another cell's)
    ("a-module", "codec = 'utf-8'\nprint(codecs.lookup(codec))\n", None, (), "close to a bound"),
    ("an-alias", "pt = 1\nplt.plot(pt)\n", None, (), "close to a bound"),
    ("case", "loader = 1\nLoader(loader)\n", None, (), "close to a bound"),
    ("far", "context = 1\ngetcontext(context)\n", None, (), "close to a bound"),
    ("not-none", "Node(1)\n", None, (), "close to a bound"),
]


@pytest.mark.parametrize("code, bad, elsewhere, reason", [c[1:] for c in REFUSE_FIX], ids=[c[0] for c in REFUSE_FIX])
def test_fix_misspelt_name_refuses(code, bad, elsewhere, reason):
    with pytest.raises(RefactorError, match=reason):
        fix_misspelt_name(code, bad, defined_elsewhere=elsewhere)


def test_fix_misspelt_name_runs():
    code = "values = [3, 1, 2]\nbiggest = mxa(values)\ntotal = sum(vaules)\n"
    fixed = fix_misspelt_name(fix_misspelt_name(code, "mxa"))
    assert run(fixed) == {"values": [3, 1, 2], "biggest": 3, "total": 6}


def test_earlier_cells_decide_a_typo():
    """The router asks the earlier cells' names where they decide: `totl` is a typo of `total` only where
    something binds `total`; a `totl` an earlier cell binds is no typo at all."""
    from spark_nb.edits.exact import exact_edit

    assert route("fix the typo", "print(totl)\n") is None
    assert route("fix the typo", "print(totl)\n", defined_elsewhere={"total"}).name == "fix_misspelt_name"
    done = exact_edit("print(totl)\n", "fix the typo", context=["total = 3\n"])
    assert done.ok and done.code == "print(total)\n" and done.family_hint == "fix_misspelt_name"
    assert exact_edit("print(totl)\ntotal = 1\n", "fix the typo", context=["totl = 3\n"]) is None  # the model's
