"""The guard's family-independent checks (spark_nb.edits.checks), each against a reference it does not share code
with: names nothing binds against Python running the cell (NameError or not), type hints against evaluating them
with `typing.get_type_hints` (is the value a class or a typing construct?), a fix's scope against the fix
families' own generators (their fixes pass; the same fixes with one more line touched do not).
"""
from __future__ import annotations

import builtins
import random

import pytest

from spark_nb.edits.checks import unbound_names
from spark_nb.edits.recognise import recognise
from spark_nb.edits.guard import check, judge
from spark_nb.train.families import make_task

# -- names nothing binds: the guard refuses exactly when Python raises NameError -----------------------------------

KERNEL = {"data": [3, 1, 2], "offset": 10}  # what the kernel's namespace holds in these cases
NOTEBOOK = {"__name__": "__main__", "__file__": "cell.py", "get_ipython": lambda: None, "display": print,
            "In": [""], "Out": {}, "_": None}  # what IPython's namespace holds before any cell runs

# (context cells, result): every result runs every line it has (functions are called), so a name nothing binds
# raises NameError when the cell runs
CELLS = [
    ([], "import math\nprint(math.pi)\n"),
    ([], "import collections as c\nimport os.path\nprint(c.Counter('ab'), os.sep)\n"),
    ([], "print(np.zeros(3))\n"),
    ([], "print(sorted(data), offset)\n"),
    (["import math\n"], "print(math.tau)\n"),
    (["def helper(v):\n    return v + 1\n"], "print(helper(1))\n"),
    (["x = 1\n"], "print(x, y)\n"),
    # comprehension scopes
    ([], "squares = [i * i for i in range(3)]\nprint(squares)\n"),
    ([], "squares = [i * i for i in range(3)]\nprint(i)\n"),
    ([], "total = sum(x for x in data)\npairs = {k: v for k, v in zip('ab', data)}\nprint(total, pairs)\n"),
    ([], "hits = [y for x in range(3) if (y := x)]\nprint(hits, y)\n"),
    ([], "grid = [[r * c for c in range(2)] for r in range(2)]\nprint(grid, c)\n"),
    # nested functions, closures, defaults, decorators
    ([], "def outer():\n    k = 2\n    def inner(v):\n        return v * k\n    return inner(3)\nprint(outer())\n"),
    ([], "def outer():\n    def inner():\n        return hidden\n    return inner()\nprint(outer())\n"),
    ([], "def f(v=limit):\n    return v\nprint(f())\n"),
    ([], "@cache\ndef f():\n    return 1\nprint(f())\n"),
    ([], "import functools\n\n@functools.cache\ndef f():\n    return 1\nprint(f())\n"),
    ([], "def a():\n    return b()\n\ndef b():\n    return 1\nprint(a())\n"),
    ([], "scale = lambda v: v + offset\nprint(scale(1))\n"),
    ([], "scale = lambda v: v + shift\nprint(scale(1))\n"),
    ([], "def f(*args, **kwargs):\n    return args, kwargs\nprint(f(1, a=2))\n"),
    # class bodies: a method does not see its class's names
    ([], "class Config:\n    rate = 2\n    def scaled(self, v):\n        return v * self.rate\n"
         "print(Config().scaled(3))\n"),
    ([], "class Config:\n    rate = 2\n    def scaled(self, v):\n        return v * rate\nprint(Config().scaled(3))\n"),
    ([], "class Config:\n    rate = 2\n    doubled = rate * 2\nprint(Config.doubled)\n"),
    ([], "class Config:\n    n = 3\n    xs = [n for _ in range(2)]\n"),
    ([], "class Base:\n    pass\n\nclass Child(Base):\n    def f(self):\n        return super().f if 0 else __class__\n"
         "print(Child().f())\n"),
    ([], "class Child(Parent):\n    pass\n"),
    # globals
    ([], "def setup():\n    global counter\n    counter = 0\nsetup()\nprint(counter + 1)\n"),
    ([], "def read():\n    global counter\n    return counter\nprint(read())\n"),
    ([], "def f():\n    local = 1\n    return local\nprint(f(), local)\n"),
    # try/except, with, for, match, del, walrus
    ([], "try:\n    1 / 0\nexcept ZeroDivisionError as err:\n    print(err)\n"),
    ([], "try:\n    1 / 0\nexcept ZeroDivisonError:\n    pass\n"),
    ([], "try:\n    import nothing_here_at_all\nexcept ImportError:\n    nothing_here_at_all = None\n"
         "print(nothing_here_at_all)\n"),
    ([], "import io\nwith io.StringIO('x') as fh:\n    print(fh.read())\n"),
    ([], "for k in range(2):\n    pass\nprint(k)\n"),
    ([], "match (1, {'b': 2}):\n    case (a, {'b': b, **rest}):\n        print(a + b, rest)\n"),
    ([], "x = 1\ndel x\n"),
    ([], "del never_bound\n"),
    ([], "if (n := 3) > 2:\n    print(n)\n"),
    ([], "print(f'{missing_name!r}')\n"),
    ([], "print(__name__, __file__, display, get_ipython, In, Out, _)\n"),
]


