"""Remove comments: every `#` comment, whole-line or trailing, also inside brackets. Docstrings are not comments.

Kept, because tools read them rather than people: a shebang and an encoding declaration on the first two lines,
and directives (`# type:`, `# noqa`, `# pragma:`, `# fmt:`, `# isort:`, `# pylint:`, `# mypy:`, `# pyright:`,
`# ruff:`, and `# %%` cell markers); `keep_directives=False` removes directives too.
"""
from __future__ import annotations

import re

import libcst as cst

from .base import merge_lines, parse

_DIRECTIVE = re.compile(r"#\s*(type:|noqa\b|pragma:|fmt:|isort:|pylint:|mypy:|pyright:|ruff:|%%)", re.IGNORECASE)
_ENCODING = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+")  # PEP 263


def remove_comments(code: str, *, keep_directives: bool = True) -> str:
    """The cell without its comments (see the module docstring for what stays)."""
    module = parse(code)
    lines = code.splitlines()
    protected = {line.strip() for i, line in enumerate(lines[:2])
                 if line.startswith("#!") and i == 0 or _ENCODING.match(line)}
    return module.visit(_Strip(protected, keep_directives)).code


def _strip_blank_head(lines) -> list[cst.EmptyLine]:
    lines = list(lines)
    while lines and lines[0].comment is None:
        lines.pop(0)
    return lines


def _no_blank_head(stmt):
    return stmt.with_changes(leading_lines=_strip_blank_head(stmt.leading_lines))


class _Strip(cst.CSTTransformer):
    def __init__(self, protected: set[str], keep_directives: bool):
        super().__init__()
        self.protected, self.keep_directives = protected, keep_directives

    def _gone(self, comment: cst.Comment | None) -> bool:
        if comment is None:
            return False
        if self.keep_directives and _DIRECTIVE.match(comment.value):
            return False
        return comment.value.strip() not in self.protected

    def leave_TrailingWhitespace(self, original, updated):
        if not self._gone(updated.comment):
            return updated
        return updated.with_changes(comment=None, whitespace=cst.SimpleWhitespace(""))

    # Whole-line comments are EmptyLines inside the sequences below: those go, and where a comment stood
    # between two blank lines, one of the blank lines goes with it.

    def leave_Module(self, original, updated):
        updated = updated.with_changes(header=self._lines(updated.header), footer=self._lines(updated.footer))
        if original.header and original.header[0].comment is not None:  # the cell began with a comment
            updated = updated.with_changes(header=_strip_blank_head(updated.header))
            if not updated.header and updated.body:
                updated = updated.with_changes(body=[_no_blank_head(updated.body[0]), *updated.body[1:]])
        return updated

    def leave_IndentedBlock(self, original, updated):
        updated = updated.with_changes(footer=self._lines(updated.footer))
        first = original.body[0].leading_lines
        if first and first[0].comment is not None:  # a block that began with a comment begins with code
            updated = updated.with_changes(body=[_no_blank_head(updated.body[0]), *updated.body[1:]])
        return updated

    def leave_ParenthesizedWhitespace(self, original, updated):
        return updated.with_changes(empty_lines=self._lines(updated.empty_lines))

    def on_leave(self, original, updated):
        updated = super().on_leave(original, updated)
        if isinstance(updated, cst.CSTNode) and hasattr(updated, "leading_lines"):  # statements, else:, @...
            updated = updated.with_changes(leading_lines=self._lines(updated.leading_lines))
        if isinstance(updated, cst.CSTNode) and hasattr(updated, "lines_after_decorators"):
            updated = updated.with_changes(lines_after_decorators=self._lines(updated.lines_after_decorators))
        return updated

    def _lines(self, lines) -> list[cst.EmptyLine]:
        """`lines` without the comments that go; the blank runs that met around one collapse to the longer."""
        out: list[cst.EmptyLine] = []
        run: list[cst.EmptyLine] = []
        for line in lines:
            if self._gone(line.comment):
                out, run = merge_lines(out, run), []
            else:
                run.append(line)
        return merge_lines(out, run)
