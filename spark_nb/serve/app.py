"""The server: tornado handlers in front, one worker thread running the engine behind a FIFO queue."""
from __future__ import annotations

import asyncio
import collections
import hmac
import json
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.locks
import tornado.web
from tornado.iostream import StreamClosedError

__all__ = ["Server", "make_app", "serve", "start_in_thread"]

DEFAULT_MAX_TOKENS = 256
# A token that comes less than BATCH_S after the worker last woke the loop does not wake it: it goes out with the
# next event (one decode step later at most), so a fast model's tokens cost one wake-up for several. With the
# format-string events: served tok/s 1.17-1.38x, server CPU 0.80-0.89x against a wake-up and a json.dumps for every
# token (paired A/B runs, built-in model, one engine thread in each server, 300 tokens).
BATCH_S = 0.002


class Channel:
    """Events from the worker thread to a handler's coroutine. The worker appends; it wakes the event loop only
    when the handler waits on an empty channel (and, for a token, BATCH_S after the last wake-up), so a burst of
    tokens costs one wake-up, not one each. The wake-up comes at a token's end, between two decode steps (a timer
    would wake the loop thread in the middle of one, whose threads wait for each other at every operation)."""

    def __init__(self, loop):
        self._loop, self._items, self._lock = loop, collections.deque(), threading.Lock()
        self._ready = tornado.locks.Event()  # set and cleared on the loop's thread only
        self._waiting = False
        self._woke = 0.0  # when the worker last woke the loop

    def put(self, item) -> None:  # any thread
        now = time.perf_counter()
        with self._lock:
            self._items.append(item)
            wake = self._waiting and (item[0] != "token" or now - self._woke >= BATCH_S)
            if wake:
                self._waiting, self._woke = False, now
        if wake:
            self._loop.add_callback(self._ready.set)

    async def get_all(self) -> list:  # the loop's thread: every item there, waiting for the first
        while True:
            with self._lock:
                if self._items:
                    items = list(self._items)
                    self._items.clear()
                    return items
                self._waiting = True
                self._ready.clear()
            await self._ready.wait()


@dataclass
class Job:
    """One request: what to generate, and the events the worker sends back to the handler's coroutine."""

    kind: str  # "completion" or "chat"
    params: dict
    loop: Any  # the handler's IOLoop: the worker's events wake it
    cancelled: threading.Event = field(default_factory=threading.Event)
    events: Channel = field(init=False)

    def __post_init__(self):
        self.events = Channel(self.loop)

    def send(self, kind: str, payload=None) -> None:
        self.events.put((kind, payload))


