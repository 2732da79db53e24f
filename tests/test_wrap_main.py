"""The exact wrap-in-main refactor (spark_nb.refactors.wrap_main) against the wrap_main family's own answers (its
generator writes the one right result for a script cell) and against Python: run as a script, the wrapped cell
prints what the original printed."""
from __future__ import annotations

import contextlib
import io
import random

import pytest

from spark_nb.evaluate.sets import notebook_cells
from spark_nb.refactors import RefactorError
from spark_nb.refactors.wrap_main import wrap_main
from spark_nb.train.families import FAMILIES, make_task

FAMILY = FAMILIES["wrap_main"]


def test_the_familys_answers():
    tasks = [t for t in (make_task("wrap_main", cell, random.Random(0)) for cell in notebook_cells()) if t]
    assert len(tasks) > 30
    for task in tasks:
        result = wrap_main(task.before)
        assert result == task.after, task.before
        assert FAMILY.semantic_key(result) == FAMILY.semantic_key(task.before)


def printed(code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<cell>", "exec"), {"__name__": "__main__"})
    return out.getvalue()


@pytest.mark.parametrize("cell", [
    '"""Totals."""\nimport math\n\nSCALE = 2\n\n\ndef double(x):\n    return SCALE * x\n\n\n# the report\n'
    'values = [double(v) for v in range(4)]\nfor v in values:\n    print(v, math.sqrt(v))\nprint("total", sum(values))\n',
    "total = 0\nfor i in range(5):\n    total += i\n\n    # a note inside\nprint(total)\n",
    "import statistics\ndata = [3, 1, 2]\n\ndef show(xs):\n    print(sorted(xs))\n\nshow(data)\nprint(statistics.mean(data))\n",
])
def test_runs_as_the_script_did(cell):
    result = wrap_main(cell)
    assert printed(result) == printed(cell)
    assert "def main():" in result and result.rstrip().endswith("main()")
    assert not any(line != line.rstrip() for line in result.splitlines())  # no whitespace left on blank lines


@pytest.mark.parametrize("cell, reason", [
    ("x = 1\n\ndef f():\n    return x\n\nprint(f())\n", None),  # f moves too: a closure over main's x
    ("def f():\n    return rows\n\nrows = [1]\nprint(f())\n", "reads 'rows'"),
    ("count = 0\nglobal count\n", "global"),
    ("import asyncio\nawait asyncio.sleep(0)\n", "await"),
    ("print(1)\nfrom os.path import *\n", "star-imports"),
    ("def main():\n    pass\n\nmain()\n", "has a main"),
    ("import os\n\ndef f():\n    pass\n", "nothing to wrap"),
])
def test_refuses_what_main_would_change(cell, reason):
    if reason is None:
        assert printed(wrap_main(cell)) == printed(cell)
        return
    with pytest.raises(RefactorError, match=reason):
        wrap_main(cell)
