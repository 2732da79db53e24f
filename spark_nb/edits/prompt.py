"""Prompts per model family, and getting the code back out of the output.

Two styles:

- ``"edit"``: the built-in model (its tokenizer has the edit format's special tokens). The prompt and the
  line-aligned output are spark_nb.train.format's: `edit_format(tokenizer).prompt_ids(...)`, then an
  `EditDecoder` says which tokens the model generates and which input lines the driver feeds.
- ``"chat"``: any instruct checkpoint with a chat template. A system and a user message (earlier cells, the cell
  in a fenced block, the instruction), rendered by the tokenizer's template; the answer's first fenced block is
  the new cell.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["style", "edit_format", "chat_messages", "chat_prompt", "extract_code", "SYSTEM"]

EDIT_TOKEN = "<|edit|>"
SYSTEM = ("You edit Python code in a Jupyter notebook cell. Apply the requested change and nothing else, keep "
          "everything else exactly as it is, and reply with the whole new cell in one ```python fenced block.")

_FORMATS: dict[int, tuple] = {}  # id(tokenizer) -> (tokenizer, EditFormat): the tokenizer is kept alive with it


def style(tokenizer) -> str:
    """"edit" for the built-in format, "chat" for a tokenizer with a chat template; else ValueError."""
    if tokenizer.token_to_id(EDIT_TOKEN) is not None:
        return "edit"
    if getattr(tokenizer, "chat_template", None):
        return "chat"
    raise ValueError("this model has neither the built-in edit format's tokens nor a chat template, so spark-nb "
                     "cannot prompt it for an edit; use the built-in model or an instruct checkpoint")


def edit_format(tokenizer):
    """The (cached) `EditFormat` of a built-in-style tokenizer."""
    from ..train.format import EditFormat  # tokenizers and the standard library only, no torch

    key = id(tokenizer)
    if key not in _FORMATS or _FORMATS[key][0] is not tokenizer:
        _FORMATS[key] = (tokenizer, EditFormat(tokenizer))
    return _FORMATS[key][1]


def _fence(code: str) -> str:
    """A fence longer than any backtick run inside the code, so the block cannot end early."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def chat_messages(code: str, instruction: str, context: Sequence[str] = ()) -> list[dict]:
    parts = []
    if context:
        cells = "\n\n".join(f"{_fence(c)}python\n{c.rstrip()}\n{_fence(c)}" for c in context)
        parts.append(f"Earlier cells of the notebook, for reference (do not repeat them):\n\n{cells}")
    fence = _fence(code)
    parts.append(f"The cell:\n\n{fence}python\n{code.rstrip()}\n{fence}")
    parts.append(f"Instruction: {instruction}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def chat_prompt(tokenizer, code: str, instruction: str, context: Sequence[str] = ()) -> str:
    return tokenizer.apply_chat_template(chat_messages(code, instruction, context), add_generation_prompt=True)


_OPEN = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[^\n`]*\n", re.M)


def extract_code(text: str) -> str | None:
    """The body of the first complete fenced block in text (CommonMark fences: ``` or ~~~, 3 or more, closed by
    at least as many of the same), or None when there is none."""
    for m in _OPEN.finditer(text):
        fence = m.group("fence")
        close = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        end = close.search(text, m.end())
        if end is None:
            return None  # an unclosed block: the output was cut off
        return text[m.end() : end.start()]
    return None


def block_closed(text: str) -> bool:
    """True once text holds a complete fenced block (a chat driver can stop generating there)."""
    return extract_code(text) is not None


def open_block(text: str, code: str) -> str:
    """While an answer streams: the code written so far inside its first fence (the original until one opens)."""
    m = _OPEN.search(text)
    return text[m.end():] if m else code
