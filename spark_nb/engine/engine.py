"""Engine: tokenize -> prefill -> decode loop -> events, on the emulated wafer.

    engine = Engine.load("path/to/model", wafer="wse3", dtype="int8")
    for event in engine.stream("def add(a, b):", max_new_tokens=32):
        ...                                   # Token events, then one Done with the request's Stats
    session = engine.session()                # incremental: feed(ids) -> next-token logits, for drivers that
    logits = session.feed(prompt_ids)         # interleave generated and fed tokens (spark_nb.edits)

Every step runs the decoder's forward on the PE-tile layout (spark_nb.wafer.forward) and reports two clocks:
the host time measured here and the wafer time the cycle model projects for the same computation.

The KV cache outlives a request: a new prompt that starts with tokens the cache already holds (the chat prompt's
system message and worked example, the cell again after Redirect) runs only from the first token that differs.
A token's keys and values are the same numbers whichever forward call computed them, so the output is the same
as with an empty cache.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import numba
import numpy as np

from ..model import ModelConfig, Tokenizer, load_checkpoint
from ..model.stores import resolve
from ..wafer import forward as fw
from ..wafer import placement as layouts
from ..wafer.cycles import DESIGN, FeedCost, decode_cycles, first_token_cycles, remember_layout, wafer_layout
from ..wafer.packing import pack, pack_blocks
from ..wafer.placement import Placement
from ..wafer.spec import WaferSpec, get_spec
from . import tile_cache
from .events import Done, Stats, Token
from .sampling import sample, validate
from .speculation import PromptLookup

DTYPES = ("int8", "fp32", "auto")  # auto: a GGUF file's own block formats (int8 where a model has none)
DEFAULT_CONTEXT = 2048  # KV cache length when the model allows more; load(..., context=N) to change it
PREFILL_CHUNK = 256  # tokens per forward call during prefill; bounds the scratch buffers
# decode on every core only when a step takes less than this share of one core's time. The built-in model ties
# (two threads 1.03-1.04x one's step time, idle); the 1.5B's bandwidth-bound step on two threads took 0.73-0.85x,
# so 0.8 chose one thread about half the time, and decoded up to 1.3x slower for it
TWO_THREADS_WIN = 0.9
IDLE_LOAD = 0.5  # share of the cores busy under which the machine counts as idle: probes kept from a busier one
# re-run, and so do kept probes that chose one thread (Engine.__init__)
LOAD_WINDOW_S = 0.05  # how long _load_per_core watches the cores
FREE_ROWS_COST = 1.25  # a verification's rows are "free" while its forward costs at most this many decode steps


class PromptTooLong(ValueError):
    """The prompt does not fit the engine's context."""


