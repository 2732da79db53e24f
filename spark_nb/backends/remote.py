"""A model behind an OpenAI-compatible server, driven through the `openai` client with streaming.

The engine offers what the edit driver's chat path uses: `remote = True`, `stream(messages | prompt, ...)` -> a
`RemoteStream` of Token events and one Done with Stats, and `RemoteStream.cancel()`, which closes the HTTP stream
at once. Times are measured here (seconds since the request was sent); there is no wafer projection for a model
whose shape is unknown, so the wafer fields are 0 and `Stats.wafer` says "remote" — unless the server projects
them itself: `spark-nb serve` sends each token's projected wafer time and the request's projected stats as an
extra field `spark_nb`, and those are kept (`Stats.wafer` then names the server's wafer preset).

A request that fails does not raise: its stream ends with Done(reason="error") and `RemoteStream.error` says what
went wrong in one sentence (connection refused, unknown host, TLS, key refused, no such model, rate limited, the
server failed, the stream was cut). API keys come from an environment variable (`api_key_env`): the key itself is
never stored on the engine, in its repr or in a message.
"""
from __future__ import annotations

import os
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
ENDPOINTS: dict[str, dict] = {}  # name -> {"base_url", "model", "api_key_env"}: the notebook's c.Spark.endpoints


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # e.g. http://localhost:8000/v1
    model: str  # the name the server knows the model by
    api_key_env: str | None = None  # the environment variable holding the key (None: no key)
    name: str = ""  # the name it was looked up by, when it was

    @classmethod
    def parse(cls, spec) -> "Endpoint":
        """From "openai:MODEL@URL", a name in ENDPOINTS, or a dict with base_url, model and api_key_env."""
        if isinstance(spec, Endpoint):
            return spec
        name = ""
        if isinstance(spec, str) and spec in ENDPOINTS:
            name, spec = spec, ENDPOINTS[spec]
        if isinstance(spec, dict):
            unknown = set(spec) - {"base_url", "model", "api_key_env"}
            if unknown or not spec.get("base_url") or not spec.get("model"):
                raise ValueError(f"an endpoint is a dict with base_url, model and optionally api_key_env; got keys "
                                 f"{sorted(spec)}")
            return cls(str(spec["base_url"]).rstrip("/"), str(spec["model"]), spec.get("api_key_env"), name)
        if not isinstance(spec, str) or not spec.startswith(PREFIX):
            raise ValueError(f"not a remote model: {spec!r} (write openai:MODEL@http://host:port/v1)")
        rest = spec[len(PREFIX):]
        at = max(rest.rfind("@http://"), rest.rfind("@https://"))
        if at <= 0:
            raise ValueError(f"{spec!r}: write openai:MODEL@http://host:port/v1 (the server's base URL after @)")
        return cls(rest[at + 1:].rstrip("/"), rest[:at])

    def __str__(self) -> str:
        return self.name or f"{PREFIX}{self.model}@{self.base_url}"


def is_remote(spec) -> bool:
    """Whether `spec` names a remote model ("openai:...", a named endpoint or an endpoint dict)."""
    return (isinstance(spec, (dict, Endpoint)) or isinstance(spec, str) and (spec.startswith(PREFIX)
                                                                              or spec in ENDPOINTS))


def remote_engine(spec) -> "RemoteEngine":
    return RemoteEngine(Endpoint.parse(spec))


