"""The streaming contract of Engine.stream: events, stopping, sampling, cancellation, errors before compute.

All on the tiny random Llama of tests/conftest.py, int8 on wse3 (the defaults of spark_nb.load).
"""
from __future__ import annotations

import functools
import threading

import numpy as np
import pytest

import spark_nb
from spark_nb.engine import Done, Engine, PromptTooLong, Token
from spark_nb.engine import engine as engine_module
from spark_nb.model.synthetic import write_random_model
from spark_nb.wafer.placement import PlacementError

PROMPT = "def add(a, b):\n    return"
STATS = ("prompt_tokens", "tokens", "ttft_s", "tok_per_s", "total_s", "wafer_ttft_s", "wafer_tok_per_s",
         "wafer_total_s", "wafer", "dtype")


@pytest.fixture
def engine(llama):
    return spark_nb.load(llama[0])


def run(stream) -> tuple[list[Token], Done]:
    events = list(stream)
    assert all(isinstance(e, Token) for e in events[:-1]) and isinstance(events[-1], Done)
    return events[:-1], events[-1]


@functools.lru_cache
def greedy_ids(folder, prompt=PROMPT, n=16) -> tuple[int, ...]:
    """What a freshly loaded engine generates."""
    return run(spark_nb.load(folder).stream(prompt, max_new_tokens=n, ignore_eos=True))[1].token_ids


def forbid_compute(monkeypatch):
    def fail(*args):
        raise AssertionError("the forward ran")  # any compute goes through Engine._forward

    monkeypatch.setattr(Engine, "_forward", fail)


# -- events ------------------------------------------------------------------------------------------------------


def test_engine_attributes(engine, llama):
    assert engine.path == llama[0]
    assert engine.config.family == "llama" and engine.config.n_kv_heads == 2
    assert engine.tokenizer.decode(engine.tokenizer.encode(PROMPT)) == PROMPT
    assert engine.placement.pes_used > 0 and engine.dtype == "int8" and engine.spec.name == "wse3"


def test_events_contract(engine):
    n = 12
    tokens, done = run(engine.stream(PROMPT, max_new_tokens=n, ignore_eos=True))
    for t in tokens:
        assert isinstance(t.text, str) and isinstance(t.token_ids, tuple)
        assert all(isinstance(i, int) for i in t.token_ids)
        assert isinstance(t.host_s, float) and isinstance(t.wafer_s, float)
    assert [t.token_ids for t in tokens if t.token_ids] == [(i,) for i in done.token_ids]  # one id per step
    host, wafer = [t.host_s for t in tokens], [t.wafer_s for t in tokens]
    assert host == sorted(host) and wafer == sorted(wafer) and host[0] > 0 and wafer[0] > 0
    assert "".join(t.text for t in tokens) == done.text == engine.tokenizer.decode(list(done.token_ids))
    assert len(done.token_ids) == n and done.reason == "length"

    s = done.stats
    assert set(STATS) <= set(s.as_dict())
    assert s["ttft_s"] == s.ttft_s == tokens[0].host_s
    assert s.prompt_tokens == len(engine.encode(PROMPT)) and s.tokens == n
    for name in ("ttft_s", "tok_per_s", "total_s", "wafer_ttft_s", "wafer_tok_per_s", "wafer_total_s"):
        assert s[name] > 0, name
    assert s.total_s >= host[-1] >= s.ttft_s and s.wafer_total_s == wafer[-1] > s.wafer_ttft_s == wafer[0]
    assert (s.wafer, s.dtype) == ("wse3", "int8")
    # rates are tokens after the first over the time after the first token, on each clock (which clock is faster
    # is a property of this machine, not a contract)
    assert s.tok_per_s == pytest.approx((n - 1) / (host[-1] - s.ttft_s))
    assert s.wafer_tok_per_s == pytest.approx((n - 1) / (s.wafer_total_s - s.wafer_ttft_s))


def test_prompt_as_text_or_ids(engine):
    by_text = run(engine.stream(PROMPT, max_new_tokens=6, ignore_eos=True))[1]
    by_ids = run(engine.stream(engine.encode(PROMPT), max_new_tokens=6, ignore_eos=True))[1]
    assert by_text.token_ids == by_ids.token_ids and by_text.text == by_ids.text


def test_ids_as_any_int_array(engine):
    """A strided or a narrow array of ids gives the logits of the same ids as a list (the forward's helpers read
    ids by address, so the engine hands them a contiguous int64 copy)."""
    ids = engine.encode(PROMPT)
    spaced = np.zeros(2 * len(ids), np.int64)
    spaced[::2] = ids
    np.testing.assert_array_equal(engine.logits(spaced[::2]), engine.logits(ids))
    np.testing.assert_array_equal(engine.logits(np.array(ids, np.int32)), engine.logits(ids))


@pytest.mark.parametrize("n", [1, 5])
def test_max_new_tokens(engine, n):
    tokens, done = run(engine.stream(PROMPT, max_new_tokens=n, ignore_eos=True))
    assert len(done.token_ids) == n == done.stats.tokens and done.reason == "length"
    assert done.stats.tok_per_s == (0.0 if n == 1 else done.stats.tok_per_s) >= 0