def runs_into(cells, code) -> str | None:
    """The name of the NameError running the context cells then code raises, or None (Python is the reference)."""
    namespace = {"__builtins__": builtins, **NOTEBOOK, **KERNEL}
    for cell in cells:
        exec(cell, namespace)
    try:
        exec(compile(code, "<cell>", "exec", dont_inherit=True), namespace)  # as a kernel runs it
    except NameError as err:
        return err.name
    return None


@pytest.mark.parametrize("cells,code", CELLS, ids=[f"cell{i}" for i in range(len(CELLS))])
def test_unbound_names_match_pythons_name_errors(cells, code, capsys):
    missing = runs_into(cells, code)
    ok, error, checked = judge("", code, context=cells, names=KERNEL)
    assert ok == (missing is None), (code, missing, error)
    if missing is not None:
        assert missing in unbound_names("", code, cells, KERNEL)
        assert error == (f"uses names nothing defines: {', '.join(unbound_names('', code, cells, KERNEL))} (not "
                         "in this cell, earlier cells, the kernel or builtins): import or define them first")
    assert checked is False  # the names were checked, not the meaning


def test_a_name_the_original_read_is_not_introduced():
    """The user's cell may rely on a name the guard does not see bound: the edit keeps relying on it."""
    original = "result = model.fit(data)\n"
    assert check(original, '"""Fit the model."""\nresult = model.fit(data)\n') == (True, None)
    ok, error = check(original, "result = model.fit(np.asarray(data))\n")
    assert not ok and error.startswith("uses names nothing defines: np (")  # not data: the original read it
    assert check(original, "import numpy as np\nresult = model.fit(np.asarray(data))\n") == (True, None)
    assert check(original, "result = model.fit(np.asarray(data))\n", names=["np"]) == (True, None)


def test_a_star_import_leaves_names_unjudged():
    """`from x import *` could bind anything: the check cannot tell, so it does not refuse on that ground."""
    assert check("", "from math import *\nprint(floor(2.5), whatever)\n") == (True, None)
    assert check("", "print(floor(2.5))\n", context=["from math import *\n"]) == (True, None)
    assert not check("", "print(floor(2.5))\n", context=["import math\n"])[0]


def test_a_context_cell_with_magics_lends_its_words():
    """An earlier cell that is not plain Python (IPython magics) is not parsed: its names count as bound."""
    magics = "%matplotlib inline\nimport numpy as np\n"
    assert check("", "print(np.zeros(2))\n", context=[magics]) == (True, None)
    assert not check("", "print(pd.DataFrame())\n", context=[magics])[0]
    assert check("", "print(anything)\n", context=["%run setup.py\n"]) == (True, None)  # %run binds anything


def test_every_family_gets_the_name_check():
    """A refactor family and an unknown instruction alike: the checks run after the semantic comparison."""
    code = "def f(total):\n    return total + 1\n"
    bad = "def f(total):\n    return total + bump\n"
    for family in (None, "add_docstrings", "add_error_handling", "fix_misspelt_name"):
        ok, error = check(code, bad, family)
        assert not ok, family
    ok, error = check(code, bad, "add_docstrings")  # the meaning changed first: that is the error
    assert "changes what the code does" in error
    assert check(code, bad, "add_error_handling")[1].startswith("uses names nothing defines: bump (")


# -- type hints: the guard refuses what evaluating the hint does not make a type -----------------------------------

HINT_NAMESPACE = ("import collections.abc\nimport typing\n"
                  "from typing import Annotated, Any, Callable, Literal, Optional\n")
HINTS = ["int", "list[int]", "dict[str, Any]", "Callable[[int], str]", "Callable[..., int]", "tuple[int, ...]",
         "Literal['a', 1]", "Literal[-1]", "Optional[int]", "int | None", "None", "'list[int]'", "'Optional[str]'",
         "typing.Any", "collections.abc.Iterable[int]", "Annotated[int, 'meta']", "list['int']",
         "3.14159", "1", "'not a type'", "2 * int", "int + str", "[int]", "int()", "(int, str)", "len('x') > 1",
         "'3 * 2'", "...", "True", "b'int'"]


