"""Scope-aware renames: a local variable of one function, or a top-level function and its uses."""
from __future__ import annotations

import ast
import builtins
import re
import tokenize

from .base import SCOPES, Family, Text, all_identifiers, apply_edits, is_ident, layout_free, tokens_or_none

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_BUILTINS = set(dir(builtins))
_DYNAMIC = {"locals", "vars", "eval", "exec", "globals"}

def renamed_key(code: str) -> str:
    """The meaning check of both renames: the same for any consistent renaming of the cell's own variables
    (spark_nb.refactors.alpha), whether the instruction said a function or a variable ("rename a to b" says
    neither)."""
    from ...refactors.alpha import renamed_tree

    return ast.dump(layout_free(renamed_tree(code)))  # a docstring black re-indents is the same docstring


RENAME_PARAPHRASES = (
    "Rename `{old}` to `{new}`.",
    "Please rename `{old}` to `{new}` everywhere it is used.",
    "Use the name `{new}` instead of `{old}`.",
    "`{old}` is a poor name; call it `{new}`.",
    "Refactor: rename {old} to {new}.",
    "rename {old} to {new}",
    "rename `{old}` -> `{new}`",
    "{old} -> {new}",
    "{old} → {new}",
    "s/{old}/{new}/",
    "call {old} {new} instead",
    "better name for {old}: {new}",
)


def own_scope_nodes(fn):
    """Nodes of ``fn``'s own scope (its body, not nested scopes; decorators/defaults excluded)."""
    stack = list(fn.body)
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, SCOPES):
            continue
        stack.extend(ast.iter_child_nodes(n))


def _params(fn) -> set[str]:
    a = fn.args
    return {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x is not None}


def local_candidates(fn) -> dict[str, list[ast.Name]]:
    """Locals of fn that are safe to rename with token edits: stored in fn's own scope, not params, not
    global/nonlocal, never mentioned in a nested scope or an f-string, no dynamic scope access."""
    declared, stored, occ = set(), set(), {}
    bad = set(_params(fn))
    for n in own_scope_nodes(fn):
        if isinstance(n, (ast.Global, ast.Nonlocal)):
            declared.update(n.names)
        elif isinstance(n, ast.Name):
            occ.setdefault(n.id, []).append(n)
            if isinstance(n.ctx, (ast.Store, ast.Del)):
                stored.add(n.id)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bad.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bad.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _DYNAMIC:
            return {}
        if isinstance(n, SCOPES) or isinstance(n, ast.JoinedStr):
            for sub in ast.walk(n):
                if isinstance(sub, ast.Name):
                    bad.add(sub.id)
                elif isinstance(sub, ast.arg):
                    bad.add(sub.arg)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bad.add(n.name)
    return {k: v for k, v in occ.items() if k in stored and k not in declared and k not in bad}


# ------------------------------------------------------------------------------------------------ naming
_VOCAB = ("total", "count", "result", "value", "item", "index", "current", "entry", "parts", "buffer",
          "offset", "size", "chunk", "pending", "matches", "candidate", "position", "payload", "found",
          "accumulator", "remaining", "output", "element", "record", "step", "limit", "target", "source_text",
          "line_text", "new_value", "temp_value", "state", "handler", "mapping", "collected", "selected")


def _singular(name: str) -> str | None:
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss") and len(name) > 3:
        return name[:-1]
    return None


def descriptive_name(fn, old: str, text: str, rng) -> str | None:
    taken = all_identifiers(text) | _BUILTINS
    cands = []
    for n in own_scope_nodes(fn):
        if isinstance(n, ast.For) and isinstance(n.target, ast.Name) and n.target.id == old:
            it = n.iter
            if isinstance(it, ast.Name):
                s = _singular(it.id)
                if s:
                    cands.append(s)
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range":
                cands += ["i", "index", "idx"] if len(old) > 1 else ["index", "idx"]
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == old for t in n.targets):
            v = n.value
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "len":
                cands += ["length", "count", "n_items"]
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute):
                attr = v.func.attr
                if attr.startswith("get_") and len(attr) > 5:
                    cands.append(attr[4:])
                elif attr in ("split", "splitlines"):
                    cands += ["parts", "fields", "lines"]
                elif attr in ("strip", "lower", "upper"):
                    cands += ["cleaned", "normalized"]
                elif attr == "read":
                    cands += ["content", "data"]
            if isinstance(v, (ast.List, ast.ListComp)):
                cands += ["items", "collected", "results"]
            if isinstance(v, (ast.Dict, ast.DictComp)):
                cands += ["mapping", "lookup", "table"]
    cands = [c for c in cands if c != old and c not in taken and is_ident(c)]
    if cands and rng.random() < 0.7:
        return rng.choice(cands)
    pool = [c for c in _VOCAB if c not in taken and c != old]
    return rng.choice(pool) if pool else None


def abbreviation(name: str, taken: set[str]) -> str | None:
    parts = [p for p in name.strip("_").split("_") if p]
    opts = []
    if len(parts) > 1:
        opts.append("".join(p[0] for p in parts))
    opts += [name.strip("_")[0], name.strip("_")[:3], re.sub(r"[aeiou]", "", name)[:4], name[0] + "1", "tmp"]
    for o in opts:
        o = ("_" if name.startswith("_") and not o.startswith("_") else "") + o
        if is_ident(o) and o != name and o not in taken and o not in _BUILTINS:
            return o
    return None