class Server:
    """The engine, its name, the key and the queue: what every handler shares."""

    def __init__(self, engine, name: str, api_key: str | None = None, queue_limit: int = 8):
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be at least 1, got {queue_limit}")
        self.engine, self.name, self.api_key, self.queue_limit = engine, name, api_key, queue_limit
        self._jobs: queue.Queue = queue.Queue()  # first in, first out
        self._pending = 0  # waiting or running
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="spark-nb-serve", daemon=True)
        self._worker.start()

    def submit(self, job: Job) -> bool:
        """Queue the job, or False when `queue_limit` requests are already waiting or running."""
        with self._lock:
            if self._pending >= self.queue_limit:
                return False
            self._pending += 1
        self._jobs.put(job)
        return True

    @property
    def pending(self) -> int:
        return self._pending

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                if not job.cancelled.is_set():  # its client left while it waited
                    self._run(job)
                else:
                    job.send("error", (499, "cancelled"))
            except Exception as err:  # noqa: BLE001 - the request fails, the server goes on
                job.send("error", (_status(err), f"{type(err).__name__}: {err}"))
            finally:
                with self._lock:
                    self._pending -= 1

    def stop(self) -> None:
        self._jobs.put(None)

    # -- generation (worker thread) ----------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        p = job.params
        tokenizer = getattr(self.engine, "tokenizer", None)
        if job.kind == "chat" and _is_edit_model(tokenizer):
            return self._run_edit(job)
        if job.kind == "chat":
            if not getattr(tokenizer, "chat_template", None):
                raise _Refused(400, "this model has no chat template: use /v1/completions")
            prompt = tokenizer.apply_chat_template(p["messages"], add_generation_prompt=True)
        else:
            prompt = p["prompt"]
        stream = self.engine.stream(prompt, max_new_tokens=p["max_tokens"], temperature=p["temperature"],
                                    top_p=p["top_p"], seed=p["seed"], stop=p["stop"], ignore_eos=p["ignore_eos"])
        for event in stream:
            if hasattr(event, "stats"):
                job.send("done", (event.text, _finish(event.reason), event.stats.as_dict()))
                return
            job.send("token", (event.text, event.host_s, event.wafer_s))
            if job.cancelled.is_set():
                stream.cancel()

    def _run_edit(self, job: Job) -> None:
        """The built-in model: the edit the last user message asks for, answered as one fenced block."""
        from ..edits import drain, edit_steps
        from ..edits.prompt import _OPEN, extract_code

        p = job.params
        message = next((m for m in reversed(p["messages"]) if m.get("role") == "user"), None)
        content = _text(message.get("content")) if message else ""
        blocks, rest = [], content
        while (code := extract_code(rest)) is not None:
            blocks.append(code)
            rest = rest[rest.index(code) + len(code):]
            rest = rest.split("\n", 1)[1] if "\n" in rest else ""  # past the closing fence
        if not blocks:
            raise _Refused(400, "the built-in model edits code: send the cell in a fenced block and the instruction "
                                "(spark_nb.edits.prompt.chat_messages' layout)")
        instruction = content.rsplit("Instruction:", 1)[1].strip() if "Instruction:" in content else \
            _OPEN.sub("", rest).strip()
        counter = [0]

        def progress(partial, tokens, host_s, wafer_s):  # empty chunks: the client sees the edit advance
            counter[0] += 1
            if counter[0] % 8 == 0:
                job.send("token", ("", host_s, wafer_s))

        result = drain(edit_steps(blocks[-1], instruction or "edit", model=self.engine, context=blocks[:-1],
                                  max_new_tokens=p["max_tokens_given"], temperature=p["temperature"], seed=p["seed"],
                                  cancel=job.cancelled, on_token=progress,
                                  exact=False))  # the model answers; a spark-nb client made any exact refactor
        code = result.proposed if result.proposed is not None else None
        if code is None:
            job.send("done", ("", "stop", dict(_stats(result), error=result.error)))
            return
        answer = f"```python\n{code}{'' if code.endswith(chr(10)) else chr(10)}```\n"
        job.send("token", (answer, result.stats.total_s if result.stats else result.seconds,
                           result.stats.wafer_total_s if result.stats else 0.0, _stats(result)))
        job.send("done", (answer, "stop", dict(_stats(result), error=result.error, style=result.style)))


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _status(err) -> int:
    if isinstance(err, _Refused):
        return err.status
    return 400 if isinstance(err, ValueError) else 500  # ValueError: a bad argument or a prompt too long


def _is_edit_model(tokenizer) -> bool:
    from ..edits.prompt import EDIT_TOKEN

    return tokenizer is not None and tokenizer.token_to_id(EDIT_TOKEN) is not None


def _stats(result) -> dict:
    return result.stats.as_dict() if result.stats is not None else {}


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _text(content) -> str:
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


# -- HTTP ---------------------------------------------------------------------------------------------------------


class _Handler(tornado.web.RequestHandler):
    def initialize(self, server: Server):
        self.server = server
        self.job: Job | None = None

    def prepare(self):
        key = self.server.api_key
        if key is not None:
            given = self.request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
                self.fail(401, "missing or wrong API key (Authorization: Bearer ...)", "authentication_error")

    def fail(self, status: int, message: str, kind: str = "invalid_request_error", headers=None):
        self.set_status(status)
        for name, value in (headers or {}).items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"message": message, "type": kind, "code": status}}))

    def on_connection_close(self):
        if self.job is not None:
            self.job.cancelled.set()


class ModelsHandler(_Handler):
    def get(self):
        engine = self.server.engine
        spec = getattr(engine, "spec", None)
        self.write({"object": "list", "data": [{
            "id": self.server.name, "object": "model", "created": 0, "owned_by": "spark-nb",
            "spark_nb": {"wafer": getattr(spec, "name", ""), "dtype": getattr(engine, "dtype", ""),
                         "context": getattr(engine, "context", None)}}]})


class HealthHandler(_Handler):
    def prepare(self):  # no key needed to ask whether the server is up
        pass

    def get(self):
        self.write({"status": "ok", "model": self.server.name, "pending": self.server.pending})


