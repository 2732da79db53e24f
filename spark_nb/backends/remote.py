"""A model behind an OpenAI-compatible server, driven through the `openai` client with streaming.

The engine offers what the edit driver's chat path uses: `remote = True`, `stream(messages | prompt, ...)` -> a
`RemoteStream` of Token events and one Done with Stats, and `RemoteStream.cancel()`, which closes the HTTP stream
at once. Times are measured here (seconds since the request was sent); there is no wafer projection for a model
whose shape is unknown, so the wafer fields are 0 and `Stats.wafer` says "remote" — unless the server projects
them itself: `spark-nb serve` sends each token's projected wafer time and the request's projected stats as an
extra field `spark_nb`, and those are kept (`Stats.wafer` then names the server's wafer preset).

A server that reports the model's config (its /v1/models entry carries the model's config.json as `config`) gets
a projection made here, as for a model loaded in-process: the engine places that config on the wafer (fp16, as
servers run models) and each token's projected time follows from it; a config that does not fit stays "remote".
Ollama reports it on its native API instead: POST /api/show gives the GGUF file's metadata and tensor shapes, read
as spark-nb reads a GGUF file's (gguf_file.config_from_metadata). llama.cpp's server reports too little (its
/v1/models `meta` has the vocabulary, width and parameter count, not the layers or heads): it stays "remote".

A request that fails does not raise: its stream ends with Done(reason="error") and `RemoteStream.error` says what
went wrong in one sentence (connection refused, unknown host, TLS, key refused, no such model, rate limited, the
server failed, the stream was cut). API keys come from an environment variable (`api_key_env`) or the system
keyring (`api_key_keyring`: the entry `keyring set spark-nb NAME` stores; needs the optional `keyring` package):
the key itself is never stored on the engine, in its repr, in a message or in a log; only the client holds it.

Stop: `cancel()` shuts the request's socket from any thread, whether the stream is sending the request, waiting
for the server's first chunk or reading. A consumer on an event loop (the notebook) passes `heartbeat=S`: the
response is then read on a helper thread, and whenever the server is silent for S seconds (before its first chunk,
or stalled midway) the stream yields an empty Token (no text, no ids), so the loop runs and Stop reaches the stream.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..engine.events import Done, Stats, Token

__all__ = ["ENDPOINTS", "Endpoint", "RemoteEngine", "RemoteStream", "TIMEOUTS", "is_remote", "remote_engine"]

PREFIX = "openai:"
# Seconds. connect: a server that does not accept within 5 s is down or unreachable. read: the longest silence
# between two chunks, the first included (a cold server may load the model, a long prompt prefill). write, pool:
# sending the request, waiting for a free connection. No retries: a 429 or 5xx is shown at once, with its reason.
TIMEOUTS = dict(connect=5.0, read=60.0, write=10.0, pool=5.0)
ENDPOINTS: dict[str, dict] = {}  # name -> {"base_url", "model", "api_key_env" | "api_key_keyring"}: c.Spark.endpoints
ENDPOINTS_FILE_ENV = "SPARK_NB_ENDPOINTS"  # a JSON file of more named endpoints: the CLI's (eval, bench), any process's
KEYRING_SERVICE = "spark-nb"  # keyring entries: `keyring set spark-nb NAME`, then "api_key_keyring": NAME
DESCRIBE_TIMEOUT_S = 2.0  # the one GET /models that asks for the model's config: a server without it is "remote"
PROJECT_CONTEXT = 4096  # positions the projection places a KV cache for (at most the model's own maximum)
_KEYS = {"base_url", "model", "api_key_env", "api_key_keyring"}


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # e.g. http://localhost:8000/v1
    model: str  # the name the server knows the model by
    api_key_env: str | None = None  # the environment variable holding the key (None: no key)
    name: str = ""  # the name it was looked up by, when it was
    api_key_keyring: str | None = None  # the keyring entry (service "spark-nb") holding the key, if no variable does

    @classmethod
    def parse(cls, spec) -> "Endpoint":
        """From "openai:MODEL@URL", a name (`named`), or a dict with base_url, model and optionally api_key_env
        and api_key_keyring."""
        if isinstance(spec, Endpoint):
            return spec
        name = ""
        if isinstance(spec, str) and (found := named(spec)) is not None:
            name, spec = spec, found
        if isinstance(spec, dict):
            if set(spec) - _KEYS or not spec.get("base_url") or not spec.get("model"):
                raise ValueError(f"an endpoint is a dict with base_url, model and optionally api_key_env or "
                                 f"api_key_keyring; got keys {sorted(spec)}")
            return cls(str(spec["base_url"]).rstrip("/"), str(spec["model"]), spec.get("api_key_env"), name,
                       spec.get("api_key_keyring"))
        if not isinstance(spec, str) or not spec.startswith(PREFIX):
            raise ValueError(f"not a remote model: {spec!r} (write openai:MODEL@http://host:port/v1)")
        rest = spec[len(PREFIX):]
        at = max(rest.rfind("@http://"), rest.rfind("@https://"))
        if at <= 0:
            raise ValueError(f"{spec!r}: write openai:MODEL@http://host:port/v1 (the server's base URL after @)")
        return cls(rest[at + 1:].rstrip("/"), rest[:at])

    def __str__(self) -> str:
        return self.name or f"{PREFIX}{self.model}@{self.base_url}"

    @property
    def key_source(self) -> str:
        """Where the key comes from, in words ("" for no key): never the key."""
        sources = [f"${self.api_key_env}"] if self.api_key_env else []
        if self.api_key_keyring:
            sources.append(f"the keyring entry {KEYRING_SERVICE}/{self.api_key_keyring}")
        return " or ".join(sources)


def api_key(endpoint: Endpoint) -> str:
    """The endpoint's key: its environment variable when set, else its keyring entry; "" when it names neither.
    Raises ValueError, saying what to do, when the keyring is named but cannot give the key."""
    if endpoint.api_key_env and os.environ.get(endpoint.api_key_env):
        return os.environ[endpoint.api_key_env]
    if not endpoint.api_key_keyring:
        return ""
    name = endpoint.api_key_keyring
    try:
        import keyring
        import keyring.errors
    except ImportError:
        raise ValueError(f"{endpoint}: api_key_keyring needs the keyring package (pip install keyring)"
                         + (f", or set ${endpoint.api_key_env}" if endpoint.api_key_env else "")) from None
    try:
        key = keyring.get_password(KEYRING_SERVICE, name)
    except keyring.errors.KeyringError as err:  # no usable backend on this machine, a locked store
        raise ValueError(f"{endpoint}: the keyring could not give {KEYRING_SERVICE}/{name} "
                         f"({type(err).__name__}: {err})") from None
    if not key:
        raise ValueError(f"{endpoint}: the keyring has no entry {KEYRING_SERVICE}/{name}: store the key with "
                         f"`keyring set {KEYRING_SERVICE} {name}`")
    return key


def named(name: str) -> dict | None:
    """The endpoint called `name`: the notebook's (ENDPOINTS), else one in the JSON file $SPARK_NB_ENDPOINTS names
    ({"name": {"base_url": ..., "model": ..., "api_key_env": ...}}: a key's source, never a key), else None."""
    if name in ENDPOINTS:
        return ENDPOINTS[name]
    path = os.environ.get(ENDPOINTS_FILE_ENV)
    if not path:
        return None
    try:
        table = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as err:
        raise ValueError(f"${ENDPOINTS_FILE_ENV} names {path}, which is no JSON file of endpoints ({err})") from None
    found = table.get(name) if isinstance(table, dict) else None
    return found if isinstance(found, dict) else None


def is_remote(spec) -> bool:
    """Whether `spec` names a remote model ("openai:...", a named endpoint or an endpoint dict)."""
    return (isinstance(spec, (dict, Endpoint)) or isinstance(spec, str) and (spec.startswith(PREFIX)
                                                                              or named(spec) is not None))


def remote_engine(spec) -> "RemoteEngine":
    return RemoteEngine(Endpoint.parse(spec))


class RemoteEngine:
    """A remote chat model with the engine's streaming surface (no tokenizer, no session; a wafer projection only
    when the server reports the model's config)."""

    remote = True
    tokenizer = None
    spec = None  # no WaferSpec: nothing is placed here
    dtype = ""

    def __init__(self, endpoint: Endpoint):
        import openai

        self.endpoint = endpoint
        self.path = str(endpoint)  # what names it where a loaded engine's folder would (the panel's model picker)
        # the client needs some key; servers without one ignore the header. The key stays inside the client.
        self._client = openai.OpenAI(base_url=endpoint.base_url, api_key=api_key(endpoint) or "none", max_retries=0,
                                     timeout=openai.Timeout(**TIMEOUTS), http_client=_interruptible_client())
        self._projector: _Projector | None = None
        self._described = False  # whether GET /models was asked for the model's config (once, by the first stream)

    def __repr__(self) -> str:
        key = f", key from {self.endpoint.key_source}" if self.endpoint.key_source else ""
        return f"RemoteEngine({self.endpoint.model!r} at {self.endpoint.base_url}{key})"

    def count_tokens(self, text: str) -> int:
        """An estimate without the tokenizer (about 3 characters a token for code), for token budgets."""
        return len(text) // 3 + 1

    def stream(self, prompt: str | Sequence[dict], max_new_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] | str | None = None,
               ignore_eos: bool = False, heartbeat: float | None = None, **ignored) -> "RemoteStream":
        """Chat messages go to /chat/completions, a text prompt to /completions; either way streamed. ignore_eos
        is sent as vLLM's extra parameter (vLLM, SGLang and spark-nb serve take it; only sent when asked).
        heartbeat: seconds between the empty Tokens yielded while the first chunk is awaited (module docstring).
        `ignored`: the in-process engine's options a server does not take (speculative)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        args: dict[str, Any] = dict(model=self.endpoint.model, max_tokens=max_new_tokens, temperature=temperature,
                                    stream=True, stream_options={"include_usage": True})
        if top_p != 1.0:
            args["top_p"] = top_p
        if seed is not None:
            args["seed"] = seed
        if ignore_eos:
            args["extra_body"] = {"ignore_eos": True}
        if stop:
            args["stop"] = [stop] if isinstance(stop, str) else list(stop)
        chat = not isinstance(prompt, str)
        if chat:
            create = lambda: self._client.chat.completions.create(messages=list(prompt), **args)  # noqa: E731
            words = "".join(str(m.get("content", "")) for m in prompt)
        else:
            create = lambda: self._client.completions.create(prompt=prompt, **args)  # noqa: E731
            words = prompt
        return RemoteStream(create, chat, self.endpoint, heartbeat, self, self.count_tokens(words))

    def _describe(self) -> None:
        """Ask the server once for the model's config (its /v1/models entry's `config`, else Ollama's /api/show),
        to project the wafer, both within DESCRIBE_TIMEOUT_S. A server that cannot be reached raises here: the
        request's own message says so (and the next one asks)."""
        import openai

        if self._described:
            return
        deadline = time.monotonic() + DESCRIBE_TIMEOUT_S
        try:
            models = self._client.with_options(timeout=DESCRIBE_TIMEOUT_S).models.list()
            config = next(((m.model_extra or {}).get("config") for m in models.data if m.id == self.endpoint.model),
                          None)
            if not isinstance(config, dict):  # Ollama reports the shape on its own API, in the time that is left
                config = self._ollama_config(deadline - time.monotonic())
            self._projector = _Projector(config) if config is not None else None
        except openai.APIConnectionError as err:
            if not isinstance(err, openai.APITimeoutError):  # a slow /models only costs the projection
                raise
        except Exception:  # noqa: BLE001 - no /models, no such entry, a config that does not fit: "remote"
            pass
        self._described = True

    def _ollama_config(self, seconds: float):
        """The model's config from Ollama's POST /api/show (its native API: the base URL without /v1): the GGUF
        file's metadata (`model_info`) and its tensors' names and shapes (`tensors`, sent since Ollama 0.6.1), read
        as a GGUF file's are. None where that is not there: another server, an older Ollama, an unknown shape."""
        from ..model.gguf_file import config_from_metadata

        if seconds <= 0:
            return None
        try:
            url = self.endpoint.base_url.rstrip("/").removesuffix("/v1") + "/api/show"  # absolute: not under /v1
            show = self._client.with_options(timeout=seconds).post(url, body={"model": self.endpoint.model},
                                                                   cast_to=object)
            tensors = {t["name"]: _Shaped(t["shape"]) for t in show.get("tensors") or ()}
            return config_from_metadata(show["model_info"], tensors, f"{self.endpoint.model} (Ollama's /api/show)")
        except Exception:  # noqa: BLE001 - no /api/show, another answer, metadata spark-nb does not read: "remote"
            return None

    @property
    def projector(self) -> "_Projector | None":
        """The projection of the config the server reported (None: "remote"), once a stream asked for it."""
        return self._projector


