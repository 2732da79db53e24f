"""Families whose target is human-written code: something real is removed to make the ``before``."""
from __future__ import annotations

import ast
import random
import tokenize

from .base import (Family, Text, apply_edits, is_docstring, multiline_string_lines, reindent,
                   tokens, tokens_or_none)

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _owns_lines(t: Text, node) -> bool:
    """Node alone on its lines: only whitespace before it and only whitespace / a comment after it."""
    a, b = t.node_span(node)
    head = t.text[t.starts[node.lineno - 1]:a]
    tail = t.text[b:t.starts[node.end_lineno]]
    return not head.strip() and (not tail.strip() or tail.strip().startswith("#"))


# ------------------------------------------------------------------------------------------------ docstrings
class AddDocstrings(Family):
    name = "add_docstrings"
    mechanical = False
    refactor = True
    paraphrases = (
        "Add docstrings to the functions and classes in this cell.",
        "Please write a docstring for each function and class.",
        "Document this code with docstrings.",
        "Add PEP 257 docstrings.",
        "Write docstrings explaining what each function does.",
        "add docstrings",
        "docstrings pls",
        "document this",
        "docstrings",
        "needs docstrings",
        "add missing docstrings",
        "Could you document these functions?",
    )

    def normalize(self, tree):
        for node in ast.walk(tree):
            if isinstance(node, _DEFS + (ast.Module,)) and len(node.body) > 1 and is_docstring(node.body[0]):
                node.body = node.body[1:]
        return tree

    def make(self, text, rng):
        tree = ast.parse(text)
        t = Text(text)
        edits = []
        for node in ast.walk(tree):
            if isinstance(node, _DEFS) and len(node.body) > 1 and is_docstring(node.body[0]):
                d = node.body[0]
                if d.lineno > node.lineno and _owns_lines(t, d) and node.body[1].lineno > d.end_lineno:
                    edits.append((*t.line_span(d.lineno, d.end_lineno), ""))
        if not edits:
            return None
        if len(edits) > 1 and rng.random() < 0.25:  # sometimes only part of the code lacks docs
            edits = rng.sample(edits, rng.randint(1, len(edits) - 1))
        return self.task(rng, apply_edits(text, edits), text, n_docstrings=len(edits))


# ------------------------------------------------------------------------------------------------ type hints
class AddTypeHints(Family):
    name = "add_type_hints"
    mechanical = False
    refactor = True
    paraphrases = (
        "Add type hints to the function signatures.",
        "Please annotate the parameters and return types.",
        "Add type annotations.",
        "Type-annotate this code.",
        "Make this code fully typed: annotate arguments and return values.",
        "add type hints",
        "type hints pls",
        "annotate types",
        "typing",
        "add types",
        "hints",
        "Could you add typing to these functions?",
    )

    def normalize(self, tree):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                node.returns = None
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                    if arg is not None:
                        arg.annotation = None
                        arg.type_comment = None
            for fld in ("body", "orelse", "finalbody"):
                stmts = getattr(node, fld, None)
                if isinstance(stmts, list):
                    new = []
                    for s in stmts:
                        if isinstance(s, ast.ImportFrom) and s.module in ("typing", "__future__"):
                            continue
                        if isinstance(s, ast.AnnAssign) and s.value is not None and s.simple:
                            s = ast.Assign(targets=[s.target], value=s.value, lineno=0)
                        new.append(s)
                    if new or not stmts:
                        setattr(node, fld, new)
        return tree

    def make(self, text, rng):
        tree = ast.parse(text)
        t = Text(text)
        toks = tokens(text)
        tok_offs = [(t.char_off(*tk.start), t.char_off(*tk.end), tk) for tk in toks]
        edits = []
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                if arg is None or arg.annotation is None:
                    continue
                start = t.off(arg.lineno, arg.col_offset) + len(arg.arg)
                end = t.off(arg.annotation.end_lineno, arg.annotation.end_col_offset)
                if text[start:start + 1] != ":" and not text[start:end].lstrip().startswith(":"):
                    return None
                rep = ""
                if text[end:end + 3] == " = ":
                    end += 3
                    rep = "="
                edits.append((start, end, rep))
            if node.returns is not None:
                rs = t.off(node.returns.lineno, node.returns.col_offset)
                re_ = t.off(node.returns.end_lineno, node.returns.end_col_offset)
                arrows = [i for i, (s, _, tk) in enumerate(tok_offs) if tk.string == "->" and s < rs]
                if not arrows:
                    return None
                i = arrows[-1]
                prev_end = tok_offs[i - 1][1]
                edits.append((prev_end, re_, ""))
        if not edits:
            return None
        try:
            before = apply_edits(text, edits)
        except ValueError:
            return None
        return self.task(rng, before, text, n_annotations=len(edits))


