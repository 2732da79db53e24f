"""Exact refactors: program transformations spark-nb makes without the model, instantly and exactly.

    from spark_nb.refactors import route, RefactorError

    refactor = route("rename total to value", code)   # a Refactor, or None: the model's job
    if refactor is not None:
        try:
            new_code = refactor.apply(code, used_elsewhere=..., defined_elsewhere=...)
        except RefactorError as err:   # it cannot be done exactly (ambiguous, a name clash, does not parse)
            ...

Each refactor is a function `(code, **args) -> str` that changes only what it is about, so everything else,
formatting and comments included, comes back exactly as it was: libcst's concrete syntax tree for removals and
rewrites, isort for sorting, and for a rename the compiler's own scopes (`scopes.Analysis`) with the name rewritten
at spans checked to read it:

    rename(code, old, new, kind=None, within=None, defined_elsewhere=())
    sort_imports(code, profile="black")            remove_unused_imports(code, used_elsewhere=())
    tidy_imports(code, used_elsewhere=())          (both)
    remove_debug(code, prints=True, debuggers=True)
    remove_comments(code, keep_directives=True)
    to_fstrings(code)
    print_to_logging(code, defined_elsewhere=())
    loop_to_comprehension(code, used_elsewhere=())  comprehension_to_loop(code, used_elsewhere=(), defined_elsewhere=())
    extract_constant(code, value, name, defined_elsewhere=())
    fix_misspelt_name(code, bad=None, defined_elsewhere=())

A refactor that finds nothing to change returns the cell as it was.
"""
from .base import RefactorError
from .comments import remove_comments
from .comprehensions import comprehension_to_loop, loop_to_comprehension
from .constants import extract_constant
from .debug import remove_debug
from .fstrings import to_fstrings
from .imports import remove_unused_imports, sort_imports, tidy_imports
from .rename import rename
from .router import REFACTORS, Refactor, route
from .to_logging import print_to_logging
from .typos import fix_misspelt_name

__all__ = ["RefactorError", "Refactor", "REFACTORS", "route", "rename", "sort_imports", "remove_unused_imports",
           "tidy_imports", "remove_debug", "remove_comments", "to_fstrings", "print_to_logging", "loop_to_comprehension",
           "comprehension_to_loop", "extract_constant", "fix_misspelt_name"]