@dataclass(frozen=True)
class _Shaped:
    shape: list  # a tensor's dimensions as Ollama lists them: GGUF's order, innermost first


class _Projector:
    """The wafer time of a model known only by its config: placed once; time to first token per prompt length
    and the decode step, affine in the context (as `Engine` projects a loaded model)."""

    def __init__(self, config, wafer: str = "wse3", dtype: str = "fp16"):  # a config.json dict or a ModelConfig
        from ..model.config import ModelConfig
        from ..wafer.cycles import decode_cycles
        from ..wafer.placement import place

        config = ModelConfig.coerce(config)
        self.context = min(PROJECT_CONTEXT, config.max_position_embeddings)
        self.placement = place(config, wafer, dtype, self.context)  # raises PlacementError when it does not fit
        self.wafer, self.dtype = self.placement.spec.name, dtype
        first, last = decode_cycles(self.placement, 1).seconds, decode_cycles(self.placement, self.context).seconds
        self._base, self._slope = first, (last - first) / max(self.context - 1, 1)
        self._ttft: dict[int, float] = {}  # prompt tokens -> projected TTFT, as asked

    def ttft_s(self, prompt_tokens: int) -> float:
        from ..wafer.cycles import first_token_cycles

        n = max(1, min(prompt_tokens, self.context))
        if n not in self._ttft:  # the cycle model takes ~1 ms
            self._ttft[n] = first_token_cycles(self.placement, n).seconds
        return self._ttft[n]

    def step_s(self, position: int) -> float:
        """The decode step that writes the token at `position` (0-based, the prompt's included)."""
        return self._base + self._slope * min(position, self.context - 1)


