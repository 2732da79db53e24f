"""Bug-fix families: an injected syntax error or misspelt name; the target is the original human code."""
from __future__ import annotations

import ast
import builtins
import tokenize

from .base import Family, Text, all_identifiers, apply_edits, is_ident, parses, tokens_or_none

_COMMON_BUILTINS = ("len", "range", "isinstance", "print", "str", "int", "list", "dict", "enumerate", "sorted",
                    "min", "max", "getattr", "setattr", "hasattr", "tuple", "set", "open", "zip", "repr")
_KEYWORD_TYPOS = {"return": ["retrun", "reutrn", "retun"], "def": ["dfe", "deff"], "import": ["improt", "imoprt"],
                  "while": ["whlie", "wihle"], "class": ["clas", "calss"], "for": ["fro"], "elif": ["elsif", "eilf"],
                  "lambda": ["lamda", "labmda"], "yield": ["yeild"], "raise": ["rasie", "riase"],
                  "except": ["exept", "excpet"]}


class FixSyntaxError(Family):
    name = "fix_syntax_error"
    mechanical = False
    refactor = False
    before_parses = False
    paraphrases = (
        "Fix the syntax error in this cell.",
        "This code does not parse; please fix it.",
        "There is a SyntaxError somewhere here, correct it.",
        "Repair the syntax so the cell runs.",
        "fix syntax error",
        "fix the syntax",
        "SyntaxError pls fix",
        "doesn't parse, fix",
        "fix it",
        "syntax fix",
        "Why won't this run? Fix the typo.",
    )

    def make(self, text, rng):
        t = Text(text)
        toks = tokens_or_none(text)
        if toks is None:
            return None
        cands = []
        for i, tk in enumerate(toks):
            a, b = t.char_off(*tk.start), t.char_off(*tk.end)
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if tk.type == tokenize.OP and tk.string == ":" and nxt is not None and \
                    nxt.type in (tokenize.NEWLINE, tokenize.COMMENT):
                cands.append(("missing colon", (a, b, "")))
            elif tk.type == tokenize.OP and tk.string in ")]}":
                cands.append(("unclosed bracket", (a, b, "")))
            elif tk.type == tokenize.OP and tk.string in "([{":
                cands.append(("unbalanced bracket", (a, b, "")))
            elif tk.type == tokenize.OP and tk.string == "==" and tk.line.lstrip().startswith(("if ", "while ", "elif ")):
                cands.append(("= for ==", (a, b, "=")))
            elif tk.type == tokenize.OP and tk.string == ",":
                cands.append(("missing comma", (a, b, "")))
            elif tk.type == tokenize.STRING and tk.start[0] == tk.end[0] and tk.string[-1] in "'\"" and \
                    not tk.string.endswith(tk.string[-1] * 3):
                cands.append(("unterminated string", (b - 1, b, "")))
            elif tk.type == tokenize.NAME and tk.string in _KEYWORD_TYPOS:
                cands.append(("misspelt keyword", (a, b, rng.choice(_KEYWORD_TYPOS[tk.string]))))
            elif tk.type == tokenize.INDENT and tk.string:
                nl = t.starts[tk.start[0] - 1]
                cands.append(("bad indentation", (nl, nl + len(tk.string), tk.string[:-1] if rng.random() < 0.5
                                                  else tk.string + " ")))
        rng.shuffle(cands)
        for kind, edit in cands[:8]:
            before = apply_edits(text, [edit])
            if not parses(before):
                task = self.task(rng, before, text, error=kind)
                if task:
                    return task
        return None


def misspell(name: str, rng) -> str | None:
    ops = []
    if len(name) >= 3:
        i = rng.randrange(len(name) - 1)
        if name[i] != name[i + 1]:
            ops.append(name[:i] + name[i + 1] + name[i] + name[i + 2:])
    if len(name) >= 4:
        i = rng.randrange(1, len(name))
        ops.append(name[:i] + name[i + 1:])
    if len(name) >= 3:
        i = rng.randrange(len(name))
        if name[i].isalpha():
            ops.append(name[:i] + name[i] + name[i:])
    rng.shuffle(ops)
    for o in ops:
        if is_ident(o) and o != name:
            return o
    return None


class FixMisspeltName(Family):
    name = "fix_misspelt_name"
    mechanical = False
    refactor = False
    paraphrases = (
        "Fix the NameError: a name is misspelt.",
        "There's a typo in a variable name; please fix it.",
        "Correct the misspelt identifier.",
        "NameError: name '{bad}' is not defined",
        "fix the typo",
        "fix NameError",
        "`{bad}` is not defined, fix",
        "typo somewhere, fix",
        "fix the misspelling",
        "name '{bad}' is not defined",
        "Running this raises NameError for `{bad}`. Fix it.",
    )

    def make(self, text, rng):
        tree = ast.parse(text)
        t = Text(text)
        defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        defined |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
        defined |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        in_fstr = {id(x) for j in ast.walk(tree) if isinstance(j, ast.JoinedStr) for x in ast.walk(j)}
        loads = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                 and (n.id in defined or n.id in _COMMON_BUILTINS) and len(n.id) >= 3 and id(n) not in in_fstr]
        if not loads:
            return None
        taken = all_identifiers(text) | set(dir(builtins))
        for _ in range(4):
            node = rng.choice(loads)
            bad = misspell(node.id, rng)
            if bad is None or bad in taken:
                continue
            before = apply_edits(text, [(*t.node_span(node), bad)])
            return self.task(rng, before, text, bad=bad, good=node.id)
        return None