def test_end_of_sequence(engine, monkeypatch):
    eos = engine.tokenizer.eos_token_ids[0]
    steps = iter([5, 6, eos, 7])
    monkeypatch.setattr(engine_module, "sample", lambda *args: next(steps))
    tokens, done = run(engine.stream(PROMPT, max_new_tokens=10))
    assert done.reason == "eos" and done.token_ids == (5, 6)
    assert "".join(t.text for t in tokens) == done.text == engine.tokenizer.decode([5, 6])


def test_end_of_context(llama):
    engine = Engine.load(llama[0], context=32)
    ids = list(range(10, 40))  # 30 of 32 positions: 2 can be fed back, a 3rd token needs no position
    done = run(engine.stream(ids, max_new_tokens=10, ignore_eos=True))[1]
    assert done.reason == "length" and len(done.token_ids) == 3
    done = run(engine.stream(list(range(10, 42)), max_new_tokens=10, ignore_eos=True))[1]  # exactly the context
    assert len(done.token_ids) == 1


# -- stop strings ------------------------------------------------------------------------------------------------


def test_stop_string_is_excluded_and_never_leaks(engine):
    """A stop string spanning a token boundary: the text ends just before it, and no delta ever showed part of it."""
    tokens, done = run(engine.stream(PROMPT, max_new_tokens=24, ignore_eos=True))
    pieces = [t.text for t in tokens]
    full = done.text
    assert len(full) >= 8, full
    j = next(j for j in range(2, len(pieces) - 1) if len(pieces[j]) and len(pieces[j + 1]))
    at = len("".join(pieces[: j + 1]))
    stop = full[at - 1 : at + 1]  # last char of piece j and the first of piece j + 1
    expected = full[: full.find(stop)]

    tokens, done = run(engine.stream(PROMPT, max_new_tokens=24, ignore_eos=True, stop=["\x00unseen", stop]))
    assert done.reason == "stop" and done.text == expected
    shown = ""
    for t in tokens:
        shown += t.text
        assert expected.startswith(shown), (shown, stop)  # nothing past the cut, at any point
    assert shown == expected


def test_possible_stop_prefix_is_held_then_flushed(engine):
    """Text that could begin a stop string is held back, and flushed when the stream ends without it."""
    full = run(engine.stream(PROMPT, max_new_tokens=10, ignore_eos=True))[1].text
    stop = full[-1] + "\x00"  # the generated text ends with the start of this stop string
    tokens, done = run(engine.stream(PROMPT, max_new_tokens=10, ignore_eos=True, stop=stop))
    assert done.reason == "length" and done.text == full
    assert "".join(t.text for t in tokens) == full
    assert tokens[-1].token_ids == () and tokens[-1].text.endswith(full[-1])  # the flush after the last step
    assert "".join(t.text for t in tokens[:-1]) == full[: len(full) - len(tokens[-1].text)]


# -- sampling ----------------------------------------------------------------------------------------------------


def test_greedy_is_deterministic(engine, llama):
    assert run(engine.stream(PROMPT, max_new_tokens=16, ignore_eos=True))[1].token_ids == greedy_ids(llama[0])


def test_seeded_sampling_is_reproducible(engine):
    def sampled(seed):
        return run(engine.stream(PROMPT, max_new_tokens=16, temperature=1.5, seed=seed, ignore_eos=True))[1].token_ids

    assert sampled(7) == sampled(7)
    assert sampled(7) != sampled(8)
    assert sampled(7) != run(engine.stream(PROMPT, max_new_tokens=16, ignore_eos=True))[1].token_ids


def test_tiny_top_p_is_greedy(engine, llama):
    nucleus = run(engine.stream(PROMPT, max_new_tokens=16, temperature=1.0, top_p=1e-6, seed=3, ignore_eos=True))
    assert nucleus[1].token_ids == greedy_ids(llama[0])


# -- cancellation ------------------------------------------------------------------------------------------------


def test_cancel_from_the_consumer(engine, llama):
    stream = engine.stream(PROMPT, max_new_tokens=50, ignore_eos=True)
    for count, event in enumerate(stream, 1):
        if count == 3:
            stream.cancel()
            break
    after = next(stream)
    assert isinstance(after, Done) and after.reason == "cancelled"
    assert len(after.token_ids) <= 4 and after.stats.tokens == len(after.token_ids)
    with pytest.raises(StopIteration):
        next(stream)
    assert run(engine.stream(PROMPT, max_new_tokens=16, ignore_eos=True))[1].token_ids == greedy_ids(llama[0])


def test_cancel_from_another_thread(engine):
    stream = engine.stream(PROMPT, max_new_tokens=50, ignore_eos=True)
    first = next(stream)
    timer = threading.Timer(0.01, stream.cancel)
    timer.start()
    timer.join()
    rest = list(stream)
    assert isinstance(first, Token) and isinstance(rest[-1], Done) and rest[-1].reason == "cancelled"
    assert len(rest[-1].token_ids) <= 2


