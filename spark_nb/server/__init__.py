"""spark-nb's Jupyter server extension: inline completion served by one warm engine per model.

Enabled on install (pyproject ships jupyter-config/server-config/spark_nb.json into etc/jupyter/
jupyter_server_config.d); `jupyter server extension list` shows it as spark_nb.server. Endpoints, under the server's
base URL, all behind Jupyter's own authentication (a token or the login cookie; XSRF and origin rules as for the
server's own sockets and POSTs):

    GET  spark-nb/socket            a WebSocket, one per browser tab, for as long as the tab is open
    POST spark-nb/complete          the same completion over one HTTP request (newline-delimited JSON, streamed)
    GET  spark-nb/engines           the engines: {model: {state, loads, error}}

Messages (JSON) on the socket; the POST takes a request's fields and answers with the same token/done/error lines:

    -> {"type": "request", "id": 7, "prefix": "...", "suffix": "...", "context": "earlier cells",
        "max_tokens": 48, "model": ""}        a new request cancels the socket's request in flight
    -> {"type": "cancel", "id": 7}
    <- {"type": "token", "id": 7, "text": "..."}   ... as the engine decodes them
    <- {"type": "done", "id": 7, "reason": "eos|length|boundary|cancelled", "stats": {...} | null,
        "server_first_token_ms": 4.2}       the engine's Stats; the request's arrival -> its first token sent
    <- {"type": "error", "id": 7, "message": "spark-nb could not load ...: ..."}   (instead of done)
"""
from __future__ import annotations


def _jupyter_server_extension_points():
    return [{"module": "spark_nb.server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from .handlers import setup

    setup(serverapp.web_app)
    serverapp.log.info("spark-nb: inline completion at %sspark-nb/socket", serverapp.base_url)
