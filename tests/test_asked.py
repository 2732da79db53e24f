"""Only the asked-for change is carried from a model's answer (spark_nb.edits.asked), judged by Python's own AST:
the result means what the cell meant, and its new hints and docstrings are the answer's."""
import ast

import pytest

import spark_nb
from spark_nb.edits import prompt
from spark_nb.edits.asked import asked_change
from spark_nb.engine import Engine
from test_edit_api import chat_folder, scripted  # noqa: F401  (a tiny qwen2 folder with a ChatML template)


def stripped(code: str) -> str:
    """The AST with every annotation and docstring taken out: what the code does."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            for a in ast.walk(node.args):
                if isinstance(a, ast.arg):
                    a.annotation = None
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) and \
                isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def hints(code: str) -> dict:
    """(def path, parameter or "return") -> the hint's source, for every def."""
    out = {}

    def walk(node, path):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                where = (*path, child.name)
                if not isinstance(child, ast.ClassDef):
                    for a in ast.walk(child.args):
                        if isinstance(a, ast.arg) and a.annotation is not None:
                            out[(where, a.arg)] = ast.unparse(a.annotation)
                    if child.returns is not None:
                        out[(where, "return")] = ast.unparse(child.returns)
                walk(child, where)
            else:
                walk(child, path)

    walk(ast.parse(code), ())
    return out


def docstrings(code: str) -> dict:
    tree = ast.parse(code)
    return {getattr(n, "name", "<module>"): ast.get_docstring(n, clean=False) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(n) is not None}


CELL = '''def percent_change(old, new, digits=1):
    return round((new - old) / old * 100, digits)  # in percent


change = percent_change(monthly.iloc[0], monthly.iloc[-1])
print("revenue changed by %.1f%% over the year" % change)
'''


def test_hints_are_carried_and_the_answers_other_changes_are_not():
    answer = '''import pandas as pd

monthly = pd.read_csv("monthly.csv")

def percent_change(old: float, new: float, digits: int=2) -> float:
    return round((new - old) / old * 100, digits)


change = percent_change(monthly.iloc[0], monthly.iloc[-1])
print(f"revenue changed by {change:.1f}% over the year")
'''
    result = asked_change("add_type_hints", CELL, answer)
    assert stripped(result) == stripped(CELL)  # the user's code, default and all: the made-up data is gone
    assert hints(result) == hints(answer) == {(("percent_change",), "old"): "float",
                                             (("percent_change",), "new"): "float",
                                             (("percent_change",), "digits"): "int",
                                             (("percent_change",), "return"): "float"}
    assert "digits: int = 1" in result and "# in percent" in result  # PEP 8 spacing; the user's comment kept


def test_a_changed_signature_or_an_existing_hint_is_not_carried():
    cell = "class A:\n    def f(self, x, y: str):\n        return x\n\n    def g(self, a):\n        return a\n"
    answer = ("class A:\n    def f(self, x: int, y: bytes) -> int:\n        return x\n\n"
              "    def g(self, b: int) -> int:\n        return b\n")
    result = asked_change("add_type_hints", cell, answer)
    assert stripped(result) == stripped(cell)
    assert hints(result) == {(("A", "f"), "x"): "int", (("A", "f"), "y"): "str", (("A", "f"), "return"): "int"}
    renamed_only = ("class A:\n    def f(self, z: int, y) -> int:\n        return z\n\n"
                    "    def g(self, a):\n        return a\n")
    assert asked_change("add_type_hints", cell, renamed_only) == renamed_only  # nothing to carry: for the guard


def test_defs_are_matched_by_class_nesting_and_order():
    cell = '''class T:
    @property
    def v(self):
        return self._v

    @v.setter
    def v(self, value):
        self._v = value


def outer(xs):
    def inner(x):
        return x * 2
    return [inner(x) for x in xs]
'''
    answer = '''class T:
    @property
    def v(self) -> int:
        return self._v

    @v.setter
    def v(self, value: int) -> None:
        self._v = value


def outer(xs: list[int]) -> list[int]:
    def inner(x: int) -> int:
        return x * 2
    return [inner(x) for x in xs]
'''
    result = asked_change("add_type_hints", cell, answer)
    assert stripped(result) == stripped(cell)
    assert ast.dump(ast.parse(result)) == ast.dump(ast.parse(answer))  # everything was a hint: all carried


