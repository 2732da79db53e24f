"""A rename's meaning check (spark_nb.refactors.alpha, the rename families' semantic key): any consistent renaming
of the cell's own variables is the same code; a missed use, a capture, a broken keyword call are not. The right
answers are Python's own: each pair below is also run, and the renamed cell must compute what the original does
exactly when the check says it means the same."""
from __future__ import annotations

import pytest

from spark_nb.refactors.alpha import renamed_apart

CELL = '''import numpy as np
total = 0
def mean(xs, scale=2):
    total = 0
    for x in xs:
        total += x
    return total / len(xs) * scale + sum([0])
class Box:
    def __init__(self, size):
        self.size = size
    def grow(self, by):
        return Box(size=self.size + by)
result = (mean([1, 2, 3]), total, Box(size=2).grow(by=1).size, [y * 2 for y in range(3)], np.__name__)
'''

SAME = {
    "a local": [("    total = 0\n", "    acc = 0\n"), ("        total += x", "        acc += x"),
                ("return total /", "return acc /")],
    "a module variable": [("total = 0\ndef", "count = 0\ndef"), ("]), total,", "]), count,")],
    "an import's alias": [("as np", "as numpy_"), ("np.__name__", "numpy_.__name__")],
    "a function": [("def mean", "def average"), ("(mean(", "(average(")],
    "a parameter": [("mean(xs,", "mean(values,"), ("in xs:", "in values:"), ("len(xs)", "len(values)")],
    "a parameter called by keyword": [("__init__(self, size)", "__init__(self, n)"), ("self.size = size", "self.size = n"),
                                      ("Box(size=", "Box(n="), ("Box(size=2)", "Box(n=2)")],
    "a class": [("class Box", "class Crate"), ("return Box(", "return Crate("), ("Box(size=2)", "Crate(size=2)")],
    "a comprehension's variable": [("y * 2 for y", "v * 2 for v")],
}
DIFFERENT = {
    "a missed use": [("    total = 0\n", "    acc = 0\n"), ("        total += x", "        acc += x")],
    "a use without its binding": [("]), total,", "]), count,")],
    "a capture of a builtin": [("    total = 0\n", "    sum = 0\n"), ("        total += x", "        sum += x"),
                               ("return total /", "return sum /")],
    "a keyword call left behind": [("__init__(self, size)", "__init__(self, n)"), ("self.size = size", "self.size = n")],
    "a method, an attribute": [("def grow", "def enlarge")],
    "a swapped operand": [("total / len(xs)", "len(xs) / total")],
    "an import without as": [("import numpy as np", "import numpy"), ("np.__name__", "numpy.__name__")],
}


def renamed(edits):
    code = CELL
    for old, new in edits:
        assert old in code, old
        code = code.replace(old, new, 1)
    return code


def result_of(code):
    space = {}
    try:
        exec(compile(code, "<cell>", "exec"), space)
    except Exception as err:  # noqa: BLE001 - a broken rename raises; that is a different result
        return type(err).__name__
    return space["result"]


@pytest.mark.parametrize("what", SAME)
def test_consistent_renames_mean_the_same(what):
    code = renamed(SAME[what])
    assert renamed_apart(code) == renamed_apart(CELL)
    assert result_of(code) == result_of(CELL)


@pytest.mark.parametrize("what", DIFFERENT)
def test_anything_else_does_not(what):
    code = renamed(DIFFERENT[what])
    assert renamed_apart(code) != renamed_apart(CELL)


def test_scopes_as_the_compiler_has_them():
    two = "def f():\n    x = 1\n    return x\ndef g():\n    x = 2\n    return x\n"
    one_renamed = "def f():\n    y = 1\n    return y\ndef g():\n    x = 2\n    return x\n"
    assert renamed_apart(one_renamed) == renamed_apart(two)  # f's x is not g's
    declared = "x = 1\ndef g():\n    global x\n    x = 2\n"
    assert renamed_apart(declared.replace("x", "y")) == renamed_apart(declared)
    assert renamed_apart("x = 1\ndef g():\n    global y\n    y = 2\n") != renamed_apart(declared)


def test_a_local_may_take_an_outer_name_it_does_not_read():
    # the notebook way: a function's local named like the result the cell assigns from it
    from spark_nb.refactors import rename

    cell = ("def fit_line(x, y):\n    s, intercept = x, y\n    return s, intercept\n\n\n"
            "slope, intercept = fit_line(1, 2)\nprint(slope)\n")
    result = rename(cell, "s", "slope")
    assert "slope, intercept = x, y" in result and renamed_apart(result) == renamed_apart(cell)
    reads = "slope = 2\ndef f(a):\n    return a * slope\n"  # here f reads the outer slope: refused
    with pytest.raises(ValueError, match="already used"):
        rename(reads, "a", "slope")
