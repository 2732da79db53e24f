"""Debug-code families: remove print / debugger statements; turn prints into logging calls."""
from __future__ import annotations

import ast

from .base import Family, Text, all_identifiers, apply_edits

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _is_print(stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "print")


def is_debug_stmt(stmt) -> bool:
    if _is_print(stmt):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        f = stmt.value.func
        if isinstance(f, ast.Name) and f.id == "breakpoint":
            return True
        if isinstance(f, ast.Attribute) and f.attr == "set_trace" and isinstance(f.value, ast.Name) \
                and f.value.id in ("pdb", "ipdb"):
            return True
    if isinstance(stmt, ast.Import) and all(a.name in ("pdb", "ipdb") for a in stmt.names):
        return True
    return False


class _StripDebug(ast.NodeTransformer):
    def generic_visit(self, node):
        super().generic_visit(node)
        for fld in ("body", "orelse", "finalbody"):
            b = getattr(node, fld, None)
            if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                nb = [s for s in b if not is_debug_stmt(s)]
                setattr(node, fld, nb or [ast.Pass()])
        return node


def _owns(t: Text, st) -> bool:
    a, b = t.node_span(st)
    head = t.text[t.starts[st.lineno - 1]:a]
    tail = t.text[b:t.starts[st.end_lineno]]
    return not head.strip() and not tail.strip()


_TEMPLATES = (
    'print("{x} =", {x})',
    'print(f"{x}={{{x}!r}}")',
    'print(f"{{{x}=}}")',
    'print("DEBUG", {x})',
    'print({x})',
    'print("DEBUG: {x}", {x})',
    'print(">>>", repr({x}))',
    'print(type({x}), {x})',
    'print("here")',
    'breakpoint()',
    'import pdb; pdb.set_trace()',
)


class RemoveDebug(Family):
    name = "remove_debug"
    mechanical = False  # the target is the human code the debug lines were injected into
    refactor = True
    paraphrases = (
        "Remove the debugging statements.",
        "Please delete the print statements used for debugging.",
        "Clean up the leftover debug prints and breakpoints.",
        "Strip out all the debug output before committing.",
        "Remove prints and pdb calls.",
        "remove debug prints",
        "no prints",
        "delete the prints",
        "clean up debug code",
        "rm debug",
        "get rid of the print statements",
        "remove breakpoints",
    )

    def normalize(self, tree):
        return _StripDebug().visit(tree)

    def make(self, text, rng):
        tree = ast.parse(text)
        t = Text(text)
        real = []
        for node in ast.walk(tree):
            for fld in ("body", "orelse", "finalbody"):
                b = getattr(node, fld, None)
                if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                    dbg = [s for s in b if is_debug_stmt(s) and _owns(t, s)]
                    if dbg and len(dbg) < len(b):
                        real += dbg
        if real and rng.random() < 0.3:
            edits = [(*t.line_span(s.lineno, s.end_lineno), "") for s in real]
            task = self.task(rng, text, apply_edits(text, edits), mode="real")
            if task:
                return task
        # inject debug lines after simple statements inside functions; the human code is the target
        sites = []
        for fn in ast.walk(tree):
            if not isinstance(fn, _FUNCS):
                continue
            for node in ast.walk(fn):
                for fld in ("body", "orelse", "finalbody"):
                    b = getattr(node, fld, None)
                    if not (isinstance(b, list) and b and isinstance(b[0], ast.stmt)):
                        continue
                    for s in b:
                        if isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and _owns(t, s):
                            tg = s.targets[0] if isinstance(s, ast.Assign) else s.target
                            if isinstance(tg, ast.Name):
                                sites.append((s, tg.id))
        if not sites:
            return None
        rng.shuffle(sites)
        chosen = sorted({id(s): (s, x) for s, x in sites[: rng.randint(1, min(3, len(sites)))]}.values(),
                        key=lambda p: p[0].end_lineno)
        edits = []
        for s, x in chosen:
            tpl = rng.choice(_TEMPLATES)
            pos = t.starts[s.end_lineno]
            edits.append((pos, pos, t.indent_of(s.lineno) + tpl.format(x=x) + "\n"))
        try:
            before = apply_edits(text, edits)
        except ValueError:
            return None
        return self.task(rng, before, text, mode="injected")