class RemoteStream:
    """The events of one remote request. Iterate it; `cancel()` stops it at once from any thread: the socket is
    shut, so the server sees the connection close and stops generating."""

    def __init__(self, create, chat: bool, endpoint: Endpoint, heartbeat: float | None = None, engine=None,
                 prompt_estimate: int = 0):
        self._create, self._chat, self._endpoint, self._heartbeat = create, chat, endpoint, heartbeat
        self._engine, self._prompt_estimate = engine, prompt_estimate  # the engine: its projector, if any
        self._t0 = time.perf_counter()  # when the request is sent: times are measured from here
        self._response = None
        self._conn: _Connection | None = None  # the connection this request uses, once it used one
        self._cancelled = threading.Event()
        self.error: str | None = None  # set when the stream ended with Done(reason="error"): what went wrong
        self._wafer = "remote"  # the wafer preset a projecting server names
        self._events = self._generate()

    def __iter__(self) -> "RemoteStream":
        return self

    def __next__(self) -> Token | Done:
        return next(self._events)

    def cancel(self) -> None:
        self._cancelled.set()  # set before the connection is read: _claim checks it after setting _conn
        conn = self._conn
        if conn is not None:
            conn.shut()

    def close(self) -> None:
        self.cancel()
        self._events.close()

    def _claim(self, conn: "_Connection") -> None:
        """The request is about to use `conn` (sending or reading): a cancel() from now on shuts it."""
        self._conn = conn
        if self._cancelled.is_set():
            conn.shut()

    def _read(self, step):
        """step() with this stream's connection shut by cancel() while it blocks."""
        _local.stream = self
        try:
            return step()
        finally:
            _local.stream = None

    def _chunks(self) -> Iterator[tuple]:
        """The response's chunks, each with when it came (seconds since the request was sent). The first request
        of an engine asks the server for the model's config first."""
        if self._engine is not None:
            self._read(self._engine._describe)
        self._t0 = time.perf_counter()
        self._response = self._read(self._create)
        chunks = iter(self._response)
        while (chunk := self._read(lambda: next(chunks, None))) is not None:
            yield chunk, time.perf_counter() - self._t0

    def _pumped(self) -> Iterator[tuple | None]:
        """_chunks() read on a helper thread, None every `heartbeat` seconds without one: the consumer's loop runs
        while the server is silent (before its first chunk, or stalled midway), and Stop reaches the stream."""
        items: queue.SimpleQueue = queue.SimpleQueue()

        def pump():  # this thread reads the response, so it closes it too (a failed read closed it already)
            try:
                for item in self._chunks():
                    items.put(item)
            except BaseException as err:  # noqa: BLE001 - raised again on the stream's own thread
                items.put(err)
            else:
                self._response.close()
                items.put(_END)

        threading.Thread(target=pump, name="spark-nb-remote", daemon=True).start()
        while True:
            try:
                item = items.get(timeout=self._heartbeat)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _generate(self) -> Iterator[Token | Done]:
        text, n, first_s, last_s = "", 0, 0.0, 0.0
        reason, usage = "length", None
        wafer_s = first_wafer_s = 0.0  # a server that projects (spark-nb serve) sends these ...
        projected: dict = {}  # ... and its request's projected stats, on its last chunk
        served = False  # whether the server projects; else a projector of the config it reported, if any
        try:
            if self._cancelled.is_set():
                raise _Cancelled
            projector = None
            for item in self._pumped() if self._heartbeat else self._chunks():
                if item is None:  # a heartbeat: nothing from the server yet
                    yield Token("", (), time.perf_counter() - self._t0, 0.0)
                    if self._cancelled.is_set():
                        raise _Cancelled
                    continue
                chunk, at = item
                if n == 0:  # the engine asked the server for the model's config before the request
                    projector = self._engine.projector if self._engine is not None else None
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                extra = (chunk.model_extra or {}).get("spark_nb")  # spark-nb serve: the wafer the server projects
                if extra:
                    served = True
                    wafer_s = extra.get("wafer_s", wafer_s)
                    self._wafer = extra.get("wafer", self._wafer)
                    projected = extra if "wafer_tok_per_s" in extra else projected
                for choice in chunk.choices or ():
                    delta = (choice.delta.content if self._chat else choice.text) or ""
                    if delta:
                        if projector is not None and not served:
                            wafer_s += (projector.ttft_s(self._prompt_estimate) if n == 0
                                        else projector.step_s(self._prompt_estimate + n))
                        n += 1
                        last_s = at
                        first_s = first_s or last_s
                        first_wafer_s = first_wafer_s or wafer_s
                        text += delta
                        yield Token(delta, (), last_s, wafer_s)
                    if choice.finish_reason:
                        reason = {"stop": "eos", "length": "length"}.get(choice.finish_reason, choice.finish_reason)
                if self._cancelled.is_set():
                    raise _Cancelled
        except _Cancelled:
            reason = "cancelled"
        except Exception as err:  # noqa: BLE001 - every failure becomes one message and an "error" Done
            if self._cancelled.is_set():
                reason = "cancelled"  # the socket cancel() shut broke the read or the request under way
            else:
                reason, self.error = "error", explain(err, self._endpoint, n)
        finally:
            if self._response is not None and reason != "error" and not self._heartbeat:  # else its reader does
                self._response.close()
            self._conn = None  # the connection goes back to the pool: a late cancel() must not shut it
        if reason != "error" and not text and projected.get("error"):  # spark-nb serve's model made no edit: why
            reason, self.error = "error", f"{self._endpoint.base_url}: {projected['error']}"
        total = time.perf_counter() - self._t0
        # a chunk may carry several tokens (spark-nb serve joins those that came together): count the server's
        # tokens where it reports them, the chunks otherwise (a stream read to its end reports usage)
        tokens = getattr(usage, "completion_tokens", None) or n
        rate = (tokens - 1) / (last_s - first_s) if tokens > 1 and last_s > first_s else 0.0
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        projector = None if served or self._engine is None else self._engine.projector
        if projector is not None and n:  # the reported config's projection, with the prompt's true length now
            p = prompt_tokens or self._prompt_estimate
            first_wafer_s = projector.ttft_s(p)
            wafer_s = first_wafer_s + sum(projector.step_s(p + i) for i in range(1, tokens))
            self._wafer = projector.wafer
        if wafer_s and not projected:  # a stream ended before its last chunk (an edit stops at the closed block)
            projected = dict(wafer_ttft_s=first_wafer_s, wafer_total_s=wafer_s, wafer=self._wafer,
                             dtype=projector.dtype if projector is not None else "",
                             wafer_tok_per_s=(tokens - 1) / (wafer_s - first_wafer_s) if wafer_s > first_wafer_s
                             else 0.0)
        stats = Stats(prompt_tokens=prompt_tokens, tokens=tokens, ttft_s=first_s,
                      tok_per_s=rate, total_s=total, wafer_ttft_s=projected.get("wafer_ttft_s", 0.0),
                      wafer_tok_per_s=projected.get("wafer_tok_per_s", 0.0),
                      wafer_total_s=projected.get("wafer_total_s", 0.0), wafer=projected.get("wafer") or "remote",
                      dtype=projected.get("dtype", ""), drafted=projected.get("drafted", 0),
                      accepted=projected.get("accepted", 0))
        yield Done(text, (), reason, stats)


