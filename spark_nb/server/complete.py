"""One inline completion: the prompt for a model's style, and where a suggestion should end.

A model whose tokenizer has fill-in-the-middle tokens (Qwen2.5-Coder's `<|fim_prefix|>`, `<|fim_suffix|>`,
`<|fim_middle|>`) sees the text before and after the cursor; any other model continues the text before it. Earlier
cells come first in both, as context (the "head": context, a blank line, the prefix).

The FIM tokens are laid out in the order the model was trained in (`FIM_ORDERS`, the tokenizer's `fim_order`, read
from tokenizer_config.json; PSM where it says nothing: Qwen's and StarCoder's order):

    psm   <|fim_prefix|> head <|fim_suffix|> suffix <|fim_middle|>             then the middle
    spm   <|fim_prefix|><|fim_suffix|> suffix <|fim_middle|> head              then the middle

SPM is the variant of Bavarian et al. 2022 ("Efficient Training of Language Models to Fill in the Middle", app. D)
that keeps PSM's three tokens, and the order spark_nb.train trains a small model in: the middle follows the text
before the cursor with no token between them, so filling in is the continuation the model already writes, the
suffix one more text before it. In PSM the 6M-parameter built-in model never learned where the prefix ended (exact
line 0.7 % against continuation's 6.3 % after the same fine-tune). An SPM prompt also ends in the cursor's text, so
`held` applies as to a continuation, and typing only appends to it (the suffix is not prefilled at each keystroke).
spark_nb.train.fim encodes training examples from the same `FIM_ORDERS` and `head`.

A suggestion ends at a boundary a reader would choose (`Boundary`): the end of the line when the cursor is inside a
line, with text after it (or where the model writes that text again) or code before it that opens no block (the
rest of a name, a call's arguments, an assignment's value: what FIM middles of those cursors are); at a line's
start or after a block's colon, a blank line or a line that dedents below the cursor's line (the block ended).
Mid-line suggestions had run on over the lines after (82 characters on average against 31-character middles on
the built-in model's test cursors).

A continuation or SPM prompt never ends in a line's indentation (`held`): byte-level BPE tokenizers merge a new line
with the spaces after it (`\n` + four spaces is one token) and keep the last space for the word that follows
(` return`), so a model has hardly ever seen that token before a word, and the built-in model suggested nothing
at line starts (0 of its 300-cursor test's line and block starts). The prompt stops at the line break instead; the
model writes the indentation itself, and the suggestion is what follows it (nothing if the model went elsewhere,
a blank line or a dedent). This is the "token healing" of prompt boundaries, done for the one boundary that
matters in code.
"""
from __future__ import annotations

from dataclasses import dataclass

FIM = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
CONTEXT_CHARS = 4000  # earlier cells kept (their end); the prompt's prefill must fit a keystroke's pause
PREFIX_CHARS = 4000
SUFFIX_CHARS = 1000


# The FIM prompt, piece by piece: a FIM token, or "head" / "suffix" for that text
FIM_ORDERS = {
    "psm": (FIM[0], "head", FIM[1], "suffix", FIM[2]),
    "spm": (FIM[0], FIM[1], "suffix", FIM[2], "head"),
}


def has_fim(tokenizer) -> bool:
    return all(tokenizer.token_to_id(t) is not None for t in FIM)


def fim_order(tokenizer) -> str | None:
    """The model's FIM order ("psm" | "spm"), None when its tokenizer lacks the FIM tokens."""
    return getattr(tokenizer, "fim_order", "psm") if has_fim(tokenizer) else None


def head(prefix: str, context: str = "") -> str:
    """The text before the cursor: the earlier cells' end, a blank line, the prefix's end."""
    context = context[-CONTEXT_CHARS:]
    return (context.rstrip("\n") + "\n\n" if context.strip() else "") + prefix[-PREFIX_CHARS:]


def fim_pieces(order: str, before: str, suffix: str) -> list[str]:
    """The FIM prompt's pieces in `order`, `before` as the head (joined, the prompt; the suffix cut already)."""
    return [{"head": before, "suffix": suffix}.get(p, p) for p in FIM_ORDERS[order]]


