"""Speculative edits: the draft comes from the cell itself, one forward verifies it, and the output is token for
token what plain greedy decoding gives.

References are independent of the speculative path: plain decoding (`speculative=False`, one decode step per
generated token) for the outputs, and a full causal forward (`Engine.logits`) for what `Session.verify` returns.
"""
from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

import spark_nb
from spark_nb.edits import BUILTIN, prompt
from spark_nb.edits.prompt import edit_format
from spark_nb.engine import Engine
from spark_nb.model import Tokenizer
from test_edit_api import chat_folder, edit_folder  # noqa: F401  (random-weight models: edit tokenizer, chat)

INSTRUCTIONS = ["add a docstring", "add type hints", "use f-strings", "rename the variable result to out",
                "add comments", "remove the debug prints", "use a list comprehension", "fix the typo"]


def stdlib_cells(n: int) -> list[str]:
    """Top-level functions of a few standard-library modules, as notebook cells."""
    import calendar
    import colorsys
    import fnmatch
    import textwrap

    cells = []
    for module in (textwrap, fnmatch, colorsys, calendar):
        src = inspect.getsource(module)
        for node in ast.parse(src).body:
            if isinstance(node, ast.FunctionDef) and 3 <= node.end_lineno - node.lineno <= 30:
                cells.append(ast.get_source_segment(src, node) + "\n")
    return cells[:n]