class _Cancelled(Exception):
    pass


_END = object()  # the helper thread read the whole response


# -- a connection cancel() can shut from another thread ---------------------------------------------------------

_local = threading.local()  # .stream: the RemoteStream whose request this thread is sending or reading


def _interruptible_client():
    """openai's default HTTP client, its connections made through _Connection. httpx takes no network backend, so
    the backend is swapped on the pools its transports hold (httpcore's documented extension point)."""
    import openai

    client = openai.DefaultHttpxClient()
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if pool is not None:  # a proxy's transport has one too; None: a mount that bypasses proxies
            pool._network_backend = _Backend(pool._network_backend)
    return client


class _Backend:
    """httpcore's NetworkBackend, each connection wrapped in a _Connection."""

    def __init__(self, backend):
        self._backend = backend

    def connect_tcp(self, *args, **kw):
        return _Connection(self._backend.connect_tcp(*args, **kw))

    def connect_unix_socket(self, *args, **kw):
        return _Connection(self._backend.connect_unix_socket(*args, **kw))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _Connection:
    """httpcore's NetworkStream, telling the RemoteStream that sends or reads through it (a keep-alive connection
    serves one request after another) so that its cancel() can shut the socket: a thread blocked in recv() wakes
    at once, which closing the socket from another thread does not do."""

    def __init__(self, stream):
        self._stream = stream

    def _claim(self) -> None:
        owner = getattr(_local, "stream", None)
        if owner is not None:
            owner._claim(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._claim()
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._claim()
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, *args, **kw) -> "_Connection":
        return _Connection(self._stream.start_tls(*args, **kw))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)

    def shut(self) -> None:
        sock = self._stream.get_extra_info("socket")
        try:  # the plain socket's shutdown: an SSLSocket's own drops its TLS state under a reading thread
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, TypeError):  # already closed, or no socket
            pass