class RenameVariable(Family):
    name = "rename_variable"
    refactor = True
    paraphrases = RENAME_PARAPHRASES + (
        "Rename the local variable `{old}` to `{new}`.",
        "the variable {old} should be called {new}",
        "rename var {old} to {new}",
    )

    def semantic_key(self, code):
        return renamed_key(code)

    def make(self, text, rng):
        tree = ast.parse(text)
        fns = [n for n in ast.walk(tree) if isinstance(n, _FUNCS)]
        rng.shuffle(fns)
        taken = all_identifiers(text) | _BUILTINS
        t = Text(text)
        for fn in fns:
            cands = local_candidates(fn)
            if not cands:
                continue
            old = rng.choice(sorted(cands))
            if len(old) >= 4 and not old.isupper():
                # human-target direction: the original name is the good one
                short = abbreviation(old, taken)
                if short is None:
                    continue
                before = apply_edits(text, [(*t.node_span(n), short) for n in cands[old]])
                return self.task(rng, before, text, old=short, new=old)
            new = descriptive_name(fn, old, text, rng)
            if new is None:
                continue
            after = apply_edits(text, [(*t.node_span(n), new) for n in cands[old]])
            return self.task(rng, text, after, old=old, new=new)
        return None


# ------------------------------------------------------------------------------------------------ functions
_SYNONYMS = [("get", "fetch"), ("make", "build"), ("create", "make"), ("find", "search"), ("check", "validate"),
             ("remove", "delete"), ("compute", "calculate"), ("parse", "read"), ("is", "has"), ("add", "append"),
             ("load", "read"), ("format", "render"), ("convert", "to"), ("handle", "process"), ("run", "execute"),
             ("update", "refresh"), ("set", "assign"), ("show", "display"), ("write", "save")]


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return s.lower()


def function_new_name(old: str, taken: set[str], rng) -> tuple[str, str] | None:
    """(before-name, after-name): the pair may go either way; the good name is the target."""
    opts = []
    if re.search(r"[a-z][A-Z]", old) and "_" not in old.strip("_"):
        opts.append((old, _snake(old)))
    head, _, rest = old.lstrip("_").partition("_")
    for a, b in _SYNONYMS:
        if head == a and rest:
            opts.append((old, old.replace(a + "_", b + "_", 1)))
        elif head == b and rest:
            opts.append((old, old.replace(b + "_", a + "_", 1)))
    if old.startswith("_") and not old.startswith("__"):
        opts.append((old, old[1:]))
    elif not old.startswith("_"):
        opts.append((old, "_" + old))
    if len(old) >= 6:
        ab = abbreviation(old, taken)
        if ab:
            opts.append((ab, old))
    opts = [(a, b) for a, b in opts if a != b and is_ident(a) and is_ident(b)
            and (a == old or a not in taken) and (b == old or b not in taken) and not b.startswith("__")]
    return rng.choice(opts) if opts else None


class RenameFunction(Family):
    name = "rename_function"
    refactor = True
    paraphrases = RENAME_PARAPHRASES + (
        "Rename the function `{old}` to `{new}` and update its callers.",
        "rename function {old} to {new}",
        "the function should be called {new}",
    )

    def semantic_key(self, code):
        return renamed_key(code)

    def make(self, text, rng):
        tree = ast.parse(text)
        fns = [n for n in tree.body if isinstance(n, _FUNCS)]
        if not fns:
            return None
        fn = rng.choice(fns)
        old = fn.name
        if old.startswith("__"):
            return None
        toks = tokens_or_none(text)
        if toks is None:
            return None
        if any(tk.type == tokenize.STRING and re.search(rf"\b{re.escape(old)}\b", tk.string) for tk in toks):
            return None
        t = Text(text)
        uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == old]
        if any(not isinstance(n.ctx, ast.Load) for n in uses):
            return None
        if sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == old
               for n in ast.walk(tree)) != 1:
            return None
        for n in ast.walk(tree):  # shadowing by params / imports / nested assignments: skip
            if isinstance(n, ast.arg) and n.arg == old:
                return None
            if isinstance(n, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == old for a in n.names):
                return None
        spans = [t.node_span(n) for n in uses]
        def_tok = [tk for tk in toks if tk.type == tokenize.NAME and tk.string == old and tk.start[0] >= fn.lineno]
        if not def_tok or def_tok[0].start[0] > fn.body[0].lineno:
            return None
        d = def_tok[0]
        spans.append((t.char_off(*d.start), t.char_off(*d.end)))
        n_name_toks = sum(tk.type == tokenize.NAME and tk.string == old for tk in toks)
        if n_name_toks != len(spans):  # attribute uses like obj.old: not ours
            return None
        taken = all_identifiers(text) | _BUILTINS
        pair = function_new_name(old, taken, rng)
        if pair is None:
            return None
        a, b = pair
        before = text if a == old else apply_edits(text, [(s, e, a) for s, e in spans])
        after = text if b == old else apply_edits(text, [(s, e, b) for s, e in spans])
        return self.task(rng, before, after, old=a, new=b)
