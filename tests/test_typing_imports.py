"""The typing import a model's hints forgot (spark_nb.edits.typing_imports): with it the cell runs (Python is the
reference: defining the function evaluates its annotations), without anything else changing; a result that lacks
more than typing names is left for the guard to refuse."""
from __future__ import annotations

import pytest

import test_edit_api as base

from spark_nb.edits.guard import judge
from spark_nb.edits.typing_imports import add_typing_imports

edit_folder, edit_tokenizer = base.edit_folder, base.edit_tokenizer  # the shared session fixtures

ORIGINAL = "import os\n\n\ndef join(parts, sep=None):\n    return (sep or os.sep).join(parts)\n"


def runs(code):
    exec(compile(code, "<cell>", "exec", dont_inherit=True), {})  # the annotations evaluated, as a kernel does
    return True


@pytest.mark.parametrize("hinted", [
    "import os\n\n\ndef join(parts: List[str], sep: Optional[str] = None) -> str:\n    return (sep or os.sep).join(parts)\n",
    "import os\n\n\ndef join(parts: Iterable[str], sep: Any = None) -> str:\n    return (sep or os.sep).join(parts)\n",
])
def test_the_import_makes_it_run_and_pass(hinted):
    with pytest.raises(NameError):
        runs(hinted)
    completed = add_typing_imports(ORIGINAL, hinted)
    assert runs(completed) and completed.replace(completed.splitlines(True)[1], "", 1) == hinted
    assert judge(ORIGINAL, completed, "add_type_hints") == (True, None, True)


def test_only_typing_names_are_imported():
    made_up = "import os\n\n\ndef join(parts: PathList, sep: Any = None) -> str:\n    return (sep or os.sep).join(parts)\n"
    assert add_typing_imports(ORIGINAL, made_up) == made_up  # PathList: the guard's to refuse
    assert add_typing_imports(ORIGINAL, ORIGINAL) == ORIGINAL
    cell = '"""Paths."""\ndef first(xs):\n    return xs[0]\n'
    completed = add_typing_imports(cell, '"""Paths."""\ndef first(xs: Sequence[T]) -> T:\n    return xs[0]\n')
    assert completed.startswith('"""Paths."""\nfrom typing import Sequence, T\n\n') is False  # T is no typing name
    completed = add_typing_imports(cell, '"""Paths."""\ndef first(xs: Sequence[Any]) -> Any:\n    return xs[0]\n')
    assert completed.startswith('"""Paths."""\nfrom typing import Any, Sequence\n\n') and runs(completed)


def test_an_edit_gets_the_import(edit_tokenizer):  # the model's answer through spark_nb.edit, scripted
    from spark_nb.edits import edit
    from spark_nb.train import tokenizer as T
    from test_edit_api import ScriptedEngine, edit_script

    code = "def first(xs):\n    return xs[0]\n"
    script = edit_script(edit_tokenizer, [(T.LINE, None), (T.REPLACE, "def first(xs: Sequence[Any]) -> Any:\n"),
                                          (T.LINE, None), (T.KEEP, None), (T.END, None)])
    result = edit(code, "add type hints", model=ScriptedEngine(edit_tokenizer, script), exact=False)
    assert result.ok and result.code.startswith("from typing import Any, Sequence\n\ndef first(xs: Sequence[Any])")
    assert runs(result.code)
