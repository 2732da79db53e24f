"""What the exact refactors share: their error, parsing into a concrete syntax tree, and removing statements without
losing the comments around them."""
from __future__ import annotations

import ast
import warnings
from collections.abc import Callable

import libcst as cst


class RefactorError(ValueError):
    """The refactor cannot be applied exactly: the message says why (the cell is left as it was)."""


def parse(code: str) -> cst.Module:
    """The cell as a libcst Module (which prints back to exactly `code`), or a RefactorError saying where it fails."""
    try:
        return cst.parse_module(code)
    except cst.ParserSyntaxError as err:
        raise RefactorError(f"the cell does not parse (line {err.raw_line}, column {err.raw_column}): "
                            f"{err.message}") from None
    except (RecursionError, ValueError) as err:  # e.g. NUL bytes, absurd nesting
        raise RefactorError(f"the cell does not parse: {err}") from None


def check_parses(code: str) -> None:
    """A RefactorError unless `code` is Python (the compiler's parser: fast, for text made by other tools)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None)
        raise RefactorError("the cell does not parse" + (f" (line {line})" if line else "") + f": {err}") from None


def is_call_to(node: cst.CSTNode, *dotted: str) -> bool:
    """`node` is a call to one of the dotted names, spelt exactly so ("print", "pdb.set_trace")."""
    return isinstance(node, cst.Call) and dotted_name(node.func) in dotted


def dotted_name(node: cst.CSTNode) -> str | None:
    """"a.b.c" for Name/Attribute chains, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


# -- removing statements ---------------------------------------------------------------------------------------

STRUCTURE = (cst.Module, cst.BaseCompoundStatement, cst.BaseSuite, cst.SimpleStatementLine, cst.Else,
             cst.ExceptHandler, cst.ExceptStarHandler, cst.Finally, cst.MatchCase)  # nodes that hold statements


class StatementRemover(cst.CSTTransformer):
    """Removes the small statements `drop` selects (an expression statement, an import, ...) wherever they are.

    A removed line's own trailing comment goes with it; the comment lines above it stay, moved onto the next
    statement (or the block's end), so only what was asked for disappears. A block left empty gets `pass`."""

    def __init__(self, drop: Callable[[cst.BaseSmallStatement], bool]):
        super().__init__()
        self.drop = drop

    def on_visit(self, node) -> bool:
        super().on_visit(node)
        return isinstance(node, STRUCTURE)  # what holds statements: skipping the rest makes a pass far cheaper

    def _keep(self, original, updated) -> list[cst.BaseSmallStatement]:
        """The small statements of one line that stay: `drop` judges the original nodes (what a caller saw when
        it chose them), the updated ones are kept."""
        kept = [u for o, u in zip(original, updated) if not self.drop(o)]
        if kept and kept[-1] is not updated[-1]:  # the line's last statement went: no `;` dangles after the new one
            kept[-1] = kept[-1].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
        return kept

    def leave_SimpleStatementSuite(self, original, updated):
        return updated.with_changes(body=self._keep(original.body, updated.body) or [cst.Pass()])

    # Lines are filtered by the block that holds them: libcst itself drops a line left empty, with its comments.

    def _body(self, original, updated) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        """The statements kept, and the comment lines left over after the last one."""
        out, carried, removed = [], [], False
        for old, stmt in zip(original, updated):
            if isinstance(stmt, cst.SimpleStatementLine):
                kept = self._keep(old.body, stmt.body)
                if not kept:
                    carried, removed = merge_lines(carried, list(stmt.leading_lines)), True
                    continue
                stmt = stmt.with_changes(body=kept)
            if removed:
                lines = merge_lines(carried, list(stmt.leading_lines))
                if not out:  # now first in its block: no blank lines before it
                    lines = lines[next((i for i, x in enumerate(lines) if not _blank(x)), len(lines)):]
                stmt = stmt.with_changes(leading_lines=lines)
                carried, removed = [], False
            out.append(stmt)
        return out, strip_blank_tail(carried)

    def leave_IndentedBlock(self, original, updated):
        body, carried = self._body(original.body, updated.body)
        if not body:
            return updated.with_changes(body=[cst.SimpleStatementLine([cst.Pass()], leading_lines=carried)])
        return updated.with_changes(body=body, footer=carried + list(updated.footer))

    def leave_Module(self, original, updated):
        body, carried = self._body(original.body, updated.body)
        return updated.with_changes(body=body, footer=carried + list(updated.footer))


def _blank(line: cst.EmptyLine) -> bool:
    return line.comment is None


def merge_lines(above: list[cst.EmptyLine], below: list[cst.EmptyLine]) -> list[cst.EmptyLine]:
    """Two runs of blank/comment lines joined where a statement between them went: the blank lines that meet at
    the join collapse to the longer of the two runs, so removing a statement never widens a gap."""
    a = len(above)
    while a and _blank(above[a - 1]):
        a -= 1
    b = 0
    while b < len(below) and _blank(below[b]):
        b += 1
    gap = above[a:] if len(above) - a >= b else below[:b]
    return above[:a] + gap + below[b:]


def strip_blank_tail(lines: list[cst.EmptyLine]) -> list[cst.EmptyLine]:
    while lines and _blank(lines[-1]):
        lines = lines[:-1]
    return lines