def is_a_type(hint: str) -> bool:
    """Python's verdict: defining a function with the hint works, `typing.get_type_hints` evaluates it (strings
    too), and the value is a class or a typing construct (`typing.get_origin`: list[int], Literal, unions)."""
    import typing

    namespace = {}
    try:
        exec(HINT_NAMESPACE + f"def f(x: {hint}):\n    pass\n", namespace)
        value = typing.get_type_hints(namespace["f"], namespace)["x"]
    except (TypeError, SyntaxError, NameError, ValueError):
        return False
    return isinstance(value, type) or typing.get_origin(value) is not None


@pytest.mark.parametrize("hint", HINTS)
def test_type_hints_match_what_typing_accepts(hint):
    original = HINT_NAMESPACE + "def f(x):\n    pass\n"
    ok, error = check(original, HINT_NAMESPACE + f"def f(x: {hint}):\n    pass\n")
    assert ok == is_a_type(hint), (hint, error)
    if not ok:
        assert error.endswith("is not a type (annotation of parameter x of f): a type hint must name a type")


@pytest.mark.parametrize("hint", ["int if True else str", "type(3)", "(lambda: int)()", "[int][0]"])
def test_type_hints_stricter_than_evaluating_them(hint):
    """An expression that happens to evaluate to a type is still not a type expression (the typing spec's, what
    a type checker reads): these evaluate to a class, and the guard refuses them."""
    assert is_a_type(hint)
    assert not check("def f(x):\n    pass\n", f"def f(x: {hint}):\n    pass\n")[0]


def test_the_issues_hint():
    """Applied for a real user: a return annotation that multiplies a number by a parameter."""
    original = "def area(r):\n    return 3.14159 * r * r\n"
    result = "def area(r: str) -> 3.14159 * r:\n    return 3.14159 * r * r\n"
    expected = "line 1: '3.14159 * r' is not a type (return annotation of area): a type hint must name a type"
    assert check(original, result, "add_type_hints") == (False, expected)
    assert check(original, result) == (False, expected)
    assert judge(original, result, recognise("add type hints"))[2] is True  # the meaning was compared, and kept


def test_hints_the_original_had_and_annotated_assignments():
    assert check("x: 3 = 1\n", "x: 3 = 2\n") == (True, None)  # the user's own oddity is not the edit's
    ok, error = check("total = 0\n", "total: 0 = 0\n")
    assert not ok and error == "line 1: '0' is not a type (annotation of total): a type hint must name a type"
    assert check("def f(*a, **k):\n    pass\n", "def f(*a: int, **k: str) -> None:\n    pass\n") == (True, None)
    ok, error = check("def f(*a):\n    pass\n", "def f(*a: int, **k: 'not valid'):\n    pass\n")
    assert error == ("line 1: \"'not valid'\" is not a type (annotation of parameter k of f): a type hint must "
                     "name a type")


# -- a fix changes only the line it fixes ---------------------------------------------------------------------------

UNITS = [
    'import os\nimport json\n\n\ndef load_config(path, default=None):\n    """Read a JSON config file."""\n'
    '    if not os.path.exists(path):\n        return default\n    with open(path) as handle:\n'
    '        data = json.load(handle)\n    print("loaded %s" % path)\n    return data\n',
    "def scale(values, factor=2.0):\n    out = []\n    for v in values:\n        out.append(v * factor)\n"
    "    print('scaled', len(out))\n    return out\n\n\ntotal = sum(scale([1, 2, 3]))\nprint(total)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        try:\n            return self.items.pop()\n"
    "        except IndexError:\n            return None\n\n\nstack = Stack()\nstack.push(1)\nprint(stack.pop())\n",
    "def describe(shape, size):\n    label = 'shape {} has size {}'.format(shape, size)\n"
    "    return label.upper()\n\n\nfor name in ['square', 'circle']:\n    print(describe(name, len(name)))\n",
    "def fetch(urls,\n          timeout=3,\n          retries=2):\n    results = {}\n    for url in urls:\n"
    "        results[url] = (timeout,\n                        retries)\n    return results\n",
]


def fix_tasks(family):
    tasks = [make_task(family, unit, random.Random(seed)) for unit in UNITS for seed in range(12)]
    tasks = [t for t in tasks if t is not None]
    assert len(tasks) >= 20
    return tasks


