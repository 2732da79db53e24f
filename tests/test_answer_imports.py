"""The typing import a model's hints forgot (spark_nb.edits.answer_imports): with it the cell runs (Python is the
reference: defining the function evaluates its annotations), without anything else changing; a result that lacks
more than typing names is left for the guard to refuse."""
from __future__ import annotations

import pytest

import test_edit_api as base

from spark_nb.edits.guard import judge
from spark_nb.edits.answer_imports import add_typing_imports, drop_reimports

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


# -- imports of names the cell already relied on -----------------------------------------------------------------

ZSCORE = ("def zscore(values):\n    return (values - values.mean()) / values.std()\n"
          "anomalies = np.flatnonzero(np.abs(zscore(returns)) > 3)\n")
ZSCORE_HINTED = ("import numpy as np\ndef zscore(values: np.ndarray) -> np.ndarray:\n"
                 "    return (values - values.mean()) / values.std()\n"
                 "anomalies = np.flatnonzero(np.abs(zscore(returns)) > 3)\n")
SPLIT = ('def split_name(full_name):\n    return full_name.split()[0]\n'
         'df["first"] = df["name"].apply(lambda n: pd.Series(split_name(n)))\n')
SPLIT_HINTED = ('import pandas as pd\n\ndef split_name(full_name: str) -> str:\n    return full_name.split()[0]\n'
                'df["first"] = df["name"].apply(lambda n: pd.Series(split_name(n)))\n')


def _without_imports(code):
    """The reference: the module's statements other than its imports, as the AST has them."""
    import ast

    tree = ast.parse(code)
    tree.body = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
    return ast.dump(tree)


@pytest.mark.parametrize("original, hinted", [(ZSCORE, ZSCORE_HINTED), (SPLIT, SPLIT_HINTED)])
def test_an_import_of_what_the_cell_already_used_is_dropped(original, hinted):
    import ast

    assert judge(original, hinted, "add_type_hints")[0] is False  # the guard refuses the answer as it came
    repaired = drop_reimports(original, hinted)
    assert ast.dump(ast.parse(repaired)) == _without_imports(hinted) and "import" not in repaired
    assert repaired.startswith("def ")  # the blank line after the import went with it
    assert judge(original, repaired, "add_type_hints") == (True, None, True)


@pytest.mark.parametrize("hinted", [
    # binds a name the cell never read (and rewrites collections.deque): the guard's to refuse
    "from collections import deque\nclass Fix:\n    def __init__(self, line: str) -> None:\n        self.acc = deque([line])\n",
    # one of its names is new
    "import numpy as np, os\nclass Fix:\n    def __init__(self, line: str) -> None:\n        self.acc = collections.deque([line])\n",
    # binds collections, but also loads a submodule the cell may now use
    "import collections.abc\nclass Fix:\n    def __init__(self, line: collections.abc.Sequence) -> None:\n        self.acc = collections.deque([line])\n",
    # an import the original already had stays where it is
    "import collections\nclass Fix:\n    def __init__(self, line: str) -> None:\n        self.acc = collections.deque([line])\n",
])
def test_imports_of_anything_else_stay(hinted):
    original = "import collections\nclass Fix:\n    def __init__(self, line):\n        self.acc = collections.deque([line])\n"
    assert drop_reimports(original, hinted) == hinted
    own = "np = None\nx = np\n"  # the cell binds np itself: an import of np would change what it means
    assert drop_reimports(own, "import numpy as np\n" + own) == "import numpy as np\n" + own


@pytest.mark.parametrize("instruction, kept", [("add type hints", False), ("fix the NameError", True)])
def test_an_edit_drops_a_reimport_unless_an_import_may_be_the_change(edit_tokenizer, instruction, kept):
    from spark_nb.edits import edit
    from spark_nb.train import tokenizer as T
    from test_edit_api import ScriptedEngine, edit_script

    code = "def total(xs):\n    return np.sum(xs)\n"
    answer = "import numpy as np\ndef total(xs: np.ndarray) -> float:\n" if not kept else "import numpy as np\ndef total(xs):\n"
    script = edit_script(edit_tokenizer, [(T.LINE, None), (T.REPLACE, answer), (T.LINE, None), (T.KEEP, None),
                                          (T.END, None)])
    result = edit(code, instruction, model=ScriptedEngine(edit_tokenizer, script), exact=False)
    assert result.proposed.startswith("import numpy as np\n") is kept  # the guard judges a fix's import itself
    assert result.ok is not kept