class RemoteEngine:
    """A remote chat model with the engine's streaming surface (no tokenizer, no session, no wafer)."""

    remote = True
    tokenizer = None
    spec = None  # no WaferSpec: nothing is projected
    dtype = ""

    def __init__(self, endpoint: Endpoint):
        import openai

        self.endpoint = endpoint
        self.path = str(endpoint)  # what names it where a loaded engine's folder would (the panel's model picker)
        key = os.environ.get(endpoint.api_key_env, "") if endpoint.api_key_env else ""
        # the client needs some key; servers without one ignore the header. The key stays inside the client.
        self._client = openai.OpenAI(base_url=endpoint.base_url, api_key=key or "none", max_retries=0,
                                     timeout=openai.Timeout(**TIMEOUTS))

    def __repr__(self) -> str:
        key = f", key from ${self.endpoint.api_key_env}" if self.endpoint.api_key_env else ""
        return f"RemoteEngine({self.endpoint.model!r} at {self.endpoint.base_url}{key})"

    def count_tokens(self, text: str) -> int:
        """An estimate without the tokenizer (about 3 characters a token for code), for token budgets."""
        return len(text) // 3 + 1

    def stream(self, prompt: str | Sequence[dict], max_new_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] | str | None = None,
               ignore_eos: bool = False, **ignored) -> "RemoteStream":
        """Chat messages go to /chat/completions, a text prompt to /completions; either way streamed. ignore_eos
        is sent as vLLM's extra parameter (vLLM, SGLang and spark-nb serve take it; only sent when asked).
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
        else:
            create = lambda: self._client.completions.create(prompt=prompt, **args)  # noqa: E731
        return RemoteStream(create, chat, self.endpoint)


class RemoteStream:
    """The events of one remote request. Iterate it; `cancel()` closes the HTTP stream at once (any thread)."""

    def __init__(self, create, chat: bool, endpoint: Endpoint):
        self._create, self._chat, self._endpoint = create, chat, endpoint
        self._response = None
        self._cancelled = threading.Event()
        self.error: str | None = None  # set when the stream ended with Done(reason="error"): what went wrong
        self._wafer = "remote"  # the wafer preset a projecting server names
        self._events = self._generate()

    def __iter__(self) -> "RemoteStream":
        return self

    def __next__(self) -> Token | Done:
        return next(self._events)

    def cancel(self) -> None:
        self._cancelled.set()
        response = self._response
        if response is not None:
            try:
                response.close()  # the server sees the connection close and stops generating
            except Exception:  # noqa: BLE001 - closing an already broken stream
                pass

    def close(self) -> None:
        self.cancel()
        self._events.close()

    def _generate(self) -> Iterator[Token | Done]:
        t0 = time.perf_counter()
        text, n, first_s, last_s = "", 0, 0.0, 0.0
        reason, usage = "length", None
        wafer_s = first_wafer_s = 0.0  # only a server that projects (spark-nb serve) sends these ...
        projected: dict = {}  # ... and its request's projected stats, on its last chunk
        try:
            if self._cancelled.is_set():
                raise _Cancelled
            self._response = self._create()
            if self._cancelled.is_set():  # cancelled while the request was being sent
                self._response.close()
                raise _Cancelled
            for chunk in self._response:
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                extra = (chunk.model_extra or {}).get("spark_nb")  # spark-nb serve: the wafer the server projects
                if extra:
                    wafer_s = extra.get("wafer_s", wafer_s)
                    self._wafer = extra.get("wafer", self._wafer)
                    projected = extra if "wafer_tok_per_s" in extra else projected
                for choice in chunk.choices or ():
                    delta = (choice.delta.content if self._chat else choice.text) or ""
                    if delta:
                        n += 1
                        last_s = time.perf_counter() - t0
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
                reason = "cancelled"  # closing the stream from another thread breaks the read under way
            else:
                reason, self.error = "error", explain(err, self._endpoint, n)
        finally:
            if self._response is not None and reason != "error":
                self._response.close()
        total = time.perf_counter() - t0
        tokens = getattr(usage, "completion_tokens", None) or n
        rate = (n - 1) / (last_s - first_s) if n > 1 and last_s > first_s else 0.0
        if wafer_s and not projected:  # a stream ended before its last chunk (an edit stops at the closed block)
            projected = dict(wafer_ttft_s=first_wafer_s, wafer_total_s=wafer_s, wafer=self._wafer,
                             wafer_tok_per_s=(n - 1) / (wafer_s - first_wafer_s) if wafer_s > first_wafer_s else 0.0)
        stats = Stats(prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0, tokens=tokens, ttft_s=first_s,
                      tok_per_s=rate, total_s=total, wafer_ttft_s=projected.get("wafer_ttft_s", 0.0),
                      wafer_tok_per_s=projected.get("wafer_tok_per_s", 0.0),
                      wafer_total_s=projected.get("wafer_total_s", 0.0), wafer=projected.get("wafer") or "remote",
                      dtype=projected.get("dtype", ""), drafted=projected.get("drafted", 0),
                      accepted=projected.get("accepted", 0))
        yield Done(text, (), reason, stats)


class _Cancelled(Exception):
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
            key = (f"${endpoint.api_key_env} is not set" if endpoint.api_key_env and not
                   os.environ.get(endpoint.api_key_env) else f"check ${endpoint.api_key_env or 'the endpoint'}'s "
                   "api_key_env")
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