class _Generate(_Handler):
    kind = ""

    async def post(self):
        try:
            body = json.loads(self.request.body or b"{}")
            params = self._params(body)
        except (ValueError, TypeError, KeyError) as err:
            return self.fail(400, f"bad request: {err}")
        if body.get("model") != self.server.name:
            return self.fail(404, f"the model {body.get('model')!r} does not exist: this server serves "
                                  f"{self.server.name!r}", "not_found_error")
        self.job = Job(self.kind, params, tornado.ioloop.IOLoop.current())
        if not self.server.submit(self.job):
            return self.fail(429, f"{self.server.queue_limit} requests are already waiting or running: retry later",
                             "rate_limit_error", {"Retry-After": "1"})
        rid = f"{'chatcmpl' if self.kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self._stream(rid, created, usage)
        else:
            await self._whole(rid, created)

    def _params(self, body: dict) -> dict:
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and int(max_tokens) < 1:
            raise ValueError("max_tokens must be at least 1")
        stop = body.get("stop")
        p = dict(max_tokens=int(max_tokens or DEFAULT_MAX_TOKENS), max_tokens_given=max_tokens,
                 temperature=float(body.get("temperature") if body.get("temperature") is not None else 0.0),
                 top_p=float(body.get("top_p") if body.get("top_p") is not None else 1.0), seed=body.get("seed"),
                 stop=[stop] if isinstance(stop, str) else stop,
                 ignore_eos=bool(body.get("ignore_eos", False)))  # vLLM's extra parameter, for benchmarks
        from ..engine.sampling import validate

        validate(p["temperature"], p["top_p"])
        if self.kind == "chat":
            p["messages"] = body["messages"]
            if not isinstance(p["messages"], list) or not p["messages"]:
                raise ValueError("messages must be a non-empty list")
        else:
            prompt = body["prompt"]
            if isinstance(prompt, list):
                if len(prompt) != 1:
                    raise ValueError("one prompt per request")
                prompt = prompt[0]
            p["prompt"] = prompt
        return p

    def _chunk(self, rid, created, text, finish=None, extra=None, role=False) -> dict:
        if self.kind == "chat":
            delta = {"role": "assistant", "content": text} if role else ({"content": text} if text or not finish
                                                                           else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            out = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": self.server.name,
                   "choices": [choice]}
        else:
            out = {"id": rid, "object": "text_completion", "created": created, "model": self.server.name,
                   "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
        if extra is not None:
            out["spark_nb"] = extra
        return out

    async def _stream(self, rid, created, usage):
        items = await self.job.events.get_all()
        if items[0][0] == "error":  # before any token: an HTTP error the client reports as such
            status, message = items[0][1]
            return self.fail(status, message, "server_error" if status >= 500 else "invalid_request_error")
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        token = self._token_event(rid, created)
        first, ended = True, False
        try:
            while True:
                out = []  # every event that came since the last write: one write, one flush
                for kind, payload in _joined(items):
                    if kind == "token" and not first and len(payload) == 3:
                        out.append(token.format(json.dumps(payload[0]), payload[1], payload[2]))
                    elif kind == "token":  # the first (with the role), or one with the request's stats
                        extra = {"host_s": payload[1], "wafer_s": payload[2], "wafer": self._wafer}
                        if len(payload) > 3:
                            extra.update(payload[3])
                        out.append(_event(self._chunk(rid, created, payload[0], extra=extra, role=first)))
                        first = False
                    elif kind == "done":
                        text, finish, stats = payload
                        out.append(_event(self._chunk(rid, created, "", finish, extra=stats)))
                        if usage:
                            out.append(_event({"id": rid, "object": self._object(True), "created": created,
                                               "model": self.server.name, "choices": [], "usage": _usage(stats)}))
                        out.append("data: [DONE]\n\n")
                        ended = True
                        break
                    else:  # an error mid-stream: an error event, as OpenAI-compatible servers send it
                        out.append(_event({"error": {"message": payload[1], "type": "server_error",
                                                     "code": payload[0]}}))
                        ended = True
                        break
                self.write("".join(out))
                await self.flush()
                if ended:
                    break
                items = await self.job.events.get_all()
        except StreamClosedError:
            self.job.cancelled.set()
            return
        self.finish()

    def _token_event(self, rid, created) -> str:
        """A plain token's event as a format string ({0}: the text as JSON, {1}, {2}: host_s, wafer_s): the same
        JSON as `_chunk` gives, at a quarter of json.dumps' cost per token."""
        mark = "\u0000"  # no model name or id holds it
        chunk = self._chunk(rid, created, f"{mark}0", extra={"host_s": f"{mark}1", "wafer_s": f"{mark}2",
                                                            "wafer": self._wafer})
        event = _event(chunk).replace("{", "{{").replace("}", "}}")
        for i, spec in enumerate(("{0}", "{1!r}", "{2!r}")):  # a float's repr is its JSON
            event = event.replace(json.dumps(f"{mark}{i}"), spec)
        return event

    @property
    def _wafer(self) -> str:
        return getattr(getattr(self.server.engine, "spec", None), "name", "")

    def _object(self, chunk: bool) -> str:
        if self.kind == "chat":
            return "chat.completion.chunk" if chunk else "chat.completion"
        return "text_completion"

    async def _whole(self, rid, created):
        while True:
            kind, payload = (await self.job.events.get_all())[-1]
            if kind == "error":
                status, message = payload
                return self.fail(status, message, "server_error" if status >= 500 else "invalid_request_error")
            if kind == "done":
                break
        text, finish, stats = payload
        if self.kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        self.finish({"id": rid, "object": self._object(False), "created": created, "model": self.server.name,
                     "choices": [choice], "usage": _usage(stats), "spark_nb": stats})


def _joined(items: list) -> list:
    """items with each run of plain tokens (text, host_s, wafer_s) that came together made one: their text joined,
    the last one's times. A client parses an event in ~50-100 us of Python, longer than the built-in model takes
    for a token, so one event per token made the client the bottleneck of a fast stream."""
    out = []
    for kind, payload in items:
        if kind == "token" and len(payload) == 3 and out and out[-1][0] == "token" and len(out[-1][1]) == 3:
            out[-1] = ("token", (out[-1][1][0] + payload[0], payload[1], payload[2]))
        else:
            out.append((kind, payload))
    return out


def _event(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _usage(stats: dict) -> dict:
    p, n = stats.get("prompt_tokens", 0), stats.get("tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}


class ChatHandler(_Generate):
    kind = "chat"


class CompletionsHandler(_Generate):
    kind = "completion"


def make_app(server: Server) -> tornado.web.Application:
    args = dict(server=server)
    return tornado.web.Application([
        (r"/v1/models", ModelsHandler, args),
        (r"/v1/chat/completions", ChatHandler, args),
        (r"/v1/completions", CompletionsHandler, args),
        (r"/health", HealthHandler, args),
    ])


def _listen(server: Server, host: str, port: int):
    sockets = tornado.netutil.bind_sockets(port, host)
    http = tornado.httpserver.HTTPServer(make_app(server))
    http.add_sockets(sockets)
    return http, sockets[0].getsockname()[1]


def _key(api_key_env: str | None, api_key_keyring: str | None = None) -> str | None:
    """The key clients must send: the variable's, else the keyring entry's (as a remote endpoint reads its own)."""
    from ..backends.remote import Endpoint, api_key

    if not (api_key_env or api_key_keyring):
        return None
    try:
        key = api_key(Endpoint("", "", api_key_env, "spark-nb serve", api_key_keyring))
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if not key:
        raise SystemExit(f"--api-key-env {api_key_env}: that environment variable is not set")
    return key


def serve(model=None, host: str = "127.0.0.1", port: int = 8000, api_key_env: str | None = None,
          queue_limit: int = 8, wafer: str = "wse3", dtype: str = "int8", name: str | None = None,
          api_key_keyring: str | None = None) -> None:
    """Load the model and serve it until interrupted (prints the base URL once it listens)."""
    from ..backends.remote import Endpoint
    from ..edits import get_engine

    key = _key(api_key_env, api_key_keyring)
    if key is None and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"spark-nb serve: listening on {host} without a key: anyone who can reach it can use it "
              "(--api-key-env VAR or --api-key-keyring NAME requires one)", file=sys.stderr)
    engine = get_engine(model, wafer, dtype)
    list(engine.stream("def", max_new_tokens=2))  # numba loads its kernels now, not in the first request's TTFT
    name = name or ("builtin" if model is None else str(model).rstrip("/").rsplit("/", 1)[-1])
    server = Server(engine, name, key, queue_limit)

    async def main():
        http, bound = _listen(server, host, port)
        source = Endpoint("", "", api_key_env, "", api_key_keyring).key_source
        print(f"spark-nb serve: model {name!r} at http://{host}:{bound}/v1 (queue {queue_limit}"
              f"{', API key from ' + source if key else ''})", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.stop()


def start_in_thread(engine, name: str = "builtin", host: str = "127.0.0.1", port: int = 0,
                    api_key: str | None = None, queue_limit: int = 8):
    """Serve `engine` from a thread of this process (tests, benchmarks): returns (base_url, server, stop)."""
    server = Server(engine, name, api_key, queue_limit)
    ready, box = threading.Event(), {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def start():
            box["http"], box["port"] = _listen(server, host, port)
            box["loop"] = loop
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()
        box["http"].stop()
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)

    def stop():
        server.stop()
        box["loop"].call_soon_threadsafe(box["loop"].stop)
        thread.join(5)

    return f"http://{host}:{box['port']}/v1", server, stop
