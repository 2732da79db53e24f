"""Fix a misspelt name: the one name the cell reads and nothing binds, replaced by the one bound name it is a typo of.

    fix_misspelt_name(code)                 # `totl` is read, nothing binds it, `total` is bound: every totl -> total
    fix_misspelt_name(code, bad="totl")     # the name the NameError named

Bound means bound in the cell (in any scope, as the compiler's symbol tables say: `scopes.Analysis`), by earlier
cells (`defined_elsewhere`), by IPython (`display`, `In`, ...) or a builtin. A name may be a typo of those
difflib.get_close_matches takes at cutoff 0.8 and at most two edits away, or of one a single edit away (a letter
dropped, added, changed, or two swapped: `lne` for `len`, which difflib misses), the nearest where several are, with
the first letter's case unchanged. Only the spans that read the
misspelt name change, and the result must read no unbound name where the fix went.

Exact only when that is unambiguous: of the unbound names (other cells' `df` and `plt` among them) exactly one is
close to a bound name and is no module's name (`codecs` is an import the cell does not show, not a typo of
`codec`), or the instruction names it, and one bound name is nearest; else the model's (none, several look misspelt, two names as near, a star import that could bind
anything). This is
conservative in one direction only: the router and this refactor see the cell and the names other cells define,
not the kernel's namespace, so a name the kernel binds (a cell since deleted, `%run`) looks unbound here. Pass
such names in `defined_elsewhere` where they are known; where they are not, the guard, which has the kernel's
names, judges the result afterwards.
"""
from __future__ import annotations

import ast
import builtins
import difflib
import re
import sys
from collections.abc import Iterable

from .base import RefactorError
from .scopes import Analysis, Occurrence

# what a notebook's namespace holds without any cell binding it (as spark_nb.edits.checks.IPYTHON)
_IPYTHON = frozenset({"get_ipython", "display", "In", "Out", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh",
                      "_dh", "exit", "quit"})
_ALWAYS = re.compile(r"_i?\d+|__\w+__")  # output history and dunders
_BUILTINS = frozenset(dir(builtins))
# an unbound name that is a module, or a notebook's usual alias of one, was most likely imported where the cell does
# not show (an earlier cell, the kernel): no typo unless the instruction names it
_MODULES = frozenset(sys.stdlib_module_names) | {
    "np", "pd", "plt", "sns", "mpl", "tf", "torch", "nn", "F", "sp", "sk", "px", "go", "xr", "pl", "jnp", "jax",
    "numpy", "pandas", "matplotlib", "seaborn", "scipy", "sklearn", "polars", "plotly", "tqdm"}
# the builtins and IPython names a typo may stand for: not `_oh` or `None` (a `Node` is no misspelt None)
_TARGETS = frozenset(n for n in _BUILTINS | _IPYTHON if not n.startswith("_") and n not in ("None", "True", "False",
                                                                                               "Ellipsis"))
CUTOFF = 0.8
MOST_EDITS = 2  # a typo is a slip or two: getcontext is no typo of context, though difflib finds them close


def unbound_reads(analysis: Analysis, known: set[str]) -> dict[str, list[Occurrence]]:
    """The names the cell reads that nothing binds (not it, nor `known`), each with the occurrences that read it."""
    if any(isinstance(n, ast.ImportFrom) and n.names[0].name == "*" for n in ast.walk(analysis.tree)):
        raise RefactorError("a star import could bind any name")
    bound = {o.name for o in analysis.occurrences if o.variable and o.binds and o.binding is analysis.module}
    out: dict[str, list[Occurrence]] = {}
    for o in analysis.occurrences:
        if (o.variable and not o.binds and (o.binding is analysis.module or o.binding is None)
                and o.name not in bound and o.name not in known and not _ALWAYS.fullmatch(o.name)):
            out.setdefault(o.name, []).append(o)
    return out


def close_matches(bad: str, names: Iterable[str]) -> list[str]:
    """The names `bad` may be a typo of: difflib's close matches at CUTOFF at most MOST_EDITS edits away and (for 3
    letters or more) the names one edit away (a letter dropped, added, changed, or two swapped), the first letter's
    case as in `bad`; where several, only the nearest by edits."""
    names = {n for n in names if n != bad and n[:1].isupper() == bad[:1].isupper()}  # Loader is no typo of loader
    near = {n for n in difflib.get_close_matches(bad, names, n=5, cutoff=CUTOFF) if edits(bad, n) <= MOST_EDITS}
    if len(bad) >= 3:
        near |= {n for n in names if abs(len(n) - len(bad)) <= 1 and edits(bad, n) == 1}
    if len(near) > 1:
        best = min(edits(bad, n) for n in near)
        near = {n for n in near if edits(bad, n) == best}
    return sorted(near)


def edits(a: str, b: str) -> int:
    """Letters dropped, added, changed or swapped with the next to make `b` of `a` (optimal string alignment)."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def misspelt(code: str, bad: str | None = None, defined_elsewhere: Iterable[str] = ()) -> tuple[str, str]:
    """(the misspelt name, the name it is a typo of), or a RefactorError saying why it is not one pair."""
    return _find(Analysis(code), bad, set(defined_elsewhere))[:2]


def _find(analysis: Analysis, bad: str | None, elsewhere: set[str]) -> tuple[str, str, list[Occurrence]]:
    known = _BUILTINS | _IPYTHON | elsewhere
    unbound = unbound_reads(analysis, known)
    names = {o.name for o in analysis.occurrences if o.variable and o.binds} | elsewhere | _TARGETS
    if bad is None:
        if not unbound:
            raise RefactorError("every name the cell reads is bound (in it, an earlier cell or builtins)")
        typos = {u: m for u in unbound if u not in _MODULES and (m := close_matches(u, names))}  # the rest: the
        #                                                                                       kernel's names?
        if not typos:
            raise RefactorError(f"no name the cell reads unbound ({', '.join(sorted(unbound))}) is close to a bound "
                                "one")
        if len(typos) > 1:
            raise RefactorError(f"several names nothing binds look misspelt ({', '.join(sorted(typos))}): say which")
        (bad, matches), = typos.items()
    elif bad not in unbound:
        bound = bad in known or any(o.name == bad and o.binds for o in analysis.occurrences)
        raise RefactorError(f"{bad} is bound (in the cell, an earlier cell or builtins)" if bound
                            else f"the cell does not read {bad}")
    else:
        matches = close_matches(bad, names)
    if len(matches) != 1:
        raise RefactorError(f"{bad} is as close to {' as to '.join(matches)}: which one was meant?" if matches
                            else f"no bound name is close to {bad}")
    return bad, matches[0], unbound[bad]


def fix_misspelt_name(code: str, bad: str | None = None, *, defined_elsewhere: Iterable[str] = ()) -> str:
    """`code` with every read of the misspelt name replaced by the name it is a typo of, or a RefactorError (see the
    module docstring). bad: the misspelt name, when the instruction says it. defined_elsewhere: names other cells
    (or the kernel, where known) define."""
    analysis = Analysis(code)
    elsewhere = set(defined_elsewhere)
    bad, good, uses = _find(analysis, bad, elsewhere)
    if any(o.start is None for o in uses):
        raise RefactorError(f"cannot place every {bad} exactly (inside an f-string)")
    result = code
    for o in sorted(uses, key=lambda o: o.start, reverse=True):
        result = result[:o.start] + good + result[o.end:]
    still = unbound_reads(Analysis(result), _BUILTINS | _IPYTHON | elsewhere)
    if good in still:
        raise RefactorError(f"{good} is not visible where {bad} is read (line {still[good][0].node.lineno})")
    return result