def prompt(tokenizer, prefix: str, suffix: str = "", context: str = "") -> str:
    """The text the model completes: FIM in the model's order where the tokenizer has the tokens, continuation of
    the prefix otherwise."""
    order = fim_order(tokenizer)
    if order is None:
        return head(prefix, context)
    return "".join(fim_pieces(order, head(prefix, context), suffix[:SUFFIX_CHARS]))


def held(text: str) -> tuple[str, str]:
    """(the prompt to run, the indentation held back from its end): a prompt whose last line is only spaces or
    tabs runs without them, and the model's answer must start with them."""
    line = text[text.rfind("\n") + 1:]
    if not line or line.strip(" \t") or "\n" not in text:
        return text, ""
    return text[:len(text) - len(line)], line


def past_held(text: str, indent: str) -> str | None:
    """What the model wrote after the held indentation: "" while it may still be writing it, None once it wrote
    something else (a blank line, a dedent): then there is nothing to suggest."""
    if len(text) < len(indent):
        return "" if indent.startswith(text) else None
    return text[len(indent):] if text.startswith(indent) else None


@dataclass
class Boundary:
    """Where a suggestion stops. `shown(text)` is how much of the text generated so far may be shown: everything
    before the boundary, holding back a new line until its first character says whether it still belongs."""

    indent: int  # the cursor line's indentation
    single_line: bool  # the cursor is inside a line (text after it, or code before it that opens no block)
    rest: str = ""  # the text after the cursor on its line, stripped: where the model writes it again, it ends

    @classmethod
    def at(cls, prefix: str, suffix: str) -> "Boundary":
        line = prefix[prefix.rfind("\n") + 1:]
        rest = suffix.split("\n", 1)[0].strip()
        inside = bool(rest) or bool(line.strip()) and not line.rstrip().endswith(":")
        return cls(len(line) - len(line.lstrip(" \t")), inside, rest)

    def shown(self, text: str) -> tuple[int, bool]:
        """(characters that may be shown, whether the suggestion has ended there)."""
        if self.single_line:
            line = text.split("\n", 1)[0]
            hit = line.find(self.rest) if self.rest else -1
            if hit >= 0:
                return hit, True
            if "\n" in text:
                return len(line), True
            held = next((n for n in range(min(len(self.rest), len(line)), 0, -1)
                         if self.rest.startswith(line[-n:])), 0)  # may be where the rest begins again
            return len(line) - held, False
        first = text.find("\n")
        if first < 0:
            return len(text), False
        start = first  # text[start] is the "\n" before the line being judged
        while True:
            end = text.find("\n", start + 1)
            line = text[start + 1:] if end < 0 else text[start + 1:end]
            if not line.strip():
                if end < 0:
                    return start, False  # whitespace so far: its indentation is not known yet
                return start, True  # a blank line
            if len(line) - len(line.lstrip(" \t")) < self.indent:
                return start, True  # dedented below the cursor's block
            if end < 0:
                return len(text), False
            start = end


class Suggestion:
    """One suggestion as the model writes it, for the server to show and the evaluation to score alike: the
    prompt to run (`held` applied), then each piece of the model's text checked past the held indentation and cut
    where its Boundary ends it.

        s = Suggestion(tokenizer, prefix, suffix, context)   # s.text: the prompt to run
        new, ended = s.add(piece)                             # new: what may be shown now and was not before
        s.shown                                               # all that was shown; held-back whitespace never is
    """

    def __init__(self, tokenizer, prefix: str, suffix: str = "", context: str = ""):
        self.text, self._indent = held(prompt(tokenizer, prefix, suffix, context))
        self._boundary = Boundary.at(prefix, suffix)
        self._written, self.shown = "", ""

    def add(self, piece: str) -> tuple[str, bool]:
        """The model wrote `piece`: (the text that may be shown now and was not, whether the suggestion ended)."""
        self._written += piece
        after = past_held(self._written, self._indent)
        if after is None:  # the model left the cursor's line (a blank line, a dedent): nothing more
            return "", True
        upto, ended = self._boundary.shown(after)
        new = after[len(self.shown):upto]
        self.shown += new
        return new, ended