def test_docstrings_are_carried_where_the_cell_had_none():
    cell = '''class Grid:
    def area(self): return self.w * self.h

    def total(self, xs):
        """Sum of xs."""
        return sum(xs)
'''
    answer = '''"""Shapes on a grid."""
import math


class Grid:
    """A w by h grid."""

    def area(self):
        """The number of cells."""
        return math.prod((self.w, self.h))

    def total(self, xs):
        """Add up xs, whatever they are."""
        return sum(xs)
'''
    result = asked_change("add_docstrings", cell, answer)
    assert stripped(result) == stripped(cell)  # math.prod and the import are not carried
    assert docstrings(result) == {"<module>": "Shapes on a grid.", "Grid": "A w by h grid.",
                                  "area": "The number of cells.", "total": "Sum of xs."}  # the user's kept
    compile(result, "<cell>", "exec")


@pytest.mark.parametrize("family, answer", [
    ("add_comments", "def f(x):\n    # double\n    return 2 * x\n"),  # no known places for comments
    ("add_type_hints", "def f(x: int) -> int\n    return 2 * x\n"),  # does not parse
    ("add_type_hints", "def f(x):\n    return 3 * x\n"),  # no hint anywhere: the guard judges it
    (None, "def f(x: int) -> int:\n    return 3 * x\n"),  # no family
])
def test_answers_with_nothing_to_carry_are_left_for_the_guard(family, answer):
    assert asked_change(family, "def f(x):\n    return 2 * x\n", answer) == answer


def test_an_import_the_carried_hints_need_comes_with_them():
    cell = "import collections\n\n\ndef last(q, n):\n    return collections.deque(q, n)\n"
    answer = ("from collections import deque\nimport collections\nimport os\n\n\n"
              "def last(q: list[int], n: int) -> deque[int]:\n    return deque(q, n)\n")
    result = asked_change("add_type_hints", cell, answer)
    assert stripped(result) == stripped(cell.replace("import collections\n", "import collections\n"
                                                     "from collections import deque\n"))
    assert "import os" not in result and "collections.deque(q, n)" in result
    assert hints(result) == hints(answer)


def test_the_edit_applies_the_carried_hints_alone(chat_folder, monkeypatch):
    monkeypatch.setattr(prompt, "OPEN_ANSWER", True)
    engine = Engine.load(chat_folder, dtype="fp32", context=1024)
    cell = "def area(w, h):\n    return w * h\n\n\nprint(area(3, 4))\n"
    scripted(engine, "import math\n\ndef area(w: float, h: float) -> float:\n    return math.prod((w, h))\n"
                     "\n\nprint(area(3, 4))\n```\n")
    r = spark_nb.edit(cell, "add type hints", model=engine, speculative=False, exact=False)
    assert r.ok, r.error
    assert r.code == "def area(w: float, h: float) -> float:\n    return w * h\n\n\nprint(area(3, 4))\n"
    assert r.carried == "type hints" and "math.prod" in r.text  # the answer as the model wrote it, for the record
    scripted(engine, "def area(w: str, h: str) -> str:\n    return w * h\n\n\nprint(area(3, 4))\n```\n")
    r = spark_nb.edit(cell, "add type hints", model=engine, speculative=False, exact=False)
    assert not r.ok and "cannot run with the hints" in r.error and r.code == cell  # carried, and still judged


