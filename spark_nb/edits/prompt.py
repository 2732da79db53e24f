"""Prompts per model family, and getting the code back out of the output.

Two styles:

- ``"edit"``: the built-in model (its tokenizer has the edit format's special tokens). The prompt and the
  line-aligned output are spark_nb.train.format's: `edit_format(tokenizer).prompt_ids(...)`, then an
  `EditDecoder` says which tokens the model generates and which input lines the driver feeds.
- ``"chat"``: any instruct checkpoint with a chat template. A system message, one worked example (a user message
  and the assistant's answer; the example of the family the instruction asks for, when there is one), then the
  user message (earlier cells, the cell in a fenced block, the instruction), rendered by the tokenizer's template;
  the prompt ends with the answer's opening fence (`answer_start`), and the answer's first complete fenced block is
  the new cell. Chosen by measurement on Qwen2.5-Coder-0.5B-Instruct
  (bench/prompts.py, README "Use a better model").
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from .recognise import recognise

__all__ = ["style", "edit_format", "chat_messages", "chat_prompt", "answer_start", "extract_code", "SYSTEM",
           "EXAMPLE", "FAMILY_EXAMPLES", "worked_example"]

EDIT_TOKEN = "<|edit|>"
# The chat prompt, chosen by measurement on real models (bench/prompts.py; README "Use a better model"). What it is
# for: Qwen2.5-Coder 0.5B dropped a cell's trailing calls and prints when it added docstrings (the guard then
# refuses the edit); the example shows them kept, and the open fence leaves no room for prose first.
SYSTEM = ("You edit one cell of a Jupyter notebook. Make the change the instruction asks for, and copy every other "
          "line of the cell into your answer unchanged, including the code after the functions (calls, prints, "
          "plots): your answer is the whole new cell. Reply with it in one ```python fenced block.")
# one worked example, an earlier exchange of the conversation: (cell, instruction, answer), or None
EXAMPLE: tuple[str, str, str] | None = (
    "def area(w, h):\n    return w * h\n\n\nprint(area(3, 4))\n",
    "add a docstring",
    'def area(w, h):\n    """The area of a w by h rectangle."""\n    return w * h\n\n\nprint(area(3, 4))\n')
# A worked example for the family an instruction asks for (`recognise`), in place of EXAMPLE: one small function
# each time, the answer making that family's change and keeping the call after the function.
_MEAN = 'def mean(xs):\n    total = sum(xs)\n    return total / len(xs)\n\n\n'
_CALL = 'print("mean:", mean([1, 2, 3]))\n'
FAMILY_EXAMPLES: dict[str, tuple[str, str, str]] = {
    "add_comments": (_MEAN + _CALL, "add comments",
                     _MEAN.replace("    total", "    # add the values up, then divide by how many there are\n    total")
                     + "# the mean of a small list\n" + _CALL),
    "add_type_hints": (_MEAN + _CALL, "add type hints",
                       _MEAN.replace("def mean(xs):", "def mean(xs: list[float]) -> float:") + _CALL),
    "to_fstring": (_MEAN + 'print("mean: %s" % mean([1, 2, 3]))\n', "use f-strings",
                   _MEAN + 'print(f"mean: {mean([1, 2, 3])}")\n'),
    "remove_comments": (_MEAN.replace("    total", "    # the sum first\n    total").replace(
                            "len(xs)\n", "len(xs)  # over the count\n") + "# a small list\n" + _CALL,
                        "remove the comments", _MEAN + _CALL),
}
OPEN_ANSWER = True  # end the prompt with the answer's opening fence (in-process engines; a server takes messages)

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


def _request(code: str, instruction: str, context: Sequence[str] = ()) -> str:
    """One user message: earlier cells (if any), the cell in a fence, the instruction."""
    parts = []
    if context:
        cells = "\n\n".join(f"{_fence(c)}python\n{c.rstrip()}\n{_fence(c)}" for c in context)
        parts.append(f"Earlier cells of the notebook, for reference (do not repeat them):\n\n{cells}")
    fence = _fence(code)
    parts.append(f"The cell:\n\n{fence}python\n{code.rstrip()}\n{fence}")
    parts.append(f"Instruction: {instruction}")
    return "\n\n".join(parts)


def worked_example(instruction: str) -> tuple[str, str, str] | None:
    """The example for the family the instruction asks for, else EXAMPLE; None when EXAMPLE is None (no example)."""
    if EXAMPLE is None:
        return None
    return FAMILY_EXAMPLES.get(recognise(instruction), EXAMPLE)


def chat_messages(code: str, instruction: str, context: Sequence[str] = ()) -> list[dict]:
    """System prompt, the worked example as an earlier exchange (`worked_example`), then the request."""
    messages = [{"role": "system", "content": SYSTEM}]
    example = worked_example(instruction)
    if example is not None:
        cell, ask, answer = example
        messages += [{"role": "user", "content": _request(cell, ask)},
                     {"role": "assistant", "content": f"{_fence(answer)}python\n{answer}{_fence(answer)}"}]
    return messages + [{"role": "user", "content": _request(code, instruction, context)}]


def answer_start(code: str) -> str:
    """What chat_prompt writes at the start of the assistant's answer: the answer text begins with it."""
    return f"{_fence(code)}python\n" if OPEN_ANSWER else ""


def chat_prompt(tokenizer, code: str, instruction: str, context: Sequence[str] = ()) -> str:
    """The rendered prompt, ending where the model's answer begins (after `answer_start(code)`)."""
    return (tokenizer.apply_chat_template(chat_messages(code, instruction, context), add_generation_prompt=True)
            + answer_start(code))


_OPEN = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})[^\n`]*\n", re.M)


def extract_code(text: str, ended: bool = False) -> str | None:
    """The body of the first complete fenced block in text (CommonMark fences: ``` or ~~~, 3 or more, closed by
    at least as many of the same), or None when there is none. `ended`: the model stopped by itself (not cut
    off), so a shorter fence as its answer's last line closes the block too: a cell holding ``` gets a longer
    fence in the prompt, and small models close it with three (Qwen2.5-Coder-1.5B on a docstring's example)."""
    for m in _OPEN.finditer(text):
        fence = m.group("fence")
        close = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M)
        end = close.search(text, m.end())
        if end is None and ended:
            last = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{3,}}\s*\Z", re.M)
            end = last.search(text, m.end())
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
