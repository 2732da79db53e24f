"""Edit families for the built-in model: a registry of named :class:`Family` instances.

Human-target families (``mechanical = False``): add_docstrings, add_type_hints, add_comments,
add_error_handling, remove_debug, fix_syntax_error, fix_misspelt_name.  Mechanical (program transformations):
remove_comments, rename_variable, rename_function, to_fstring, loop_to_comprehension, comprehension_to_loop,
print_to_logging, sort_imports, extract_constant, wrap_main.
"""
from __future__ import annotations

from .base import EditTask, Family, parses
from .comments import RemoveComments
from .debug import PrintToLogging, RemoveDebug
from .fixes import FixMisspeltName, FixSyntaxError
from .human import AddComments, AddDocstrings, AddErrorHandling, AddTypeHints
from .imports import SortImports
from .modernise import ComprehensionToLoop, LoopToComprehension, ToFString
from .rename import RenameFunction, RenameVariable
from .structure import ExtractConstant, WrapMain

FAMILIES: dict[str, Family] = {f.name: f for f in (
    AddDocstrings(), AddTypeHints(), AddComments(), AddErrorHandling(),
    RenameVariable(), RenameFunction(), ToFString(), LoopToComprehension(), ComprehensionToLoop(),
    RemoveDebug(), RemoveComments(), PrintToLogging(), SortImports(), FixSyntaxError(), FixMisspeltName(),
    ExtractConstant(), WrapMain(),
)}


def get(name: str) -> Family:
    return FAMILIES[name]


def make_task(family: Family | str, text: str, rng) -> EditTask | None:
    """Run one family on one unit; any failure of the transformation counts as 'does not apply'."""
    fam = FAMILIES[family] if isinstance(family, str) else family
    try:
        return fam.make(text, rng)
    except (SyntaxError, ValueError, RecursionError, IndexError, KeyError, AttributeError, TypeError):
        return None


__all__ = ["EditTask", "FAMILIES", "Family", "get", "make_task", "parses"]
