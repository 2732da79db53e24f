"""Remove comments: the cell without its `#` comments, the code exactly as it was.

The reference is `spark_nb.refactors.remove_comments` (the exact refactor users get for the same request); the
meaning check is the whole AST, docstrings included: comments are not in it, so removing them changes nothing
there, and anything else that changed is not a comment.
"""
from __future__ import annotations

import io
import tokenize

from .base import Family


def comment_count(code: str) -> int:
    """`#` comments in code (0 when it does not tokenize)."""
    try:
        return sum(t.type == tokenize.COMMENT for t in tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return 0


class RemoveComments(Family):
    name = "remove_comments"
    refactor = True
    paraphrases = (
        "Remove the comments.",
        "Please delete all the comments from this cell.",
        "Strip all comments.",
        "remove comments",
        "no comments",
        "Get rid of the comments, keep the code as it is.",
        "drop every comment",
        "delete the commented-out code",
        "Clean out the # comments.",
        "entferne alle Kommentare",
        "elimina los comentarios",
        "supprime les commentaires",
    )

    def make(self, text, rng):
        from ...refactors.comments import remove_comments  # the exact refactor is the one right answer

        if comment_count(text) == 0:
            return None
        return self.task(rng, text, remove_comments(text))