class Stream:
    """The events of one request. Iterate it; `cancel()` (from any thread) ends it within one token."""

    def __init__(self, events: Iterator, cancelled: threading.Event):
        self._events = events
        self._cancelled = cancelled

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Token | Done:
        return next(self._events)

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self._events.close()


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system: glibc keeps what a load freed (a GGUF reader's ~700,000
    metadata views, the layers read one by one, the probes' buffers) in the process: 20 MB of the 0.5B GGUF's."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class Engine:
    def __init__(self, path: Path, config: ModelConfig, tokenizer: Tokenizer, decoder: fw.Decoder, spec: WaferSpec,
                 dtype: str, context: int, known: dict | None = None, kinds: dict | None = None):
        """known: what an earlier engine of this model found (tile_cache.recall): {"placement", "layout",
        "decode_threads", "free_rows"}, used instead of searching and measuring again. kinds: the GGUF block format
        of each matrix dtype "auto" keeps (blocks.gguf_kinds), placed at its real bytes a weight."""
        self.path, self.config, self.tokenizer, self.dtype, self.context = path, config, tokenizer, dtype, context
        self.spec, self.name = spec, path.name
        if known:
            self.placement: Placement = layouts.from_state(known["placement"], config, spec)
            layout = known["layout"]
            remember_layout(self.placement, self.placement if layout is None
                            else layouts.from_state(layout, config, spec))
        elif dtype == "auto":  # the file's matrices at their block formats' real bytes a weight, the rest int8
            self.placement = layouts.place(config, spec, "int8", context, kinds=kinds)
        else:
            self.placement = layouts.place(config, spec, dtype, context)  # raises if the model does not fit
        # int8 weights keep their KV cache in fp16: late in a long prompt a decode step reads as many bytes of cache
        # as of weights, and fp16's rounding is far below int8's; fp32 stays the exact reference all the way
        self.kv_dtype = "fp32" if dtype == "fp32" else "fp16"
        self._k_cache, self._v_cache = fw.kv_cache(config, context, self.kv_dtype)
        self.prefill_threads = numba.config.NUMBA_NUM_THREADS  # workers: this thread leads, helpers join it
        self._pass = fw.Forward(fw.Resident(
            decoder, self._k_cache, self._v_cache, fw.rotary(config, context),
            np.float32(config.rms_norm_eps), config.sliding_window or 0, config.head_dim,
            fw.scratch(config, min(PREFILL_CHUNK, context), context, self.prefill_threads)), config.vocab_size)
        self._lock = threading.Lock()  # one forward at a time: the KV cache and scratch are shared
        # the tokens whose keys and values the cache holds, at positions 0.._held_n: what a prompt can reuse
        self._held, self._held_n = np.zeros(context, np.int64), 0
        self._request = 0  # a new request supersedes an unfinished one (its stream ends as cancelled)
        # Projected decode step time is affine in the context (only attention grows with it; the cycle model's
        # ceilings make it exact to ~0.1%), and evaluating the model costs milliseconds: take two points.
        first, last = decode_cycles(self.placement, 1).seconds, decode_cycles(self.placement, context).seconds
        self._wafer_step_base, self._wafer_step_slope = first, (last - first) / max(context - 1, 1)
        self._wafer_feed = FeedCost(self.placement)  # tokens fed at once: one pipelined pass, fitted likewise
        self._wafer_ttft: dict[int, float] = {}  # prompt tokens -> projected TTFT, as asked
        self._token, self._first = np.zeros(1, np.int64), np.zeros(1, np.int64)  # decode input, its logits' row
        self._logits = np.zeros((1, config.vocab_size), np.float32)
        # the probes again when the kept ones ran on a machine that was not idle and this one is: a step on two
        # threads, and a verification's rows, lose to one thread and one row whenever another program holds a core
        # (a probe at load 0.9 per core kept one thread and one free row for the 0.5B, which takes two and eight idle)
        # and when one thread won on a machine with more: what a busy machine measures, however idle it looked
        # (the 1.5B kept one thread and decoded at 30 tok/s against 54 on two, measured at a lagging load average
        # of 0.33)
        busy = known and (known.get("probe_load", 0.0) >= IDLE_LOAD or known["decode_threads"] < self.prefill_threads)
        self._reprobed = bool(busy) and _load_per_core() < IDLE_LOAD
        if known and not self._reprobed:
            self.decode_threads, self._probe_load = known["decode_threads"], known.get("probe_load", 0.0)
            self.free_rows = known["free_rows"]
        else:
            self.decode_threads, self._probe_load = self._fastest_decode_threads(), _load_per_core()
            self.free_rows = self._free_draft_rows()

    def _found(self) -> dict:
        """What this engine searched and measured, for tile_cache.remember (JSON)."""
        layout = wafer_layout(self.placement, DESIGN)  # as decode_cycles asked for it: memoised
        return {"placement": layouts.to_state(self.placement), "decode_threads": self.decode_threads,
                "free_rows": self.free_rows, "probe_load": self._probe_load,
                "layout": None if layout is self.placement else layouts.to_state(layout)}

    @classmethod
    def load(cls, path, wafer: str | WaferSpec = "wse3", dtype: str = "int8", context: int | None = None) -> "Engine":
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        spec = get_spec(wafer)
        given, path = path, resolve(path)  # a name `spark-nb models` lists -> its file or folder
        if dtype == "auto" and path.is_dir():  # a model folder has no block formats to keep
            dtype = "int8"
        cached = tile_cache.load(path, spec, dtype) if path.exists() else None  # this model packed before
        kept = cached is not None
        if cached is not None:
            config, tokenizer, decoder, kinds = cached
        else:
            # a GGUF file or a Hugging Face folder, its weights read a layer at a time as they are packed
            checkpoint = load_checkpoint(path, dtype=dtype, streamed=True)
            config, tokenizer = checkpoint.config, checkpoint.tokenizer
            writer = tile_cache.begin(path, spec, dtype, config)  # the tiles packed straight into its files
            allocate = {"allocate": writer.allocate} if writer else {}
            try:
                if dtype == "auto":
                    decoder, kinds = pack_blocks(checkpoint.weights, config, spec, **allocate)
                else:
                    decoder, kinds = pack(checkpoint.weights, config, spec, dtype, **allocate), None
            except BaseException:
                if writer:
                    writer.discard()
                raise
            finally:
                checkpoint.weights.close()
            del checkpoint
            kept = tile_cache.save(path, spec, dtype, config, tokenizer, decoder, writer, kinds) is not None
        context = context or min(config.max_position_embeddings, DEFAULT_CONTEXT)
        if context < 2:
            raise ValueError(f"context must be at least 2 tokens, got {context}")
        # the placement, wafer layout and decode threads found for this entry before (~1 s a load to find again)
        key = tile_cache.engine_key(context, numba.config.NUMBA_NUM_THREADS) if kept else None
        known = tile_cache.recall(path, spec, dtype, key) if cached is not None else None
        engine = cls(path, config, tokenizer, decoder, spec, dtype, context, known, kinds)
        # what repr shows: the name it was loaded by where that was a store's name (an Ollama blob is sha256-...)
        engine.name = path.name if Path(given).expanduser() == path else str(given)
        if kept and (known is None or engine._reprobed):
            tile_cache.remember(path, spec, dtype, key, engine._found())
        return_freed_memory()
        return engine

    def __repr__(self) -> str:
        c = self.config
        return (f"Engine({self.name}: {c.family}, {c.n_params / 1e6:.1f}M params, {self.dtype}, "
                f"context {self.context}, on {self.spec.name} using {self.placement.pes_used:,} PEs)")

    # -- the forward pass ------------------------------------------------------------------------------------

    def _fastest_decode_threads(self) -> int:
        """Workers for a decode step, by measurement on this machine and shape: a helper hands work back and forth
        with the lead at every operation (~40 a step for a small model; a fraction of a microsecond each), which a
        tiny model's step may not repay, while a large one is bandwidth-bound and wants every core. Every core only
        when it is clearly faster (TWO_THREADS_WIN): a step split over threads waits whenever anything else holds
        one of the cores (the browser drawing a chart halved the built-in model's decode on two threads, where
        it ties with one when the machine is idle: notebook 04). Prefill always uses every core."""
        if self.prefill_threads == 1:
            return 1
        pos = min(self.context - 1, 64)  # a scratch position: every request rewrites the cache from 0
        choices = (1, self.prefill_threads)
        times = {threads: [] for threads in choices}
        for threads in choices:
            self._decode_step(0, pos, threads)  # compiles or loads the kernels once
        # alternated, and the median of each: another process busy for a moment (a test suite, a browser) then
        # skews both alike rather than deciding alone
        for _ in range(9):
            for threads in choices:
                t0 = time.perf_counter()
                self._decode_step(0, pos, threads)
                times[threads].append(time.perf_counter() - t0)
        median = {threads: sorted(t)[len(t) // 2] for threads, t in times.items()}
        return self.prefill_threads if median[self.prefill_threads] < TWO_THREADS_WIN * median[1] else 1

    def _free_draft_rows(self) -> int:
        """How many rows a verification forward carries for about the time of one decode step (FREE_ROWS_COST),
        by measurement: a step of a model too big for the caches reads every weight once whatever the rows (the
        0.5B on 2 cores, idle: 1 row 16.0 ms, 8 rows 17.5 (1.09x), 16 rows 23 (1.44x), 32 rows ~37), while a tiny
        model's step is mostly per-row work (the built-in model: 2 rows 1.65x one). The threshold sits clear of
        both sides of such a knee, so run-to-run noise does not move the answer. Speculation drafts at least this
        many tokens (`speculation.DraftLength`): a shorter draft would cost about the same and copy less."""
        rows = [r for r in (2, 4, 8, 16, 32) if r < min(self.context, PREFILL_CHUNK)]
        pos = min(self.context - 1 - max(rows, default=0), 64)  # scratch positions, as in the threads probe
        if not rows or pos < 0:
            return 1
        ids = {r: np.zeros(r, np.int64) for r in rows}
        self._prefill(ids[rows[-1]], pos, np.arange(rows[-1]))  # compiles or loads the multi-row kernels once
        times = {r: [] for r in (1, *rows)}
        for _ in range(5):  # alternated, medians: as the threads probe, for the same reason
            for r in times:
                t0 = time.perf_counter()
                if r == 1:
                    self._decode_step(0, pos)
                else:
                    self._prefill(ids[r], pos, np.arange(r))
                times[r].append(time.perf_counter() - t0)
        median = {r: sorted(t)[len(t) // 2] for r, t in times.items()}
        return max(r for r in times if median[r] <= FREE_ROWS_COST * median[1])

    def _forward(self, ids: np.ndarray, start: int, threads: int, at: np.ndarray, logits: np.ndarray) -> None:
        """Run ids at positions start.. and write the logits after the positions `at` (int64 indices into ids)
        into logits [len(at), vocab], with `threads` workers: this thread leads, helper threads join."""
        self._pass.helpers.start(threads)
        kept = self._held_n = min(self._held_n, start)  # a write at `start` leaves what lies before it intact
        self._pass(ids, start, at, logits, threads)
        if start == kept:  # (a write past the held tokens, like a scratch step, leaves a gap: nothing more held)
            self._held[start : start + len(ids)] = ids
            self._held_n = start + len(ids)

    def _reusable(self, ids: np.ndarray) -> int:
        """How many leading tokens of ids the KV cache already holds, at most all but the last (whose logits the
        request needs)."""
        n = min(self._held_n, len(ids) - 1)
        same = self._held[:n] == ids[:n]
        return n if same.all() else int(same.argmin())

    def _prefill_prompt(self, ids: np.ndarray) -> tuple[np.ndarray, int]:
        """The logits after a request's prompt [vocab], running only what the cache does not hold; and how many
        prompt tokens it reused."""
        start = self._reusable(ids)
        return self._prefill(ids[start:], start)[0], start

    def _decode_step(self, token: int, pos: int, threads: int | None = None) -> np.ndarray:
        """Logits [vocab] after feeding one token at pos (a view, overwritten by the next step)."""
        self._token[0] = token
        self._forward(self._token, pos, threads or self.decode_threads, self._first, self._logits)
        return self._logits[0]

    def _prefill(self, ids: np.ndarray, start: int = 0, at: np.ndarray | None = None) -> np.ndarray:
        """Run ids at positions start.. in chunks; return the logits [len(at), vocab] after the positions `at`
        (sorted indices into ids; default: the last one only). The lm_head runs for those rows alone."""
        at = np.array([len(ids) - 1], np.int64) if at is None else np.asarray(at, np.int64)
        logits = np.empty((len(at), self.config.vocab_size), np.float32)
        for offset in range(0, len(ids), PREFILL_CHUNK):
            chunk = ids[offset : offset + PREFILL_CHUNK]
            lo, hi = np.searchsorted(at, [offset, offset + len(chunk)])
            self._forward(chunk, start + offset, self.prefill_threads, at[lo:hi] - offset, logits[lo:hi])
        return logits

    def _check_prompt(self, ids: Sequence[int], start: int = 0) -> np.ndarray:
        """ids as an int64 array, once they are known to fit the context after `start` tokens and the vocab."""
        if len(ids) == 0:
            raise ValueError("the prompt is empty: give at least one token")
        if start + len(ids) > self.context:
            held = f"{start} tokens already in the cache and " if start else ""
            raise PromptTooLong(
                f"the prompt has {held}{len(ids)} tokens but the context holds {self.context}; shorten it, or load "
                f"the model with a larger context (spark_nb.load(..., context=N), at most "
                f"{self.config.max_position_embeddings})")
        ids = np.ascontiguousarray(ids, dtype=np.int64)  # helper threads read it by address
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}); got {ids.min()}..{ids.max()}")
        return ids

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits [len(ids), vocab] float32 of a full causal forward over token_ids."""
        ids = self._check_prompt(token_ids)
        with self._lock:
            self._request += 1
            return self._prefill(ids, at=np.arange(len(ids)))

    def session(self) -> "Session":
        """Start an incremental request: `Session.feed(ids)` runs ids after everything fed so far and returns the
        next-token logits. For drivers that interleave generated and fed tokens (the built-in edit format feeds
        each input line after the model asks for it). Starting one supersedes an unfinished stream or session."""
        with self._lock:
            self._request += 1
            return Session(self, self._request)

    # -- streaming -------------------------------------------------------------------------------------------

    def encode(self, prompt: str | Sequence[int]) -> list[int]:
        return self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)

    def stream(self, prompt: str | Sequence[int], max_new_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] | str | None = None,
               ignore_eos: bool = False, speculative: bool = False) -> Stream:
        """Generate from prompt (text or token ids), yielding Token events and a final Done.

        Stops at an end-of-sequence token (unless ignore_eos, as benchmarks want), at any of the `stop` strings
        (not included in the text), after max_new_tokens, or at the end of the context. Arguments are checked
        here, before any compute. speculative (greedy only, temperature 0): draft the next tokens from what
        followed the same tokens earlier in the prompt or the output (`speculation.PromptLookup`) and verify each
        draft in one multi-token forward: the same tokens as plain greedy decoding, fewer forward passes when the
        answer copies the prompt (an edit's answer copies the cell). Stats.drafted / accepted count the drafts.
        """
        ids = self._check_prompt(self.encode(prompt))
        validate(temperature, top_p)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        cancelled = threading.Event()
        eos = frozenset() if ignore_eos else frozenset(self.tokenizer.eos_token_ids)
        drafter = PromptLookup(ids.tolist(), self.free_rows) if speculative and temperature == 0 else None
        events = self._generate(ids, max_new_tokens, temperature, top_p, np.random.default_rng(seed), stops, eos,
                                cancelled, drafter)
        return Stream(events, cancelled)

    def _generate(self, ids, max_new_tokens, temperature, top_p, rng, stops, eos, cancelled,
                  drafter=None) -> Iterator[Token | Done]:
        t0 = time.perf_counter()
        with self._lock:
            self._request += 1
            request = self._request
            logits, reused = self._prefill_prompt(ids)
        wafer_ttft = wafer_s = self._wafer_prompt_s(len(ids), reused)
        decoder = self.tokenizer.stream_decoder()
        generated: list[int] = []
        text, shown = "", 0  # all text so far; how much of it has been yielded
        first_s = last_s = 0.0
        reason = "length"
        verified: deque[np.ndarray] = deque()  # logits a verified draft already gave for the tokens to come
        drafted = accepted = 0
        try:
            while True:
                token = sample(logits, temperature, top_p, rng)
                if token in eos:
                    reason = "eos"
                    break
                generated.append(token)
                text += decoder.push(token)
                hit = _find_stop(text, stops) if stops else -1
                if hit >= 0:
                    text, reason = text[:hit], "stop"
                    break
                last_s = time.perf_counter() - t0
                if len(generated) == 1:
                    first_s = last_s
                safe = len(text) - (_held_back(text, stops) if stops else 0)  # not what may start a stop string
                yield Token(text[shown:safe], (token,), last_s, wafer_s)
                shown = safe
                pos = len(ids) + len(generated) - 1  # where the token just chosen goes
                if len(generated) >= max_new_tokens or pos >= self.context:
                    break
                if cancelled.is_set() or request != self._request:
                    reason = "cancelled"
                    break
                if verified:  # a draft token greedy decoding chose again: its logits came with the draft
                    logits = verified.popleft()
                    continue
                draft = []
                if drafter is not None:
                    drafter.extend([token])
                    draft = drafter.draft(min(max_new_tokens - len(generated), self.context - pos - 1))
                if not draft:
                    with self._lock:
                        logits = self._decode_step(token, pos)
                    wafer_s += self._wafer_decode_s(pos + 1)
                    continue
                with self._lock:  # the token and its draft in one forward: the logits after each of them
                    judged = self._prefill(np.array([token, *draft], dtype=np.int64), pos,
                                           np.arange(len(draft) + 1))
                wafer_s += self._wafer_fed_s(pos, len(draft) + 1, logits=len(draft) + 1)
                n = 0
                while n < len(draft) and sample(judged[n], temperature, top_p, rng) == draft[n]:
                    n += 1
                drafter.length.judge(len(draft), n)
                drafted, accepted = drafted + len(draft), accepted + n
                drafter.extend(draft[:n])
                logits, verified = judged[0], deque(judged[1:n + 1])
        except KeyboardInterrupt:
            # The interrupt lands between two forward calls, so the engine is consistent: clean up, re-raise.
            cancelled.set()
            raise
        if reason != "stop":
            text += decoder.flush()
        if shown < len(text):
            yield Token(text[shown:], (), time.perf_counter() - t0, wafer_s)
        n = len(generated)
        total = time.perf_counter() - t0
        stats = Stats(
            prompt_tokens=len(ids), tokens=n, ttft_s=first_s, tok_per_s=_rate(n - 1, last_s - first_s),
            total_s=total, wafer_ttft_s=wafer_ttft, wafer_tok_per_s=_rate(n - 1, wafer_s - wafer_ttft),
            wafer_total_s=wafer_s, wafer=self.spec.name, dtype=self.dtype, drafted=drafted, accepted=accepted,
            reused=reused)
        yield Done(text, tuple(generated), reason, stats)

    # -- projected wafer time --------------------------------------------------------------------------------

    def _wafer_ttft_s(self, prompt_tokens: int) -> float:
        if prompt_tokens not in self._wafer_ttft:  # the cycle model takes ~1 ms; a request asks twice or more
            self._wafer_ttft[prompt_tokens] = first_token_cycles(self.placement, prompt_tokens).seconds
        return self._wafer_ttft[prompt_tokens]

    def _wafer_prompt_s(self, prompt_tokens: int, reused: int) -> float:
        """Projected TTFT of a prompt whose first `reused` tokens the cache held: the rest fed after them (the
        wafer keeps its KV cache in SRAM and could reuse it alike; the fitted feed cost, not the cycle model's
        milliseconds, on the way to the first token)."""
        return self._wafer_fed_s(reused, prompt_tokens - reused) if reused else self._wafer_ttft_s(prompt_tokens)

    def _wafer_fed_s(self, start: int, n: int, logits: int = 1) -> float:
        """n tokens fed at once after `start` in the cache (a verified draft, copied lines, a prompt's rest after a
        reused prefix): one pipelined pass through the layers, as `cycles.feed_cycles` charges it (fitted:
        `cycles.FeedCost`), with the lm_head for `logits` of its rows (a draft's verification needs one for each
        token, a prompt for its last only); one token is a decode step."""
        if n == 1:
            return self._wafer_decode_s(start + 1)
        return self._wafer_feed(start, n, logits)

    def _wafer_decode_s(self, context: int) -> float:
        return self._wafer_step_base + self._wafer_step_slope * (context - 1)


class Session:
    """One incremental request on an Engine (from `Engine.session()`): the KV cache holds everything fed so far.

        s = engine.session()
        logits = s.feed(prompt_ids)          # prefill
        logits = s.feed([token])             # one decode step
        logits = s.feed(line_ids)            # several tokens at once (chunked like prefill)

    `wafer_s` accumulates the projected wafer time: the first feed as time to first token, a later token as one
    decode step, several fed at once as one pipelined pass (`Engine._wafer_fed_s`). The first feed reuses what the
    engine's cache holds of it (`reused` tokens), as `Engine.stream` does. A newer request on the same
    engine supersedes this one: its next feed raises `Superseded`.
    """

    def __init__(self, engine: Engine, request: int):
        self.engine, self._request = engine, request
        self.pos = 0  # tokens in the cache
        self.wafer_s = 0.0
        self.reused = 0  # leading tokens of the first feed the cache already held

    def feed(self, token_ids: Sequence[int]) -> np.ndarray:
        """Run token_ids at positions pos.. and return the last one's next-token logits [vocab] (a copy)."""
        e = self.engine
        ids = e._check_prompt(token_ids, self.pos)
        with e._lock:
            if e._request != self._request:
                raise Superseded("a newer request started on this engine; start a new session")
            if self.pos == 0:
                logits, self.reused = e._prefill_prompt(ids)
            elif len(ids) == 1:
                logits = e._decode_step(int(ids[0]), self.pos).copy()
            else:
                logits = e._prefill(ids, self.pos)[0]
        self._advance(len(ids))
        return logits

    def verify(self, token_ids: Sequence[int], at: Sequence[int] | None = None) -> np.ndarray:
        """Run token_ids at positions pos.. like `feed`, and return the logits after each of them [T, vocab], or
        after those at the indices `at` (sorted) only [len(at), vocab]: one multi-token forward checks a whole
        speculative draft. `rewind` then drops a rejected tail."""
        e = self.engine
        ids = e._check_prompt(token_ids, self.pos)
        with e._lock:
            if e._request != self._request:
                raise Superseded("a newer request started on this engine; start a new session")
            logits = e._prefill(ids, self.pos, np.arange(len(ids)) if at is None else at)
        self._advance(len(ids), len(logits))
        return logits

    def rewind(self, pos: int) -> None:
        """Keep only the first `pos` tokens: attention never reads past the position it runs at, and what is fed
        next overwrites the rest of the cache."""
        if not 0 < pos <= self.pos:
            raise ValueError(f"can rewind to 1..{self.pos} tokens, not {pos}")
        self.pos = pos

    def _advance(self, n: int, logits: int = 1) -> None:
        e = self.engine
        if self.pos == 0:
            self.wafer_s += e._wafer_prompt_s(n, self.reused)
        else:  # tokens fed at once go through the layers as one pipelined pass, rejected draft tokens too
            self.wafer_s += e._wafer_fed_s(self.pos, n, logits)
        self.pos += n


class Superseded(RuntimeError):
    """A session was used after a newer request started on its engine."""


def _load_per_core(window_s: float = LOAD_WINDOW_S) -> float:
    """How busy the cores are now, per core: the share of the last `window_s` seconds they spent running anything
    (Linux's /proc/stat, read either side of a sleep: this process sleeps meanwhile, so it is the others' work),
    elsewhere the last minute's load average per core (0 where the system keeps none). Not the load average where
    /proc/stat exists: it lags by a minute, so a machine a job had just left read as busy and kept a probe that
    chose one thread (the 1.5B's bench decoded at 27.6 tok/s against 55 on two, measured at "load 0.48" a
    minute after the 0.5B's run ended)."""
    def busy_and_total():
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle, iowait
        return sum(ticks) - idle, sum(ticks)

    try:
        busy0, total0 = busy_and_total()
        time.sleep(window_s)
        busy1, total1 = busy_and_total()
        return (busy1 - busy0) / max(total1 - total0, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (OSError, AttributeError):
        return 0.0


def _rate(count: int, seconds: float) -> float:
    return count / seconds if count > 0 and seconds > 0 else 0.0


def _find_stop(text: str, stops: tuple[str, ...]) -> int:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of text that is the start of a stop string."""
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
