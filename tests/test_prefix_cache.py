"""The KV cache outlives a request: a prompt that starts with tokens the cache already holds runs only from the
first token that differs, and the answer is the one an empty cache gives.

The reference is independent of the reuse: greedy decoding by full causal forwards (`Engine.logits` over the whole
sequence at every step, which never reads what an earlier request left), and the shared prefix's length counted
here from the token lists.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import spark_nb
from spark_nb.edits import prompt
from spark_nb.engine import Engine
from test_edit_api import chat_folder, edit_folder  # noqa: F401  (random-weight models: edit tokenizer, chat)


def greedy_by_full_forwards(engine, ids, n):
    ids = list(ids)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(engine.logits(ids + out)[-1])))
    return out


def shared(a, b):
    return len(os.path.commonprefix([list(a), list(b)]))


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_a_prompt_reuses_what_the_cache_holds_and_answers_the_same(edit_folder, dtype):  # noqa: F811
    engine = Engine.load(edit_folder, dtype=dtype, context=512)
    rng = np.random.default_rng(7)
    base = rng.integers(3, 512, 90).tolist()
    prompts = [base, base + rng.integers(3, 512, 20).tolist(),  # longer: all of the first reused
               base[:40] + rng.integers(3, 512, 30).tolist(),  # differs at 40
               base[:40] + rng.integers(3, 512, 30).tolist(),
               base,  # shorter than what is held: all but its last token reused
               rng.integers(3, 512, 50).tolist()]  # nothing in common
    expected = [greedy_by_full_forwards(engine, p, 12) for p in prompts]
    held: list[int] = []  # what the cache holds after each request: its prompt and the tokens fed back
    for p, want in zip(prompts, expected):
        for speculative in (False, True):
            done = list(engine.stream(p, max_new_tokens=12, ignore_eos=True, speculative=speculative))[-1]
            assert list(done.token_ids) == want
            assert done.stats.reused == min(shared(held, p), len(p) - 1)
            held = p + want[:-1]  # the last token chosen is never fed


def test_a_session_reuses_the_prompt_and_later_requests_see_its_writes(edit_folder):  # noqa: F811
    engine = Engine.load(edit_folder, dtype="int8", context=512)
    rng = np.random.default_rng(3)
    p = rng.integers(3, 512, 60).tolist()
    reference = engine.logits(p)[-1].copy()
    list(engine.stream(p[:30], max_new_tokens=1))  # the cache holds p's first 30 tokens, and nothing after
    session = engine.session()
    logits = session.feed(p)
    assert session.reused == 30 and np.array_equal(logits, reference)
    # a draft verified and then rewound: the cache still holds the draft's tokens at their positions
    draft = rng.integers(3, 512, 8).tolist()
    session.verify(draft)
    session.rewind(len(p) + 3)
    later = p + draft[:5] + rng.integers(3, 512, 5).tolist()
    done = list(engine.stream(later, max_new_tokens=6, ignore_eos=True))[-1]
    assert done.stats.reused == len(p) + 5
    assert list(done.token_ids) == greedy_by_full_forwards(engine, later, 6)


def test_a_write_past_the_held_tokens_holds_nothing_after_it(edit_folder):  # noqa: F811
    """A decode step at a scratch position (the thread probe at load) must not make the positions before it look
    held: here they still hold the tokens of an older prompt, whose keys and values saw a different beginning."""
    engine = Engine.load(edit_folder, dtype="fp32", context=512)
    p = list(range(3, 43))
    other = list(range(300, 305))
    list(engine.stream(p, max_new_tokens=1))
    list(engine.stream(other, max_new_tokens=1))  # positions 0..4 rewritten; 5..39 keep p's stale tokens
    engine._decode_step(5, 100)  # beyond the 5 tokens held
    later = other + p[5:]
    done = list(engine.stream(later, max_new_tokens=4, ignore_eos=True))[-1]
    assert done.stats.reused == 5 and list(done.token_ids) == greedy_by_full_forwards(engine, later, 4)


def test_chat_edits_after_other_edits_are_what_a_fresh_engine_gives(chat_folder, monkeypatch):  # noqa: F811
    """The chat prompt's system message is the same every time: the second edit reuses it, the answer is the same."""
    monkeypatch.setattr(prompt, "EXAMPLE", None)  # the worked example's tokens would crowd the tiny 512 context
    cells = ["def f(x):\n    return x * 2\n", "total = 0\nfor v in range(10):\n    total += v\nprint(total)\n"]
    asks = ["add a docstring", "rename total to s", "add a docstring"]
    warm = Engine.load(chat_folder, dtype="fp32", context=512)
    answers = [spark_nb.edit(c, a, model=warm, max_new_tokens=24, exact=False) for c in cells for a in asks]
    assert all(r.stats.reused > 0 for r in answers[1:])
    for (c, a), r in zip([(c, a) for c in cells for a in asks], answers):
        fresh = Engine.load(chat_folder, dtype="fp32", context=512)
        again = spark_nb.edit(c, a, model=fresh, max_new_tokens=24, exact=False)
        assert fresh is not warm and again.stats.reused == 0
        assert (again.text, again.proposed) == (r.text, r.proposed)


def test_the_view_says_when_the_prompt_came_from_the_cache(edit_folder):  # noqa: F811
    from spark_nb.notebook.view import stats_line

    engine = Engine.load(edit_folder, dtype="fp32", context=512)
    p = list(range(3, 60))
    first = list(engine.stream(p, max_new_tokens=2))[-1].stats
    second = list(engine.stream(p[:50] + [7, 8], max_new_tokens=2))[-1].stats
    assert first.reused == 0 and "held from the last request" not in stats_line(first)
    assert "(50 of 52 prompt tokens held from the last request)" in stats_line(second)