def comments(code: str) -> list[tuple[str, str]]:
    """(comment, the code line it belongs to: its own line's code, or the next code line below it), by tokenize."""
    import io
    import tokenize

    lines = code.splitlines()
    found = [(t.string, t.start[0] - 1) for t in tokenize.generate_tokens(io.StringIO(code).readline)
             if t.type == tokenize.COMMENT]

    def owner(row):
        own = lines[row][: lines[row].index("#")].strip()
        if own:
            return own
        return next(line.split("#")[0].strip() for line in lines[row + 1:] if line.split("#")[0].strip())
    return [(text, owner(row)) for text, row in found]


def test_comments_are_carried_onto_the_code_lines_they_were_written_for():
    cell = '''def plot_distribution(series, title, bins=40):
    """Histogram of a series with its mean marked."""
    fig, ax = plt.subplots(figsize=(7, 4))  # one axes
    ax.hist(series.dropna(), bins=bins, color="grey")
    ax.axvline(series.mean(), color="red", linestyle="--", label="mean")
    ax.legend()
    return fig


plot_distribution(df["total"], "Order totals")
'''
    answer = '''def plot_distribution(series, title, bins=40):
    # add the values up, then divide by how many there are
    total = sum(series.dropna())
    fig, ax = plt.subplots(figsize=(7, 4))  # a figure
    # create a histogram of the series
    ax = plt.hist(series.dropna(), bins=bins, color="grey")
    # a vertical line at the mean
    ax.axvline(series.mean(), color="red", linestyle="--", label="mean")
    ax.legend()  # and its legend
    return fig


# plot the order totals
plot_distribution(df["total"], "Order totals")
'''
    result = asked_change("add_comments", cell, answer)
    assert ast.dump(ast.parse(result)) == ast.dump(ast.parse(cell))  # the user's code, as it was
    theirs = set(comments(answer))
    assert set(comments(result)) - set(comments(cell)) <= theirs  # each new comment on the line it was written for
    assert sorted(comments(result)) == sorted([
        ("# one axes", "fig, ax = plt.subplots(figsize=(7, 4))"),  # the user's own, not replaced
        ("# a vertical line at the mean", 'ax.axvline(series.mean(), color="red", linestyle="--", label="mean")'),
        ("# and its legend", "ax.legend()"),
        ("# plot the order totals", 'plot_distribution(df["total"], "Order totals")')])
    assert "    # a vertical line at the mean\n    ax.axvline" in result  # at the line's indentation


def test_a_comment_never_goes_into_a_string_or_after_a_backslash():
    cell = 's = """\nx = 1\n"""\ntotal = 1 + \\\n    2\nx = 1\n'
    answer = 's = """\nx = 1  # not a comment: the string\'s text\n"""\ntotal = 1 + \\\n    2  # two\nx = 1  # one\n'
    result = asked_change("add_comments", cell, answer)
    assert ast.dump(ast.parse(result)) == ast.dump(ast.parse(cell))
    assert comments(result) == [("# one", "x = 1")]
    assert asked_change("add_comments", cell, answer.replace("x = 1  # one", "x = 1")) == \
        answer.replace("x = 1  # one", "x = 1")  # nothing that can be carried: the answer, for the guard


def test_the_edit_applies_the_carried_comments_alone(chat_folder, monkeypatch):
    monkeypatch.setattr(prompt, "OPEN_ANSWER", True)
    engine = Engine.load(chat_folder, dtype="fp32", context=1024)
    cell = "total = sum(xs)\nprint(total / len(xs))\n"
    scripted(engine, "# add them up\ntotal = sum(xs)\n# the mean\nprint(f'{total / len(xs)}')\n```\n")
    r = spark_nb.edit(cell, "add comments", model=engine, speculative=False, exact=False)
    assert r.ok and r.code == "# add them up\ntotal = sum(xs)\nprint(total / len(xs))\n", r.error
    assert r.carried == "comments"
    scripted(engine, "# add them up\ntotal = sum(xs)\nprint(total / len(xs))\n```\n")  # nothing else changed
    r = spark_nb.edit(cell, "add comments", model=engine, speculative=False, exact=False)
    assert r.ok and r.code == "# add them up\ntotal = sum(xs)\nprint(total / len(xs))\n" and r.carried == ""