def test_cancel_before_the_first_token(engine):
    stream = engine.stream(PROMPT, max_new_tokens=50, ignore_eos=True)
    stream.cancel()
    done = run(stream)[1]
    assert done.reason == "cancelled" and len(done.token_ids) <= 1


def test_keyboard_interrupt_during_compute(engine, llama, monkeypatch):
    """Ctrl-C inside a decode step propagates; the engine still gives a fresh engine's output afterwards."""
    calls = 0
    real_forward = Engine._forward

    def interrupted(self, *args):
        nonlocal calls
        calls += 1
        if calls == 4:  # the prefill, two decode steps, then the interrupt
            raise KeyboardInterrupt
        return real_forward(self, *args)

    monkeypatch.setattr(Engine, "_forward", interrupted)
    stream = engine.stream(PROMPT, max_new_tokens=50, ignore_eos=True)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for event in stream:
            seen.append(event)
    assert len(seen) == 3
    with pytest.raises(StopIteration):
        next(stream)
    monkeypatch.undo()
    assert not engine._lock.locked()
    assert run(engine.stream(PROMPT, max_new_tokens=16, ignore_eos=True))[1].token_ids == greedy_ids(llama[0])


def test_keyboard_interrupt_in_the_consumer(engine, llama):
    stream = engine.stream(PROMPT, max_new_tokens=50, ignore_eos=True)
    with pytest.raises(KeyboardInterrupt):
        for count, _ in enumerate(stream, 1):
            if count == 3:
                raise KeyboardInterrupt
    assert run(engine.stream(PROMPT, max_new_tokens=16, ignore_eos=True))[1].token_ids == greedy_ids(llama[0])
    done = next(stream)  # the abandoned stream was superseded: resuming it ends it
    assert isinstance(done, Done) and done.reason == "cancelled"


def test_new_stream_supersedes_an_unfinished_one(engine, llama):
    old = engine.stream(PROMPT, max_new_tokens=50, ignore_eos=True)
    next(old), next(old)
    other = "class Foo:\n"
    assert run(engine.stream(other, max_new_tokens=8, ignore_eos=True))[1].token_ids == greedy_ids(llama[0], other, 8)
    rest = list(old)
    assert len(rest) == 1 and rest[0].reason == "cancelled" and len(rest[0].token_ids) == 2


# -- errors before any compute -----------------------------------------------------------------------------------


def test_prompt_longer_than_the_context(llama, monkeypatch):
    engine = Engine.load(llama[0], context=32)
    forbid_compute(monkeypatch)
    ids = list(range(10, 43))  # 33 tokens
    with pytest.raises(PromptTooLong, match=r"33 tokens.*context holds 32"):
        engine.stream(ids)
    with pytest.raises(PromptTooLong, match=r"33 tokens.*32"):
        engine.logits(ids)
    long_text = "def f(x):\n    return x\n" * 20
    with pytest.raises(PromptTooLong, match=rf"{len(engine.encode(long_text))} tokens.*32"):
        engine.stream(long_text)
    assert issubclass(PromptTooLong, ValueError)


def test_load_takes_the_context_the_error_message_suggests(llama):
    """PromptTooLong tells the user to call spark_nb.load(..., context=N)."""
    assert spark_nb.load(llama[0], context=32).context == 32


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(max_new_tokens=0), "max_new_tokens"),
])
def test_bad_sampling_arguments(engine, monkeypatch, kwargs, message):
    forbid_compute(monkeypatch)
    with pytest.raises(ValueError, match=message):
        engine.stream(PROMPT, **kwargs)


@pytest.mark.parametrize("ids, message", [
    ([1, 2, 512], r"\[0, 512\)"),
    ([-1, 5], r"\[0, 512\)"),
    ([], "empty"),
])
def test_bad_token_ids(engine, monkeypatch, ids, message):
    forbid_compute(monkeypatch)
    with pytest.raises(ValueError, match=message):
        engine.stream(ids)
    with pytest.raises(ValueError, match=message):
        engine.logits(ids)


def test_bad_load_arguments(llama):
    with pytest.raises(ValueError, match=r"dtype.*'int8'.*'fp32'.*'fp16'"):
        spark_nb.load(llama[0], dtype="fp16")
    with pytest.raises(ValueError, match=r"wafer.*'wse9'.*mini"):
        spark_nb.load(llama[0], wafer="wse9")


def test_model_too_big_for_the_wafer(tmp_path):
    """llama-10m in fp32 (~40 MB) on the mini wafer (768 PEs x 36 KiB of weights, ~28 MB)."""
    folder = write_random_model(tmp_path / "big", "llama-10m")
    with pytest.raises(PlacementError) as caught:
        spark_nb.load(folder, wafer="mini", dtype="fp32")
    message = str(caught.value)
    assert "fp32 needs" in message and "PEs" in message  # what it needs
    assert "mini has 768 PEs" in message  # what the wafer has
    assert "int8" in message  # and what to change
    assert spark_nb.load(folder, wafer="mini", dtype="int8").placement.pes_used <= 768