# ------------------------------------------------------------------------------------------------ logging
def _log_values(call) -> list:
    vals = []
    for a in call.args:
        if isinstance(a, ast.JoinedStr):
            vals += [v.value for v in a.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(a, ast.Constant) and isinstance(a.value, str):
            continue
        else:
            vals.append(a)
    return vals


def _is_log_call(call) -> bool:
    f = call.func
    return (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in ("logger", "logging", "log")
            and f.attr in ("debug", "info", "warning", "error", "critical", "exception"))


class _Canon(ast.NodeTransformer):
    def visit_Call(self, node):
        self.generic_visit(node)
        if (isinstance(node.func, ast.Name) and node.func.id == "print") or _is_log_call(node):
            return ast.Call(func=ast.Name(id="_log", ctx=ast.Load()), args=_log_values(node), keywords=[])
        return node


def _quote(s: str, prefer_double: bool) -> str:
    r = repr(s)
    if prefer_double and r.startswith("'") and '"' not in s and "\\'" not in r:
        r = '"' + r[1:-1] + '"'
    return r


class PrintToLogging(Family):
    name = "print_to_logging"
    refactor = False
    paraphrases = (
        "Replace the print calls with logging.",
        "Please use the logging module instead of print.",
        "Convert the prints into logger calls.",
        "Switch from print() to proper logging.",
        "Log these messages instead of printing them.",
        "print -> logging",
        "use logging",
        "logging instead of print",
        "prints to logger",
        "use a logger",
        "no print, log it",
    )

    def normalize(self, tree):
        tree = _Canon().visit(tree)
        body = []
        for s in tree.body:
            if isinstance(s, ast.Import) and [a.name for a in s.names] == ["logging"]:
                continue
            if isinstance(s, ast.Assign) and "getLogger" in ast.dump(s.value):
                continue
            body.append(s)
        tree.body = body
        return tree

    def make(self, text, rng):
        if {"logging", "logger", "log"} & all_identifiers(text):
            return None
        tree = ast.parse(text)
        t = Text(text)
        prints = [n.value for n in ast.walk(tree) if _is_print(n)]
        if not prints:
            return None
        use_logger = rng.random() < 0.6
        obj = "logger" if use_logger else "logging"
        edits = []
        for call in prints:
            if any(isinstance(a, ast.Starred) for a in call.args) or not call.args:
                return None
            level = "info"
            for k in call.keywords:
                if k.arg == "file" and ast.unparse(k.value) == "sys.stderr":
                    level = rng.choice(["error", "warning"])
                else:
                    return None
            seg = t.segment(call)
            dq = '"' in seg.split("(", 1)[1][:2]
            args = call.args
            if len(args) == 1 and isinstance(args[0], ast.JoinedStr):
                inner = t.segment(args[0])
                if "\n" in inner:
                    return None
                new = f"{obj}.{level}({inner})"
            else:
                pieces, vals = [], []
                for a in args:
                    if isinstance(a, ast.Constant) and isinstance(a.value, str):
                        pieces.append(a.value.replace("%", "%%"))
                    elif isinstance(a, ast.JoinedStr):
                        return None
                    else:
                        pieces.append("%s")
                        s = t.segment(a)
                        vals.append(s if "\n" not in s else ast.unparse(a))
                new = f"{obj}.{level}(" + ", ".join([_quote(" ".join(pieces), dq)] + vals) + ")"
            edits.append((*t.node_span(call), new))
        head = "import logging\n\n"
        if use_logger:
            head += "logger = logging.getLogger(__name__)\n\n"
        first = tree.body[0]
        if isinstance(first, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            head += "\n"
        edits.append((0, 0, head))
        try:
            after = apply_edits(text, edits)
        except ValueError:
            return None
        return self.task(rng, text, after, n_prints=len(prints))
