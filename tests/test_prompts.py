"""The chat prompt (spark_nb.edits.prompt) as the tiny chat model's template renders it, and the chat driver's
answer handling: the worked example stays an earlier exchange, never the cell; the first complete fenced block of
the answer is the new cell; generation stops at its closing fence, with and without the prompt opening the fence.
"""
from __future__ import annotations

import functools

import pytest

import spark_nb
from spark_nb.edits import guard, prompt
from spark_nb.edits.prompt import answer_start, chat_messages, chat_prompt, extract_code, open_block
from spark_nb.engine import Engine
from spark_nb.model import Tokenizer
from test_edit_api import chat_folder, scripted  # noqa: F401  (a tiny qwen2 folder with a ChatML template)

CELL = "def add(a,b): return a+b\n\n\nprint(add(1, 2))\n"


def turns(rendered: str) -> list[tuple[str, str]]:
    """(role, content) of each ChatML turn of a rendered prompt; the open assistant turn last, with what it holds."""
    out = []
    for chunk in rendered.split("<|im_start|>")[1:]:
        role, _, content = chunk.partition("\n")
        out.append((role, content.removesuffix("<|im_end|>\n")))
    return out


@pytest.mark.parametrize("open_answer", [False, True])
def test_chat_prompt_renders_system_example_then_the_request(chat_folder, monkeypatch, open_answer):
    monkeypatch.setattr(prompt, "OPEN_ANSWER", open_answer)
    tok = Tokenizer.from_folder(chat_folder)
    rendered = chat_prompt(tok, CELL, "add a docstring", context=["import os\n"])
    got = turns(rendered)
    roles = [role for role, _ in got]
    example = ["user", "assistant"] if prompt.EXAMPLE is not None else []
    assert roles == ["system", *example, "user", "assistant"]
    assert got[0][1] == prompt.SYSTEM
    request = got[-2][1]  # the user's cell, its context and instruction: in the last user turn only
    assert f"```python\n{CELL.rstrip()}\n```" in request and request.endswith("Instruction: add a docstring")
    assert "import os" in request and all(CELL.rstrip() not in content for _, content in got[:-2])
    assert got[-1][1] == ("```python\n" if open_answer else "")  # the answer starts after the prompt
    assert rendered.endswith("<|im_start|>assistant\n" + answer_start(CELL))


@pytest.mark.parametrize("instruction, family", [("add a docstring", "add_docstrings"), ("add comments", "add_comments"),
                                                 ("add type hints", "add_type_hints"), ("use f-strings", "to_fstring"),
                                                 ("strip the comments", "remove_comments")])
def test_worked_example_is_a_complete_earlier_exchange_of_the_asked_family(instruction, family):
    if prompt.EXAMPLE is None:
        pytest.skip("no worked example in the chosen prompt")
    cell, ask, answer = prompt.FAMILY_EXAMPLES.get(family, prompt.EXAMPLE)
    msgs = chat_messages(CELL, instruction)
    assert msgs[1]["role"] == "user" and cell.rstrip() in msgs[1]["content"] and ask in msgs[1]["content"]
    assert msgs[2] == {"role": "assistant", "content": f"```python\n{answer}```"}
    assert extract_code(msgs[2]["content"]) == answer  # the example's answer is a complete block of its own
    assert guard.judge(cell, answer, family)[0]  # and a right one for the family asked
    assert CELL.rstrip() in msgs[-1]["content"] and cell.rstrip() not in msgs[-1]["content"]


def test_an_instruction_of_no_family_gets_the_default_example():
    assert prompt.worked_example("make it faster") == prompt.EXAMPLE
    assert prompt.worked_example("add comments and type hints") == prompt.EXAMPLE  # two families: no one example


