"""The typing import a model's hints forgot (spark_nb.edits.typing_imports): with it the cell runs (Python is the
reference: defining the function evaluates its annotations), without anything else changing; a result that lacks
more than typing names is left for the guard to refuse."""
from __future__ import annotations

import pytest

from spark_nb.edits.guard import judge
from spark_nb.edits.typing_imports import add_typing_imports

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
