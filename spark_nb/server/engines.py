"""The server's engines: one warm engine per model, shared by every notebook and socket of the server.

An engine loads on first use in a loader thread; its requests decode one at a time in that engine's own thread
(they share its KV cache), and each token is posted back to the Tornado IOLoop, which never waits on the model.

    engines = Engines()
    job = engines.complete(model, prefix, suffix, context, max_tokens, send)   # send(msg) on the IOLoop
    job.cancel()                                                               # ends it within one token
"""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .complete import Suggestion

FAILED_RETRY_S = 10.0  # a model that failed to load is tried again after this long, not on every keystroke


def _load(model: str | None):
    from ..edits import get_engine  # the engine package loads with the first model, not with the server

    return get_engine(model or None)


@dataclass
class _Entry:
    future: Future
    started: float
    failed_at: float | None = None
    decoder: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "spark-nb-decode"))


class Job:
    """One completion request in flight; `cancel()` from the IOLoop ends it within one token (or before it
    starts, when it still waits for the engine)."""

    def __init__(self, id):
        self.id = id
        self.cancelled = threading.Event()
        self._stream = None

    def cancel(self) -> None:
        self.cancelled.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()


class Engines:
    def __init__(self, load: Callable = _load):
        self._load = load
        self._entries: dict[str, _Entry] = {}
        self._loader = ThreadPoolExecutor(1, "spark-nb-load")  # one load at a time: each takes every core
        self.loads: dict[str, int] = {}  # model -> times it was loaded (the tests' "one load for two sockets")

    def engine(self, model: str | None) -> Future:
        """The engine for `model` ("" or None: the built-in one), loading it on first use."""
        key = model or ""
        entry = self._entries.get(key)
        if entry is not None and entry.future.done() and entry.future.exception() is not None:
            if time.monotonic() - entry.started > FAILED_RETRY_S:
                entry = None
        if entry is None:
            self.loads[key] = self.loads.get(key, 0) + 1
            entry = self._entries[key] = _Entry(self._loader.submit(self._load, model), time.monotonic())
        return entry.future

    def status(self) -> dict:
        out = {}
        for key, entry in self._entries.items():
            f = entry.future
            state = "loading" if not f.done() else ("failed" if f.exception() else "ready")
            out[key or "builtin"] = {"state": state, "loads": self.loads.get(key, 0),
                                     "error": load_error(key, f.exception()) if state == "failed" else None}
        return out

    def complete(self, model: str | None, id, prefix: str, suffix: str, context: str, max_tokens: int,
                 send: Callable[[dict], None]) -> Job:
        """Start a completion; `send` gets {type: token|done|error, id, ...} on the calling thread's event loop (a
        done also says `server_first_token_ms`: from this call to its first token handed to `send`, and
        `server_received_at`: this call's wall-clock time in ms, to set beside a browser's clock on one machine)."""
        loop = asyncio.get_running_loop()
        job = Job(id)
        t0, first, received_at = time.perf_counter(), [], time.time() * 1e3

        def deliver(msg: dict) -> None:  # on the IOLoop: what the server itself took, for the latency breakdown
            if msg["type"] == "token" and not first:
                first.append((time.perf_counter() - t0) * 1e3)
            elif msg["type"] == "done":
                msg["server_first_token_ms"] = first[0] if first else None  # request in -> first token out
                msg["server_received_at"] = received_at
            send(msg)

        post = lambda msg: loop.call_soon_threadsafe(deliver, msg)  # noqa: E731
        key = model or ""
        loaded = self.engine(model)

        def start(f: Future) -> None:
            error = f.exception()
            if error is not None:
                post({"type": "error", "id": id, "model": key, "message": load_error(key, error)})
                return
            if job.cancelled.is_set():
                post(_done(id, "cancelled", None))
                return
            self._entries[key].decoder.submit(_decode, f.result(), job, prefix, suffix, context, max_tokens, post)

        loaded.add_done_callback(start)
        return job

    def shutdown(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)
        for entry in self._entries.values():
            entry.decoder.shutdown(wait=False, cancel_futures=True)


def load_error(model: str, error: BaseException | None) -> str:
    name = model or "the built-in model"
    return f"spark-nb could not load {name}: {error}"


def _done(id, reason: str, stats) -> dict:
    return {"type": "done", "id": id, "reason": reason, "stats": stats.as_dict() if stats is not None else None}


def _decode(engine, job: Job, prefix, suffix, context, max_tokens, post) -> None:
    """Runs in the engine's decode thread: stream tokens, cut at the boundary, post each visible piece."""
    if job.cancelled.is_set():
        post(_done(job.id, "cancelled", None))
        return
    try:
        suggestion = Suggestion(engine.tokenizer, prefix, suffix, context)
        stream = engine.stream(suggestion.text, max_new_tokens=max_tokens)
    except Exception as e:  # a prompt too long for the context, a bad argument: one message, the socket lives on
        post({"type": "error", "id": job.id, "message": f"spark-nb: {e}"})
        return
    job._stream = stream
    if job.cancelled.is_set():
        stream.cancel()
    reason, stats = "length", None
    try:
        for event in stream:
            if hasattr(event, "reason"):  # Done: what is still held back is whitespace, never shown
                stats, reason = event.stats, reason if reason == "boundary" else event.reason
                break
            new, ended = suggestion.add(event.text)
            if new:
                post({"type": "token", "id": job.id, "text": new})
                time.sleep(0)  # hand the GIL to the IOLoop now, not at the next switch interval (5 ms)
            if ended:
                stream.cancel()
                reason = "boundary"
    except Exception as e:
        post({"type": "error", "id": job.id, "message": f"spark-nb: the completion failed: {e}"})
        return
    post(_done(job.id, "cancelled" if job.cancelled.is_set() else reason, stats))
