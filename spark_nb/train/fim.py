"""Fill-in-the-middle examples: where a user's cursor sits in a cell, and the text a completion should insert there.

A cursor is drawn where people stop typing and wait for a suggestion (`cursors`):

    identifier  just after a name, the rest of its line to come          `total = sum(valu|es)`
    bracket     just after an opening bracket, the rest of the line      `print(|"done", file=f)`
    assign      just after `= `, the right-hand side to come             `x = |compute(a, b)`
    block       at the first body line of `def ...:`, `for ...:` ... (indented), up to 3 lines of it
    line        at the start of any other line (indented), that line

The middle is the rest of the cursor's line (from the cursor to the end of the line, newline excluded), or the
first lines of a block's body, and has a letter or digit in it (a lone `)` or `:` is left out); the prefix is the cell before it, the suffix the cell after it. Candidates come from
Python's tokenizer, so names inside strings and comments are never cursors.

The prompt is spark_nb.server.complete's, byte for byte, in the order the model is trained in (its `FIM_ORDERS`;
the head is the earlier cells joined to the prefix by a blank line)::

    psm   <|fim_prefix|> head <|fim_suffix|> suffix <|fim_middle|>   then   middle <|end|>
    spm   <|fim_prefix|><|fim_suffix|> suffix <|fim_middle|> head   then   middle <|end|>

An SPM prompt ends in the head, so a head whose last line is only indentation is held back as the server holds it
(complete.held): the indentation starts the middle instead.

`encode` gives the ids and a loss mask (the middle and <|end|> supervised, and the prefix of the cell itself: more
plain-code signal from the same forward pass; never the context or the suffix). No torch here: the completion
evaluation (spark_nb.evaluate.completion) draws its cursors with the same code.
"""
from __future__ import annotations

import io
import keyword
import random
import tokenize
from dataclasses import dataclass

import numpy as np

from ..server import complete
from ..server.complete import PREFIX_CHARS, SUFFIX_CHARS  # the server's cuts
from . import tokenizer as T

KINDS = ("identifier", "bracket", "assign", "block", "line")
MAX_MIDDLE_CHARS = 120  # a line longer than this is no inline suggestion
BLOCK_LINES = 3  # a block's middle: at most this many body lines


@dataclass(frozen=True)
class Cursor:
    kind: str
    start: int  # offset of the cursor in the cell
    end: int  # offset where the middle ends (exclusive)