def test_a_cell_with_backticks_gets_a_longer_fence_in_the_prompt_and_the_answer(monkeypatch):
    monkeypatch.setattr(prompt, "OPEN_ANSWER", True)
    code = "s = '```'\n"
    assert "````python\ns = '```'\n````" in chat_messages(code, "fix")[-1]["content"]
    assert answer_start(code) == "````python\n"
    assert extract_code(answer_start(code) + "s = '```'  # three\n````\n```python\nx = 2\n```\n") \
        == "s = '```'  # three\n"


def test_a_shorter_closing_fence_ends_the_block_only_as_the_last_line_of_a_finished_answer():
    cell = 'def f():\n    """\n    ```\n    f()\n    ```\n    """\n'
    answer = answer_start(cell) + cell + "```\n"
    assert answer.startswith("````python\n")
    assert extract_code(answer) is None  # CommonMark: three backticks do not close four
    assert extract_code(answer, ended=True) == cell  # ... but the model has stopped, and that was its last line
    assert extract_code(answer + "\n  \n", ended=True) == cell
    assert extract_code(answer + "I added nothing.\n", ended=True) is None  # prose after it: not the answer's end
    top = 's = """\n```\nx\n"""\n'  # a column-0 fence inside a string, mid-answer: never taken as the end
    assert extract_code(answer_start(top) + top, ended=True) is None


def test_extraction_takes_the_first_complete_block_after_the_opened_fence():
    assert extract_code("```python\nx = 1\n```\nThen:\n```python\ny = 2\n```\n") == "x = 1\n"
    assert extract_code("```python\nx = 1\n") is None  # cut off before the closing fence
    assert open_block("```python\nx = 1\ny", "old\n") == "x = 1\ny"
    assert open_block("Sure", "old\n") == "old\n"


@pytest.mark.parametrize("open_answer", [False, True])
def test_chat_driver_stops_at_the_closing_fence_and_takes_the_users_cell(chat_folder, monkeypatch, open_answer):
    monkeypatch.setattr(prompt, "OPEN_ANSWER", open_answer)
    engine = Engine.load(chat_folder, dtype="fp32", context=1024)
    target = 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n\n\nprint(add(1, 2))\n'
    body = f"{target}```\nI added a docstring.\n```python\nprint('never')\n```\n"
    prompts = scripted(engine, body if open_answer else "```python\n" + body)
    edit = functools.partial(spark_nb.edit, speculative=False, exact=False)
    r = edit(CELL, "add a docstring", model=engine, family="add_docstrings")
    carried = 'def add(a,b):\n    """Add two numbers."""\n    return a+b\n\n\nprint(add(1, 2))\n'  # onto the user's layout
    assert r.ok and r.code == carried and r.proposed == carried and r.text.startswith("```python\n")
    assert target in r.text
    assert "I added" not in r.text and "never" not in r.text  # generation stopped once the block closed
    assert prompts[0].endswith("<|im_start|>assistant\n" + answer_start(CELL))

    prompts = scripted(engine, "" if open_answer else "I cannot.")  # nothing usable: the example is not taken
    r = edit(CELL, "add a docstring", model=engine)
    assert not r.ok and r.code == CELL and r.proposed is None and "no complete fenced code block" in r.error


def test_a_finished_answer_closed_with_three_backticks_after_a_longer_fence_is_taken(chat_folder, monkeypatch):
    monkeypatch.setattr(prompt, "OPEN_ANSWER", True)
    engine = Engine.load(chat_folder, dtype="fp32", context=1024)
    cell = 'def f(n):\n    """\n    ```\n    f(1)\n    ```\n    """\n    return n\n'
    target = cell.replace("def f(n):", "def f(n: int) -> int:")
    scripted(engine, target + "```\n")  # then eos: the model ended its answer with a three-backtick fence
    r = spark_nb.edit(cell, "add type hints", model=engine, speculative=False, exact=False, family="add_type_hints")
    assert r.ok and r.code == target
    scripted(engine, target + "```\nI added type hints.\n")  # prose after it: the block never closed
    r = spark_nb.edit(cell, "add type hints", model=engine, speculative=False, exact=False)
    assert not r.ok and r.code == cell and "no complete fenced code block" in r.error