# -- errors -----------------------------------------------------------------------------------------------------


def explain(err: BaseException, endpoint: Endpoint, tokens: int = 0) -> str:
    """One sentence for a failed request: what happened, where, and what to do."""
    import openai

    where = f"{endpoint.base_url}"
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        detail = _detail(err)
        if status == 401:
            if not endpoint.key_source:
                key = "the endpoint names no key: give it api_key_env or api_key_keyring"
            elif endpoint.api_key_env and not os.environ.get(endpoint.api_key_env) and not endpoint.api_key_keyring:
                key = f"${endpoint.api_key_env} is not set"
            else:
                key = f"check the key in {endpoint.key_source}"
            return f"{where} refused the API key (401 Unauthorized): {key}"
        if status == 403:
            return f"{where} refused the request (403 Forbidden: the key may not use {endpoint.model!r}){detail}"
        if status == 404:
            return (f"{where} has no model {endpoint.model!r} (404 Not Found){detail}; GET {where}/models lists "
                    "the models it serves")
        if status == 429:
            after = err.response.headers.get("retry-after")
            wait = f"; retry after {after} s" if after else ""
            return f"{where} is rate limiting or overloaded (429 Too Many Requests){wait}{detail}"
        if status >= 500:
            return f"{where} failed ({status} server error){detail}"
        return f"{where} refused the request ({status}){detail}"
    if isinstance(err, openai.APITimeoutError):
        return (f"{where} timed out: no connection within {TIMEOUTS['connect']:g} s or no answer within "
                f"{TIMEOUTS['read']:g} s")
    if tokens and _is_cut(err):
        return f"the stream from {where} was cut after {tokens} chunks ({_root(err)}); the cell is unchanged"
    if isinstance(err, openai.APIConnectionError) or _is_cut(err):
        root = _root(err)
        if isinstance(root, socket.gaierror) or "name or service not known" in str(root).lower() \
                or "nodename nor servname" in str(root).lower() or "getaddrinfo" in str(root).lower():
            return f"cannot resolve the host of {where} (DNS lookup failed: {root})"
        if isinstance(root, ssl.SSLError) or "ssl" in type(root).__name__.lower() or "certificate" in str(root):
            return f"TLS failed with {where} ({root}); check the URL's scheme (http or https) and the certificate"
        if isinstance(root, ConnectionRefusedError) or "refused" in str(root).lower():
            return f"nothing is listening at {where} (connection refused): is the server running?"
        if tokens == 0 and _is_cut(err):
            return f"{where} closed the connection before answering ({root})"
        return f"cannot reach {where} ({type(root).__name__}: {root})"
    if isinstance(err, openai.APIError):  # an error event inside the stream
        return f"{where} reported an error mid-stream after {tokens} chunks: {err.message}"
    return f"the request to {where} failed ({type(err).__name__}: {err})"


def _detail(err) -> str:
    body = getattr(err, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
    return f": {str(message)[:200]}" if message else ""


def _root(err: BaseException) -> BaseException:
    """The innermost cause (the socket or TLS error under httpx's and openai's wrappers)."""
    seen = set()
    while (err.__cause__ or err.__context__) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return err


def _is_cut(err: BaseException) -> bool:
    """Whether the connection broke while reading (by name: the openai client's HTTP library varies by version)."""
    chain, e = [], err
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return any(type(e).__name__ in ("RemoteProtocolError", "ReadError", "IncompleteRead") for e in chain)