@dataclass(frozen=True)
class FimExample:
    prefix: str
    middle: str
    suffix: str
    context: str = ""  # earlier cells, as the completer sends them
    kind: str = ""

    def head(self) -> str:
        """The text before the cursor as complete.prompt builds it: context, a blank line, the prefix."""
        return complete.head(self.prefix, self.context)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def cursors(text: str) -> list[Cursor]:
    """Every candidate cursor of a cell (in text order); [] for text Python's tokenizer rejects."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    starts = _line_starts(text)
    lines = text.split("\n")

    def offset(row: int, col: int) -> int:
        return starts[row - 1] + col

    def line_end(row: int) -> int:
        return starts[row - 1] + len(lines[row - 1])

    out: list[Cursor] = []
    seen: set[int] = set()

    def add(kind: str, start: int, end: int) -> None:
        middle = text[start:end]
        if start in seen or not any(ch.isalnum() for ch in middle) or len(middle) > MAX_MIDDLE_CHARS * (BLOCK_LINES if kind == "block"
                                                                                    else 1):
            return
        seen.add(start)
        out.append(Cursor(kind, start, end))

    code_rows = {t.start[0] for t in toks if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                                                             tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)}
    for i, t in enumerate(toks):
        row, col = t.end
        if t.start[0] != row:  # a token over several lines (a triple-quoted string): no cursor in it
            continue
        if t.type == tokenize.NAME and not keyword.iskeyword(t.string):
            add("identifier", offset(row, col), line_end(row))
        elif t.type == tokenize.OP and t.string in "([{":
            add("bracket", offset(row, col), line_end(row))
        elif t.type == tokenize.OP and t.string == "=":
            at = offset(row, col)
            at += text[at:at + 1] == " "
            add("assign", at, line_end(row))
        elif t.type == tokenize.OP and t.string == ":" and i + 1 < len(toks) and \
                toks[i + 1].type in (tokenize.NEWLINE, tokenize.COMMENT):
            body = _block_body(lines, row, code_rows)
            if body:
                first, last = body
                indent = len(lines[first - 1]) - len(lines[first - 1].lstrip(" \t"))
                add("block", offset(first, indent), line_end(last))
    block_rows = {text.count("\n", 0, c.start) + 1 for c in out if c.kind == "block"}
    for row in sorted(code_rows):
        line = lines[row - 1]
        indent = len(line) - len(line.lstrip(" \t"))
        if row not in block_rows and row > 1 and line.strip() and not line.lstrip().startswith("#"):
            add("line", offset(row, indent), line_end(row))
    return sorted(out, key=lambda c: c.start)


def _block_body(lines: list[str], row: int, code_rows: set[int]) -> tuple[int, int] | None:
    """(first, last) rows of the first lines of the block opened on `row`: indented deeper, no blank line between,
    at most BLOCK_LINES; None when the next line is not such a body line."""
    head = lines[row - 1]
    indent = len(head) - len(head.lstrip(" \t"))
    first = row + 1
    if first > len(lines) or first not in code_rows:
        return None
    body_indent = len(lines[first - 1]) - len(lines[first - 1].lstrip(" \t"))
    if body_indent <= indent:
        return None
    last = first
    while last + 1 <= len(lines) and last + 1 - first < BLOCK_LINES and lines[last].strip() and \
            (last + 1) in code_rows and len(lines[last]) - len(lines[last].lstrip(" \t")) >= body_indent:
        last += 1
    return first, last


def draw(cands: list[Cursor], rng: random.Random) -> Cursor | None:
    """One cursor: a kind drawn uniformly among those the cell has, then a position of that kind."""
    kinds = sorted({c.kind for c in cands}, key=KINDS.index)
    if not kinds:
        return None
    kind = rng.choice(kinds)
    return rng.choice([c for c in cands if c.kind == kind])


def example(text: str, cursor: Cursor, context: str = "") -> FimExample:
    return FimExample(text[:cursor.start], text[cursor.start:cursor.end], text[cursor.end:], context, cursor.kind)


def examples(records: list[dict], seed: int, per_unit: int = 1, context_p: float = 0.5,
             context_chars: int = 1500) -> list[FimExample]:
    """FIM examples from corpus units ({"text", "source", "path"} in file order, as plain_{split}.jsonl holds them):
    `per_unit` cursors per unit, the unit before it in the same file as context with probability `context_p`
    (its last `context_chars`, from a line start). Deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    prev_key, prev_text = None, ""
    for r in records:
        key = (r.get("source"), r.get("path"))
        context = prev_text if key == prev_key else ""
        prev_key, prev_text = key, r["text"]
        cands = cursors(r["text"])
        for _ in range(per_unit):
            c = draw(cands, rng)
            if c is None:
                break
            ctx = context if context and rng.random() < context_p else ""
            if len(ctx) > context_chars:
                cut = ctx.find("\n", len(ctx) - context_chars)
                ctx = ctx[cut + 1:] if cut >= 0 else ""
            out.append(example(r["text"], c, ctx))
    return out


def encode(fmt, many: list[FimExample], order: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids int32, loss mask uint8) per example, for an EditFormat `fmt` whose tokenizer has the FIM tokens, the
    prompt in `order` ("psm" | "spm", complete.FIM_ORDERS). The head (context + prefix) is encoded as one text, as
    the completer's prompt is; its mask starts at the prefix."""
    tok = fmt.tok
    ids_of = {t: tok.token_to_id(t) for t in T.FIM_TOKENS}
    if None in ids_of.values():
        raise ValueError("the tokenizer lacks the FIM tokens: add them with spark_nb.train.tokenizer.with_fim")
    pieces = complete.FIM_ORDERS[order]
    texts, cuts = [], []
    for e in many:
        head, middle = e.head(), e.middle
        cuts.append(len(head) - len(e.prefix[-PREFIX_CHARS:]))  # where the cell's own text begins in the head
        if pieces[-1] == "head":  # the prompt ends in it: the server holds back a last line of indentation
            head, indent = complete.held(head)
            middle = indent + middle
        texts += [head, e.suffix[:SUFFIX_CHARS], middle]
    nonempty = [t for t in texts if t]
    enc = iter(tok.encode_batch(nonempty, add_special_tokens=False))
    encodings = [next(enc) if t else None for t in texts]
    out = []
    for k, cut in enumerate(cuts):
        eh, es, em = encodings[3 * k:3 * k + 3]
        parts = {"head": (eh.ids, [int(a >= cut) for a, _ in eh.offsets]) if eh else ([], []),
                 "suffix": (es.ids, [0] * len(es.ids)) if es else ([], [])}
        ids, mask = [], []
        for p in pieces:  # the prompt: FIM tokens, head and suffix in the model's order
            p_ids, p_mask = parts[p] if p in parts else ([ids_of[p]], [0])
            ids += p_ids
            mask += p_mask
        m_ids = em.ids if em else []
        ids += m_ids + [fmt.end]
        mask += [1] * len(m_ids) + [1]
        out.append((np.asarray(ids, np.int32), np.asarray(mask, np.uint8)))
    return out