def widened(task) -> str:
    """The task's fix plus a comment added to a line well away from it, one that does not spell the misspelt name
    or its fix."""
    before, after = task.before.splitlines(), task.after.splitlines()
    changed = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b) if before != after else 0
    names = [task.meta[k] for k in ("good", "bad") if k in task.meta]
    far = max((i for i in range(len(after)) if not any(n in after[i] for n in names)), key=lambda i: abs(i - changed))
    after[far] = after[far] + "  # tidied" if after[far].strip() else "# tidied"
    return "\n".join(after) + "\n"


@pytest.mark.parametrize("family", ["fix_syntax_error", "fix_misspelt_name"])
def test_generated_fixes_pass_and_widened_ones_are_refused(family):
    for task in fix_tasks(family):
        assert judge(task.before, task.after, family) == (True, None, False), (task.before, task.after)
        wide = widened(task)
        ok, error, _ = judge(task.before, wide, family)
        assert not ok and error.startswith("the fix changes 1 line beyond line") \
            and error.endswith(": a fix changes only the line it fixes"), (task.before, wide, error)


def test_fix_scope_from_the_instructions_words_and_messages():
    original = "def f(a, b)\n    return a + b\n\n\nx = f(1, 2)\ny = x * 2\nprint(x, y)\n"
    fixed = original.replace("b)\n", "b):\n", 1)
    rewritten = fixed.replace("x * 2", "x * 3").replace("print(x, y)", "print(y)")
    family = recognise("fix the syntax error")
    assert check(original, fixed, family) == (True, None)
    assert check(original, rewritten, family) == (False, "the fix changes 2 lines beyond line 1: a fix "
                                                          "changes only the line it fixes")
    assert check(original, rewritten) == (True, None)  # no family, no fix to scope
    assert check(original, rewritten, "add_comments")[0]  # a behaviour-changing family that is not a fix


def test_a_misspelt_name_may_be_fixed_where_it_is_defined():
    """The misspelt side may be the definition: lines spelling the name alike count as the fix's."""
    original = "def lenght(xs):\n    return len(xs)\n\n\nn = length([1, 2])\nprint(n)\n"
    assert check(original, original.replace("lenght", "length"), "fix_misspelt_name") == (True, None)
    assert check(original, original.replace("length(", "lenght("), "fix_misspelt_name") == (True, None)
    ok, error = check(original, original.replace("lenght", "length").replace("print(n)", "print(n * 2)"),
                      "fix_misspelt_name")
    assert error == "the fix changes 1 line beyond lines 1, 5: a fix changes only the line it fixes"
    original = "lenght = 3\nwidth = 2\nprint(length * width)\n"
    assert check(original, original.replace("lenght", "length"), "fix_misspelt_name") == (True, None)
    assert not check(original, "length = 3\nwidth = 4\nprint(length * width)\n", "fix_misspelt_name")[0]


def test_an_unclosed_bracket_may_be_closed_where_it_ends():
    """Python blames the line that opens a bracket it never sees closed; the fix closes it lines later."""
    original = "total = compute(\n    1,\n    2,\n    3,\n\nprint(total)\n"
    fixed = "total = compute(\n    1,\n    2,\n    3,\n)\nprint(total)\n"
    assert check(original, fixed, "fix_syntax_error") == (True, None)


def test_the_checks_never_crash_on_broken_or_odd_cells():
    """Whatever the model writes and whatever the cell was, the guard answers (ok, error, checked)."""
    rng = random.Random(0)
    odd = ["await fetch()\n", "return 1\n", "nonlocal x\n", "def f(x, x):\n    pass\n", "",
           "x = " + "(" * 150 + "1" + ")" * 150 + "\n", "%time f()\n", "from . import *\n"]
    cells = odd + UNITS
    for _ in range(300):
        chars = list(rng.choice(cells))
        for _ in range(rng.randint(0, 3)):
            if chars:
                chars[rng.randrange(len(chars))] = rng.choice(" ():,\n\t[]x=.'\"#*|->")
        original, result = rng.choice(cells), "".join(chars)
        for family in (None, "fix_syntax_error", "fix_misspelt_name", "add_type_hints"):
            ok, error, checked = judge(original, result, family, context=[rng.choice(cells)], names=["np"])
            assert ok == (error is None)


def test_a_result_the_compiler_refuses_is_refused():
    # ast.parse lets `nonlocal name` with no enclosing binding through; compiling the cell would not
    from spark_nb.edits.guard import judge, parse_error

    original = "def f():\n    name = None\n    def g():\n        nonlocal name\n        name = 1\n    return g\n"
    dropped = original.replace("    name = None\n", "")
    with pytest.raises(SyntaxError):
        compile(dropped, "<cell>", "exec")
    assert "no binding for nonlocal 'name'" in parse_error(dropped)
    assert judge(original, dropped, "rename_variable")[0] is False
    assert parse_error("await asyncio.sleep(0)\n") is None  # IPython runs top-level await


