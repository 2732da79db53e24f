"""Shared pieces of the edit families: the task record, the family base class, and source-position helpers.

Edits are made on the source text at token / AST positions (``ast`` gives UTF-8 byte columns, which
:class:`Text` converts) so everything the family does not change keeps its original, human formatting.
"""
from __future__ import annotations

import ast
import io
import keyword
import random
import re
import tokenize
from dataclasses import asdict, dataclass, field


@dataclass
class EditTask:
    family: str
    instruction: str
    before: str
    after: str
    context: list[str] = field(default_factory=list)  # earlier notebook cells, oldest first
    meta: dict = field(default_factory=dict)  # family-specific facts (e.g. {"old": "x", "new": "total"})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EditTask":
        return cls(d["family"], d["instruction"], d["before"], d["after"], list(d.get("context") or []),
                   dict(d.get("meta") or {}))


class Family:
    """One edit family.  Subclasses set the class attributes and implement ``make``.

    ``mechanical`` is False when the target is human-written code (something real was removed to make the
    ``before``).  ``refactor`` is True when before and after must be semantically equal under
    ``semantic_key`` (which normalises away exactly what the family may change).  ``before_parses`` is False
    only for the syntax-error family.
    """

    name: str = ""
    paraphrases: tuple[str, ...] = ()
    mechanical: bool = True
    refactor: bool = False
    before_parses: bool = True

    def make(self, text: str, rng: random.Random) -> EditTask | None:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- evaluation --------------------------------------------------------------------------------------
    def normalize(self, tree: ast.AST) -> ast.AST:
        """Remove / canonicalise what this family may change (in place allowed)."""
        return tree

    def semantic_key(self, code: str) -> str:
        tree = ast.parse(code)
        return ast.dump(self.normalize(layout_free(tree)))

    # --- helpers ---------------------------------------------------------------------------------------
    def instruction(self, rng: random.Random, **kw) -> str:
        return rng.choice(self.paraphrases).format(**kw)

    def task(self, rng: random.Random, before: str, after: str, meta: dict | None = None, **kw) -> EditTask | None:
        if before == after:
            return None
        if not parses(after) or parses(before) != self.before_parses:
            return None
        meta = dict(meta or {})
        meta.update(kw)
        return EditTask(self.name, self.instruction(rng, **kw), before, after, meta=meta)

    def __repr__(self) -> str:
        return f"<family {self.name}>"


# ------------------------------------------------------------------------------------------------- helpers
def layout_free(tree: ast.AST) -> ast.AST:
    """The tree without what a formatter may change in the AST: the indentation and the surrounding blank space
    of a bare string statement (a docstring), which black re-indents and strips, and which its own AST check
    ignores the same way (each line stripped); and a string's u prefix, which means nothing in Python 3."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.kind = None
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            node.value.value = "\n".join(line.strip() for line in node.value.value.splitlines()).strip()
    return tree


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


class Text:
    """Source text with (line, col) -> offset conversion.  Lines 1-based; ``byte_col`` as ``ast`` reports."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for ln in self.lines:
            self.starts.append(self.starts[-1] + len(ln))

    def off(self, lineno: int, byte_col: int) -> int:
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        col = len(line.encode("utf-8")[:byte_col].decode("utf-8", errors="ignore"))
        return self.starts[lineno - 1] + col

    def char_off(self, lineno: int, col: int) -> int:
        return self.starts[lineno - 1] + col

    def node_span(self, node) -> tuple[int, int]:
        return self.off(node.lineno, node.col_offset), self.off(node.end_lineno, node.end_col_offset)

    def segment(self, node) -> str:
        a, b = self.node_span(node)
        return self.text[a:b]

    def line(self, lineno: int) -> str:
        return self.lines[lineno - 1]

    def indent_of(self, lineno: int) -> str:
        ln = self.lines[lineno - 1]
        return ln[: len(ln) - len(ln.lstrip())]

    def line_span(self, a: int, b: int) -> tuple[int, int]:
        """Offsets covering whole lines a..b (1-based, inclusive), newline included."""
        return self.starts[a - 1], self.starts[b]


def apply_edits(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply non-overlapping (start, end, replacement) edits."""
    out = []
    pos = 0
    for a, b, rep in sorted(edits, key=lambda e: (e[0], e[1])):
        if a < pos:
            raise ValueError("overlapping edits")
        out.append(text[pos:a])
        out.append(rep)
        pos = b
    out.append(text[pos:])
    return "".join(out)


def tokens(text: str) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(text).readline))


def tokens_or_none(text: str) -> list[tokenize.TokenInfo] | None:
    """tokens(text), or None for text the tokenizer rejects (a family then does not apply)."""
    try:
        return tokens(text)
    except (tokenize.TokenError, SyntaxError):
        return None


def multiline_string_lines(text: str) -> set[int]:
    """1-based lines that lie *inside* a multi-line string token (after its first line): re-indenting
    them would change the string's value."""
    out: set[int] = set()
    try:
        for t in tokens(text):
            if t.type == tokenize.STRING and t.end[0] > t.start[0]:
                out.update(range(t.start[0] + 1, t.end[0] + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def all_identifiers(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def reindent(block: str, old: str, new: str, keep: set[int] = frozenset(), first_lineno: int = 1) -> str | None:
    """Change the indentation prefix ``old`` -> ``new`` on every line of block (blank lines and lines in
    ``keep`` untouched).  None if a non-blank line lacks the ``old`` prefix."""
    out = []
    for i, ln in enumerate(block.splitlines(keepends=True)):
        lineno = first_lineno + i
        if lineno in keep or not ln.strip():
            out.append(ln)
            continue
        if not ln.startswith(old):
            return None
        out.append(new + ln[len(old):])
    return "".join(out)


def is_docstring(stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
          ast.DictComp, ast.GeneratorExp)


def is_ident(s: str) -> bool:
    return s.isidentifier() and not keyword.iskeyword(s)
