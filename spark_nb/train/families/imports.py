"""Sort and prune imports (isort-like order: ``import x`` lines, then ``from x import y``, each sorted)."""
from __future__ import annotations

import ast
import builtins
import sys

from .base import Family, Text, all_identifiers

_STDLIB = set(sys.stdlib_module_names)
_BUILTINS = set(dir(builtins))
_UNUSED_POOL = ("import json", "import re", "import itertools", "import math", "import time", "import random",
                "import functools", "import collections", "import os", "import sys", "import typing",
                "from collections import defaultdict", "from pathlib import Path", "from typing import Any",
                "from itertools import chain", "from functools import partial", "import subprocess",
                "import shutil", "from dataclasses import dataclass", "import string", "import datetime")


def _bound(stmt) -> list[str]:
    return [(a.asname or a.name).split(".")[0] for a in stmt.names]


def _used_names(tree, skip) -> set[str]:
    out = set()
    for n in ast.walk(tree):
        if n in skip:
            continue
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier():
            out.add(n.value)  # __all__ entries, string annotations: count as uses
    return out


def _bindings(imports: list[ast.stmt], used: set[str]) -> list[tuple[str, list[str]]]:
    """[(name, [what it is bound to])] for the names these imports bind that the code uses (and __future__)."""
    bindings: dict[str, set[str]] = {}
    for st in imports:
        for name, a in zip(_bound(st), st.names):
            source = a.name if isinstance(st, ast.Import) else f"{'.' * st.level}{st.module or ''}:{a.name}"
            if name in used or (isinstance(st, ast.ImportFrom) and st.module == "__future__"):
                bindings.setdefault(name, set()).add(source)
    return sorted((name, sorted(sources)) for name, sources in bindings.items())


def _reads_unbound(tree, imports: list[ast.stmt]) -> bool:
    """Whether the code reads a name that neither it nor its imports bind and that is not a builtin: one a star
    import may provide."""
    bound = {name for st in imports for name in _bound(st)} | _BUILTINS
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            bound.add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
    return any(isinstance(n, ast.Name) and n.id not in bound for n in ast.walk(tree))


def import_key(line: str):
    s = line.split()
    return (s[0] == "from", s[1].lower(), line.lower())


def render_imports(stmts: list[ast.stmt], used: set[str]) -> list[str]:
    lines = []
    for st in stmts:
        if isinstance(st, ast.Import):
            for a in st.names:
                if (a.asname or a.name).split(".")[0] in used:
                    lines.append(f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
        else:
            names = [a for a in st.names if (a.asname or a.name) in used]
            if names:
                mod = "." * st.level + (st.module or "")
                parts = sorted((a.name + (f" as {a.asname}" if a.asname else "") for a in names), key=str.lower)
                lines.append(f"from {mod} import {', '.join(parts)}")
    return sorted(dict.fromkeys(lines), key=import_key)


class SortImports(Family):
    name = "sort_imports"
    refactor = True
    paraphrases = (
        "Sort the imports and remove the ones that are unused.",
        "Please clean up the imports: drop unused ones and order them.",
        "Organise the import block.",
        "Remove unused imports and sort the rest alphabetically.",
        "Tidy the imports like isort would.",
        "sort imports",
        "clean up imports",
        "remove unused imports",
        "isort this",
        "fix imports",
        "prune imports",
        "imports are a mess, fix",
    )

    def normalize(self, tree):
        """The code with each run of imports (in any block: isort sorts those inside functions too) standing for
        what its imports bind among the names the code uses, and no `pass` beside other statements. Order,
        duplicates and unused imports may change (autoflake removes those, leaving `pass` where a block would be
        empty, and removes a `pass` that has company); a used name may not lose its import, get another, or move
        to another run. A star import counts as used when the code reads a name it does not bind and that is not
        a builtin (pyflakes' rule, which autoflake follows)."""
        layouts = []  # (node, field, its statements with each run of imports as a list)
        for node in list(ast.walk(tree)):
            for fld in ("body", "orelse", "finalbody"):
                stmts = getattr(node, fld, None)
                if not (isinstance(stmts, list) and (stmts and isinstance(stmts[0], ast.stmt) or node is tree)):
                    continue  # not a block (a module can be empty: autoflake leaves nothing of unused imports)
                layout = []
                for st in stmts:
                    if isinstance(st, (ast.Import, ast.ImportFrom)):
                        if layout and isinstance(layout[-1], list):
                            layout[-1].append(st)
                        else:
                            layout.append([st])
                    elif not isinstance(st, ast.Pass):
                        layout.append(st)
                setattr(node, fld, [st for st in layout if not isinstance(st, list)])
                layouts.append((node, fld, layout))
        used = _used_names(tree, set())
        if _reads_unbound(tree, [st for *_, layout in layouts for run in layout if isinstance(run, list)
                                 for st in run]):
            used.add("*")
        for node, fld, layout in layouts:
            stmts = []
            for st in layout:
                kept = _bindings(st, used) if isinstance(st, list) else None
                if kept:
                    stmts.append(ast.Expr(ast.Constant(repr(kept))))
                elif not isinstance(st, list):
                    stmts.append(st)
            setattr(node, fld, stmts or [ast.Pass()])
        return tree

    def make(self, text, rng):
        tree = ast.parse(text)
        t = Text(text)
        lead = []
        for st in tree.body:
            if isinstance(st, (ast.Import, ast.ImportFrom)):
                lead.append(st)
            else:
                break
        if lead:
            if len(lead) == len(tree.body) or any(isinstance(s, ast.ImportFrom) and
                                                  (s.module == "__future__" or any(a.name == "*" for a in s.names))
                                                  for s in lead):
                return None
            if any(t.line(s.lineno).startswith((" ", "\t")) or ";" in t.segment(s) for s in lead):
                return None
            used = _used_names(tree, set())
            lines = render_imports(lead, used)
            a, b = t.line_span(lead[0].lineno, lead[-1].end_lineno)
            rest = text[b:].lstrip("\n")
            if not lines:
                after = text[:a] + rest
            else:
                after = text[:a] + "\n".join(lines) + "\n" + text[b:]
            return self.task(rng, text, after, mode="existing")
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)):
            return None
        # the cell uses stdlib modules it never imports: the target imports exactly those, sorted
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        bound |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
        bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        needed = sorted({n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                         and isinstance(n.value, ast.Name) and n.value.id in _STDLIB and n.value.id not in bound
                         and not n.value.id.startswith("_")})
        idents = all_identifiers(text)
        pool = [p for p in _UNUSED_POOL if p.split()[-1] not in idents and p.split()[1] not in needed]
        if not pool:
            return None
        extra = rng.sample(pool, rng.randint(1, min(3, len(pool))))
        good = [f"import {m}" for m in needed]
        messy = good + extra
        rng.shuffle(messy)
        if needed and rng.random() < 0.3:
            messy.insert(rng.randrange(len(messy) + 1), rng.choice(good))  # a duplicate
        gap = "\n\n\n" if isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else "\n\n"
        before = "\n".join(messy) + gap + text
        after = ("\n".join(sorted(good, key=import_key)) + gap + text) if good else text
        return self.task(rng, before, after, mode="injected", needed=needed)
