"""spark_nb.edit routes refactors a program does exactly to spark_nb.refactors, and everything else to the model.

Results are checked against the AST (an independent reference), not against the refactors' own output."""
from __future__ import annotations

import ast

import pytest

import spark_nb
from spark_nb.edits.exact import exact_edit

MEAN = "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n"


def names(code: str) -> list[str]:
    return [n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)]


def test_a_rename_is_exact_every_use_renamed_nothing_else():
    r = spark_nb.edit(MEAN, "rename `total` to `value`")
    assert r.ok and r.style == "exact" and r.stats is None and "rename total -> value" in r.text
    assert names(r.code) == [("value" if n == "total" else n) for n in names(MEAN)]
    again = spark_nb.edit(MEAN, "rename `total` to `value`")  # the same answer, its text included (no timing)
    assert (again.code, again.text) == (r.code, r.text)
    # nothing but the name changed: the ASTs agree once the name is put back
    assert ast.dump(ast.parse(r.code.replace("value", "total"))) == ast.dump(ast.parse(MEAN))


def test_percent_format_to_fstring_is_exact_and_formats_the_same():
    code = "def label(value):\n    return '<unprintable %s object>' % type(value).__name__\n"
    r = spark_nb.edit(code, "use f-strings")
    assert r.ok and r.style == "exact" and "%" not in r.code
    before, after = {}, {}
    exec(code, before)
    exec(r.code, after)
    assert after["label"](3.5) == before["label"](3.5) == "<unprintable float object>"


def test_a_refused_refactor_says_why_and_leaves_the_cell():
    code = "x = 1\ny = 2\nprint(x + y)\n"
    r = spark_nb.edit(code, "rename x to y")
    assert not r.ok and r.style == "exact" and r.code == code
    assert "refused" in r.error and "y" in r.error


def test_generative_or_ambiguous_instructions_go_to_the_model():
    for instruction in ("add a docstring", "rename the variable", "remove the comments about totals"):
        assert exact_edit(MEAN, instruction) is None, instruction


def test_model_only_sends_a_refactor_to_the_model():
    r = spark_nb.edit(MEAN, "rename total to value", exact=False)
    assert r.style == "edit" and r.stats is not None


def test_a_cell_with_ipython_syntax_goes_to_the_model():
    assert exact_edit("%matplotlib inline\nimport os, sys\n", "sort imports") is None


def test_names_that_earlier_cells_use_keep_their_imports():
    cell = "import os\nimport json\n"
    kept = exact_edit(cell, "remove unused imports", context=["print(json.dumps({}))\n"])
    assert kept.ok and "import json" in kept.code and "import os" not in kept.code


def test_exact_result_reaches_a_live_view_once():
    seen = []
    r = spark_nb.edit(MEAN, "rename total to value", on_token=lambda code, *rest: seen.append(code))
    assert seen == [r.code]


@pytest.fixture
def ip():
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or __import__("IPython").get_ipython()  # one shell per process: made once
    shell.run_line_magic("load_ext", "spark_nb")
    yield shell
    shell.run_line_magic("unload_ext", "spark_nb")


def test_spark_magic_labels_an_exact_refactor(ip, capsys):
    ip.run_cell_magic("spark", "--preview --no-context rename total to value", MEAN)
    out = capsys.readouterr().out
    assert "exact refactor: rename total -> value" in out and "exact refactor: preview" in out
    ip.run_cell_magic("spark", "--preview --no-context --model-only rename total to value", MEAN)
    out = capsys.readouterr().out
    assert "exact refactor" not in out and "tokens | host" in out


def test_demo_says_an_exact_refactor_made_its_edit(capsys):
    from spark_nb import cli

    assert cli.main(["demo", "--instruction", "rename a to prev"]) == 0
    out = capsys.readouterr().out
    assert "+    prev, b = 0, 1" in out and out.rstrip().endswith("exact refactor: would replace the cell")
    assert "exact refactor: rename a -> prev (" in out and "no model" in out
    assert cli.main(["demo", "--instruction", "rename n to b"]) == 0  # refused: b is taken
    assert capsys.readouterr().out.rstrip().endswith("not applied: the exact refactor (rename n -> b) refused: b is "
                                                     "already defined in function fibonacci")


def test_a_name_the_kernel_binds_is_no_typo():
    # `dff` looks like a typo of `df` from the cell alone; the kernel says it is a variable of its own
    cell = "df = load()\nprint(dff.shape)\n"
    fixed = spark_nb.edit(cell, "fix the typo", names=["load"])
    assert fixed.style == "exact" and "print(df.shape)" in fixed.code
    kept = spark_nb.edit(cell, "fix the typo", names=["load", "dff"], exact=True, model=None)
    assert kept.style != "exact" or not kept.ok
