"""The Tornado handlers: the completion WebSocket, the same completion over one HTTP POST, a no-op POST (the
transports' own round trip), the engines' status.

Authentication is Jupyter's own: `JupyterHandler` resolves the user from the token or the login cookie,
`ws_authenticated` refuses a socket without one (403), `WebSocketMixin.check_origin` applies the server's origin
rules, and `APIHandler` checks XSRF on a cookie-authenticated POST.
"""
from __future__ import annotations

import asyncio
import json

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .engines import Engines

SETTING = "spark_nb_engines"
MAX_TOKENS = 256  # a request may ask for fewer; an inline suggestion never needs more


def _request(msg: dict) -> dict:
    """The fields of a completion request, checked (a bad one raises ValueError with what is wrong)."""
    fields = {k: msg.get(k, "") for k in ("prefix", "suffix", "context")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise ValueError("prefix, suffix and context must be strings")
    max_tokens = msg.get("max_tokens", 48)
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
        raise ValueError(f"max_tokens must be an integer from 1 to {MAX_TOKENS}")
    model = msg.get("model") or ""
    if not isinstance(model, str):
        raise ValueError("model must be a string (a path or a name `spark-nb models` lists)")
    return {"model": model, **fields, "max_tokens": max_tokens}


class CompletionSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """One per browser tab: requests in, tokens out. A new request cancels the one in flight."""

    job = None

    @property
    def engines(self) -> Engines:
        return self.settings[SETTING]

    @ws_authenticated
    async def get(self, *args, **kwargs):
        res = super().get(*args, **kwargs)
        if res is not None:
            await res

    def open(self, *args, **kwargs):
        # Each token is one small frame: send it now, not after the previous frame's ACK (Nagle's algorithm)
        self.set_nodelay(True)
        return super().open(*args, **kwargs)

    def on_message(self, raw) -> None:
        try:
            msg = json.loads(raw)
            kind, id = msg.get("type"), msg.get("id")
        except (ValueError, AttributeError):
            return self._send({"type": "error", "id": None, "message": "spark-nb: a message is one JSON object"})
        if kind == "cancel":
            if self.job is not None and self.job.id == id:
                self.job.cancel()
            return
        if kind == "ping":  # answered at once: the transport's own round trip (bench/completion_latency.py)
            return self._send({"type": "pong", "id": id})
        if kind != "request":
            return self._send({"type": "error", "id": id, "message": f"spark-nb: unknown message type {kind!r}"})
        if self.job is not None:
            self.job.cancel()  # stale: the user typed again
        try:
            req = _request(msg)
        except ValueError as e:
            return self._send({"type": "error", "id": id, "message": f"spark-nb: {e}"})
        self.job = self.engines.complete(req["model"], id, req["prefix"], req["suffix"], req["context"],
                                         req["max_tokens"], self._send)

    def _send(self, msg: dict) -> None:
        if self.ws_connection is None:
            return
        try:
            self.write_message(json.dumps(msg))
        except WebSocketClosedError:
            pass

    def on_close(self) -> None:
        if self.job is not None:
            self.job.cancel()


class CompletionHTTP(APIHandler):
    """The same completion over one POST each, streamed as newline-delimited JSON (the latency comparison)."""

    job = None

    @web.authenticated
    async def post(self):
        try:
            req = _request(self.get_json_body() or {})
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        queue: asyncio.Queue = asyncio.Queue()
        self.job = self.settings[SETTING].complete(req["model"], None, req["prefix"], req["suffix"],
                                                   req["context"], req["max_tokens"], queue.put_nowait)
        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        while True:
            msg = await queue.get()
            try:
                self.write(json.dumps(msg) + "\n")
                await self.flush()
            except StreamClosedError:
                self.job.cancel()
                return
            if msg["type"] in ("done", "error"):
                break

    def on_connection_close(self) -> None:
        if self.job is not None:
            self.job.cancel()


class PingHandler(APIHandler):
    """A POST answered at once: the per-request transport's own round trip beside the socket's ping. With
    `?close=1` the reply says `Connection: close`, so the browser opens a new connection for its next request (a
    page cannot refuse keep-alive itself); `port` is the client's, to count the connections used."""

    @web.authenticated
    def post(self):
        if self.get_query_argument("close", ""):
            self.set_header("Connection", "close")
        self.finish(json.dumps({"type": "pong", "port": self.request.connection.stream.socket.getpeername()[1]}))


class EnginesHandler(APIHandler):
    @web.authenticated
    def get(self):
        self.finish(json.dumps(self.settings[SETTING].status()))


def setup(web_app, engines: Engines | None = None) -> None:
    web_app.settings[SETTING] = engines or Engines()
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [
        (url_path_join(base, "spark-nb", "socket"), CompletionSocket),
        (url_path_join(base, "spark-nb", "complete"), CompletionHTTP),
        (url_path_join(base, "spark-nb", "ping"), PingHandler),
        (url_path_join(base, "spark-nb", "engines"), EnginesHandler),
    ])