# -- type hints the function's own arithmetic contradicts ------------------------------------------------------------

SCALARS = {"int": 7, "float": 0.75, "complex": 0.5j, "bool": True, "str": "xyz", "bytes": b"xyz"}  # bool: its one non-zero
BODIES = ["return a * b", "return a + b", "return a / b", "return -a", "return a % b", "return a < b",
          "return a * 2", "return a + 'x'", "return a * 9 / 5 + 32", "return a // b + 1", "return ~a",
          "return a - b", "return a & b"]


def pythons_verdict(params: str, ret: str, body: str) -> bool:
    """Python's own: the annotated function called with other values of the hinted types than the check's
    (SCALARS) runs without a TypeError, and returns what the return hint accepts (int where float is hinted)."""
    namespace = {}  # compiled without this module's `from __future__ import annotations`: hints are classes
    exec(compile(f"def f({params}) -> {ret}:\n    {body}\n", "<f>", "exec", dont_inherit=True), namespace)
    hints = namespace["f"].__annotations__
    try:
        value = namespace["f"](*(SCALARS[h.__name__] for name, h in hints.items() if name != "return"))
    except TypeError:
        return False
    accepts = {float: (int, float), complex: (int, float, complex)}.get(hints["return"], hints["return"])
    return isinstance(value, accepts)


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("hints", [("int", "int", "int"), ("float", "float", "float"), ("float", "float", "int"),
                                   ("str", "str", "str"), ("str", "int", "str"), ("bytes", "bytes", "bytes"),
                                   ("int", "int", "float"), ("str", "str", "int"), ("bool", "bool", "int")],
                         ids="-".join)
def test_new_hints_must_fit_what_the_code_does(hints, body):
    a, b, ret = hints
    params = f"a: {a}, b: {b}"
    ok, error = check(f"def f(a, b):\n    {body}\n", f"def f({params}) -> {ret}:\n    {body}\n")
    if "%" in body and a in ("str", "bytes"):  # %-formatting: Python's verdict depends on the text, not the type
        assert ok, error
        return
    assert ok == pythons_verdict(params, ret, body), error
    if not ok:
        assert error.startswith("line 2: ") and error.endswith("a type hint must fit what the code does")


def test_what_the_hint_check_leaves_unjudged():
    before = "def f(a, b):\n    a = float(a)\n    return a * b\n"
    assert check(before, before.replace("(a, b)", "(a: str, b: float) -> float")) == (True, None)  # reassigned
    before = "def f(a):\n    return len(a) * 2.5\n"
    assert check(before, before.replace("f(a)", "f(a: str) -> int")) == (True, None)  # a call: not evaluated
    before = "def f(a):\n    def g(a):\n        return a * a\n    return g\n"
    assert check(before, before.replace("f(a)", "f(a: str)")) == (True, None)  # g's a is its own
    before = "def f(a: str, b: str) -> int:\n    return a * b\n"
    assert check(before, before + "\n\nx: int = 1\n") == (True, None)  # hints the original had: the user's
    before = "def f(fmt, n):\n    return fmt % n\n"  # %-formatting depends on the format's text
    assert check(before, before.replace("(fmt, n)", "(fmt: str, n: int) -> str")) == (True, None)
    before = "def f(a, n):\n    return a * n\n"
    assert check(before, before.replace("(a, n)", "(a: str, n: int) -> str")) == (True, None)
    ok, error = check("def area(w, h):\n    return w*h\n", "def area(w: bytes, h: bytes) -> bytes:\n    return w*h\n")
    assert error == ("line 2: 'w * h' cannot run with the hints w: bytes, h: bytes (can't multiply sequence by "
                     "non-int of type 'bytes'): a type hint must fit what the code does")


@pytest.mark.parametrize("body, arg", [("return x", 1), ("return x + 1", 1), ("return", 1), ("return None", 1),
                                       ("if x:\n        return [x]\n    return None", 1), ("print(x)", 1),
                                       ("def g():\n        return x\n    g()", 1), ("return (lambda: x)", 1)])
def test_a_none_return_hint_must_fit_what_the_function_returns(body, arg):
    namespace = {}
    exec(f"def f(x):\n    {body}\n", namespace)
    returns_value = namespace["f"](arg) is not None  # Python's own: what the function returns for this argument
    before = f"def f(x):\n    {body}\n"
    ok, error = check(before, before.replace("f(x)", "f(x: int) -> None"))
    assert ok == (not returns_value), error
    if not ok:
        assert error.startswith("line ") and "but its return hint says None" in error