def test_verify_returns_every_positions_logits(edit_folder):  # noqa: F811
    engine = Engine.load(edit_folder, dtype="fp32", context=512)
    ids = list(range(20, 90))
    full = engine.logits(ids)
    s = engine.session()
    s.feed(ids[:30])
    rows = s.verify(ids[30:50])
    np.testing.assert_allclose(rows, full[30:50], rtol=1e-4, atol=1e-4)
    for at in ([19], [4, 5, 6], [0, 3, 4, 19]):  # only some rows: a run of them, or scattered
        s.rewind(30)
        np.testing.assert_array_equal(s.verify(ids[30:50], at=at), rows[at])
    s.rewind(40)  # keep 40 tokens, drop 10: what follows must see exactly ids[:40]
    np.testing.assert_allclose(s.feed(ids[40:70]), full[69], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        s.rewind(0)


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_verify_is_bit_identical_to_decoding_token_by_token(edit_folder, dtype):  # noqa: F811
    """What makes speculative output identical: the kernels compute each token the same way whether it comes
    alone (decode) or with others (a draft, in blocks of four and a remainder)."""
    engine = Engine.load(edit_folder, dtype=dtype, context=512)
    ids = list(range(20, 80))
    s = engine.session()
    s.feed(ids[:30])
    rows = s.verify(ids[30:41])
    s.rewind(30)
    np.testing.assert_array_equal(rows, np.stack([s.feed([token]) for token in ids[30:41]]))


def test_draft_copies_the_cell(edit_folder):  # noqa: F811
    """For an unchanged cell the draft is exactly the identity edit: <|line|> <|keep|> per line, and inside a
    replacement the replaced line's own tokens, then <|line|>."""
    from spark_nb.edits.edit import _draft

    fmt = edit_format(Tokenizer.from_folder(edit_folder))
    code = "def f(x):\n    return x + 1\n"
    dec = fmt.decoder(code)
    draft = [t for t, _ in _draft(dec, 10)]
    assert draft == [fmt.line, fmt.keep, fmt.line, fmt.keep, fmt.line]
    dec.push(fmt.line)
    dec.push(fmt.replace)
    dec.push(fmt.text_ids("def f(")[0])
    line = fmt.text_ids("def f(x):\n")
    guess = [t for t, _ in _draft(dec, 20)]
    assert guess[: len(line) - 1] == line[1:] and guess[len(line) - 1] == fmt.line


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_random_model_same_output_either_way(edit_folder, dtype):  # noqa: F811
    """A random model rejects most drafts: every rewind path runs, and the output is still the same."""
    engine = Engine.load(edit_folder, dtype=dtype, context=512)
    for i, cell in enumerate(stdlib_cells(6)):
        instruction = INSTRUCTIONS[i % len(INSTRUCTIONS)]
        plain = spark_nb.edit(cell, instruction, model=engine, speculative=False, max_new_tokens=120, exact=False)
        fast = spark_nb.edit(cell, instruction, model=engine, speculative=True, max_new_tokens=120, exact=False)
        assert fast.text == plain.text and fast.proposed == plain.proposed and fast.error == plain.error
        assert fast.stats.tokens == plain.stats.tokens and plain.stats.drafted == 0


@pytest.mark.skipif(not (BUILTIN / "config.json").exists(), reason="the built-in model is not installed")
def test_builtin_model_same_output_and_drafts_accepted():
    """On the built-in model most of an edit is copying: drafts are accepted, and the output never changes."""
    engine = spark_nb.load()
    drafted = accepted = 0
    cells = stdlib_cells(24)
    for i, cell in enumerate(cells):
        instruction = INSTRUCTIONS[i % len(INSTRUCTIONS)]
        plain = spark_nb.edit(cell, instruction, model=engine, speculative=False, exact=False)
        fast = spark_nb.edit(cell, instruction, model=engine, exact=False)  # speculative is the default
        assert fast.text == plain.text and fast.proposed == plain.proposed, (instruction, cell)
        drafted, accepted = drafted + fast.stats.drafted, accepted + fast.stats.accepted
    assert accepted > 0.5 * drafted > 0


def test_bench_edits_compares_both_ways(edit_folder, tmp_path, capsys):  # noqa: F811
    import json

    from spark_nb import cli
    from spark_nb.train.tasks import write_jsonl
    from test_edit_api import family_tasks

    write_jsonl(family_tasks(per_family=1), tmp_path / "test.jsonl")
    assert cli.main(["bench", "--edits", "--model", str(edit_folder), "--data", str(tmp_path), "--limit", "1",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tasks"] >= 12 and result["identical"] == result["tasks"]
    assert result["speedup"]["p10"] <= result["speedup"]["median"] <= result["speedup"]["p90"]
    assert all(r["out_tokens"] >= r["generated"] > 0 for r in result["rows"])
    for r in result["rows"]:  # the ceiling: the plain edit's time over its own prompt forward and first token
        assert r["ceiling"] == pytest.approx(r["plain_s"] / r["plain_ttft_s"]) and r["ceiling"] > 1


# -- prompt lookup in Engine.stream (any model, chat edits included) ------------------------------------------------


def _lookup_by_scan(tokens, k, shortest=2):
    """What prompt lookup must draft, by brute force: the longest suffix of 4 down to `shortest` tokens that
    occurred before, and the k tokens after its latest earlier occurrence."""
    for n in range(4, shortest - 1, -1):
        for end in range(len(tokens) - 1, n - 1, -1):  # `end`: where the token after an occurrence is
            if len(tokens) >= n and tokens[end - n:end] == tokens[-n:]:
                return tokens[end:end + k]
    return []


@pytest.mark.parametrize("free_rows, shortest", [(1, 2), (3, 2), (4, 1), (16, 1)])
def test_prompt_lookup_drafts_what_a_scan_finds(free_rows, shortest):
    """Down to a one-token clue only when a verification's rows are about free (the engine's measure)."""
    from spark_nb.engine.speculation import PromptLookup

    rng = np.random.default_rng(0)
    for trial in range(40):
        tokens = rng.integers(0, 3 + trial % 7, size=60).tolist()  # small alphabets: many repeats
        drafter = PromptLookup(tokens[:10], free_rows)
        for i in range(10, len(tokens)):
            drafter.length.k = 1 + (i % 9)
            assert drafter.draft() == _lookup_by_scan(tokens[:i], drafter.length.k, shortest), (trial, i)
            assert drafter.draft(limit=2) == _lookup_by_scan(tokens[:i], min(2, drafter.length.k), shortest)
            drafter.extend([tokens[i]])


@pytest.mark.parametrize("free_rows", [1, 2, 8, 100])
def test_draft_length_never_drafts_fewer_than_the_free_rows(free_rows):
    from spark_nb.engine.speculation import DraftLength

    length = DraftLength(free_rows)
    least = max(2, free_rows)
    assert length.k >= least
    for drafted, accepted in [(length.k, length.k), (40, 3), (9, 0), (5, 5), (64, 64), (64, 64), (7, 6)]:
        before = length.k
        length.judge(drafted, accepted)
        assert length.k >= least
        if accepted == drafted:  # a whole draft accepted: longer next time, up to 64 (or the free rows)
            assert length.k == min(2 * before, max(64, least))
        else:  # a miss: just past what was accepted
            assert length.k == max(least, accepted + 1)


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_stream_same_tokens_with_prompt_lookup(edit_folder, dtype):  # noqa: F811
    """A random model rejects most drafts and accepts a few: every path runs; the tokens never change."""
    engine = Engine.load(edit_folder, dtype=dtype, context=512)
    drafted = 0
    for cell in stdlib_cells(5):
        ids = engine.tokenizer.encode(cell)[:80]
        prompt = ids + ids[:12]  # the start again: lookups find what followed it
        for options in (dict(max_new_tokens=60), dict(max_new_tokens=7), dict(max_new_tokens=60, stop="\n\n")):
            plain = list(engine.stream(prompt, **options))[-1]
            fast = list(engine.stream(prompt, speculative=True, **options))[-1]
            assert fast.token_ids == plain.token_ids and fast.text == plain.text and fast.reason == plain.reason
            assert plain.stats.drafted == 0 and fast.stats.accepted <= fast.stats.drafted
            drafted += fast.stats.drafted
    assert drafted > 0


@pytest.mark.skipif(not (BUILTIN / "config.json").exists(), reason="the built-in model is not installed")
def test_stream_prompt_lookup_accepts_a_copy():
    engine = spark_nb.load()
    source = inspect.getsource(inspect.cleandoc)
    prompt = source + "\n\n" + source[:60]  # the model continues by copying what it has seen
    plain = list(engine.stream(prompt, max_new_tokens=150))[-1]
    fast = list(engine.stream(prompt, max_new_tokens=150, speculative=True))[-1]
    assert fast.token_ids == plain.token_ids
    assert fast.stats.accepted > 0.5 * fast.stats.drafted > 0


def test_chat_edits_same_answer_with_prompt_lookup(chat_folder, monkeypatch):
    engine = Engine.load(chat_folder, dtype="fp32", context=512)
    monkeypatch.setattr(prompt, "EXAMPLE", None)  # the worked example's tokens would crowd the tiny 512 context
    for i, cell in enumerate(c for c in stdlib_cells(12) if len(c) < 500):
        options = dict(model=engine, max_new_tokens=40, exact=False)
        plain = spark_nb.edit(cell, INSTRUCTIONS[i % len(INSTRUCTIONS)], speculative=False, **options)
        fast = spark_nb.edit(cell, INSTRUCTIONS[i % len(INSTRUCTIONS)], **options)  # speculative is the default
        assert (fast.text, fast.proposed, fast.error) == (plain.text, plain.proposed, plain.error)
        assert plain.stats.drafted == 0


def test_bench_edits_takes_a_chat_model_on_the_notebook_cells(chat_folder, monkeypatch, capsys):  # noqa: F811
    """A model folder without a shipped test sample (any chat model, a GGUF file) is benchmarked on the
    evaluation's notebook cells; each task's two edits start from the same cache, so the speculative one cannot
    reuse the plain one's prompt."""
    import json

    from spark_nb import cli
    from spark_nb.evaluate.sets import notebook_tasks, sample

    monkeypatch.setattr(prompt, "EXAMPLE", None)  # the worked example's tokens would crowd the tiny 512 context
    assert cli.main(["bench", "--edits", "--model", str(chat_folder), "--limit", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    tasks = sample(notebook_tasks()[0], 1)
    assert "notebook cells" in result["source"] and [r["family"] for r in result["rows"]] == [t.family for t in tasks]
    assert result["identical"] == result["tasks"] == len(tasks)
    tokenizer = Engine.load(chat_folder, dtype="fp32", context=512).tokenizer
    for r, task in zip(result["rows"], tasks):  # the system message held, the cell not (but a common first token)
        assert 0 < r["reused"] <= r["prompt_tokens"] - len(tokenizer.encode(task.before.strip())) + 2