# ------------------------------------------------------------------------------------------------ comments
_SKIP_COMMENT = ("#!", "# type:", "# noqa", "# pragma", "# fmt:", "# -*-", "# pylint", "# mypy", "# pyright",
                 "# isort", "# coding", "#type:")


class AddComments(Family):
    name = "add_comments"
    mechanical = False
    refactor = True
    paraphrases = (
        "Add comments explaining the tricky parts of this code.",
        "Please comment this code.",
        "Add explanatory inline comments.",
        "Annotate the logic with short comments.",
        "Write comments that explain why the code does what it does.",
        "add comments",
        "comment this",
        "comments pls",
        "explain with comments",
        "needs comments",
        "Could you add a few comments?",
    )

    def make(self, text, rng):
        t = Text(text)
        toks = tokens_or_none(text)
        if toks is None:
            return None
        edits = []
        n_words = 0
        for tk in toks:
            if tk.type != tokenize.COMMENT or tk.string.lower().startswith(_SKIP_COMMENT):
                continue
            n_words += len(tk.string.split()) - 1
            if tk.line.strip() == tk.string.strip():
                edits.append((*t.line_span(tk.start[0], tk.start[0]), ""))
                continue
            a = t.char_off(*tk.start)
            b = t.char_off(*tk.end)
            while a > 0 and text[a - 1] in " \t":
                a -= 1
            edits.append((a, b, ""))
        if not edits or n_words < 2:
            return None
        return self.task(rng, apply_edits(text, edits), text, n_comments=len(edits))


# ------------------------------------------------------------------------------------------------ error handling
class AddErrorHandling(Family):
    name = "add_error_handling"
    mechanical = False
    refactor = False
    paraphrases = (
        "Add error handling to this code.",
        "Please handle the exceptions this code can raise.",
        "Wrap the risky part in try/except.",
        "Make this code robust against errors.",
        "add error handling",
        "handle errors",
        "try/except pls",
        "catch exceptions",
        "add try except",
        "Handle the {exc} that can be raised here.",
        "catch {exc}",
        "Wrap it in a try block that catches {exc}.",
    )

    def normalize(self, tree):
        class Unwrap(ast.NodeTransformer):
            def visit_Try(self, node):
                self.generic_visit(node)
                return node.body + node.orelse + node.finalbody
        return Unwrap().visit(tree)

    def make(self, text, rng):
        tree = ast.parse(text)
        t = Text(text)
        keep = multiline_string_lines(text)
        tries = [n for n in ast.walk(tree) if isinstance(n, ast.Try) and n.handlers]
        rng.shuffle(tries)
        for node in tries:
            if not t.line(node.lineno).strip().startswith("try") or node.body[0].lineno == node.lineno:
                continue
            outer = t.indent_of(node.lineno)
            parts = []
            ok = True
            for block, first in ((node.body, node.lineno + 1), (node.orelse, None), (node.finalbody, None)):
                if not block:
                    continue
                a = first or block[0].lineno
                b = block[-1].end_lineno
                if block[0].lineno <= a - 1 and first is None:
                    ok = False
                    break
                inner = t.indent_of(block[0].lineno)
                seg = "".join(t.lines[a - 1:b])
                re_ = reindent(seg, inner, outer, keep, a)
                if re_ is None or len(inner) <= len(outer):
                    ok = False
                    break
                parts.append(re_)
            if not ok:
                continue
            a, b = t.line_span(node.lineno, node.end_lineno)
            before = text[:a] + "".join(parts) + text[b:]
            h = node.handlers[0].type
            exc = ast.unparse(h) if isinstance(h, (ast.Name, ast.Attribute, ast.Tuple)) else None
            rng2 = random.Random(rng.random())
            paras = [p for p in self.paraphrases if exc or "{exc}" not in p]
            task = self.task(rng2, before, text, exc=exc or "")
            if task:
                task.instruction = rng.choice(paras).format(exc=f"`{exc}`" if exc else "")
                return task
        return None
