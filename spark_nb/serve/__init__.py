"""`spark-nb serve`: the in-process engine behind an OpenAI-compatible HTTP server (tornado).

    spark-nb serve [--model M] [--host 127.0.0.1] [--port 8000] [--api-key-env NAME] [--queue 8]

Endpoints: GET /v1/models, POST /v1/chat/completions and /v1/completions, streamed (server-sent events, as the
`openai` client reads them) or not. Every answer carries the emulator's numbers as an extra field `spark_nb`: on
each streamed chunk the measured host time and the projected wafer time of that token (`host_s`, `wafer_s`), on
the last chunk (and a non-streamed answer) the request's Stats (`wafer_ttft_s`, `wafer_tok_per_s`, ...).

Scheduling: one engine runs one request at a time, so requests wait in one first-in, first-out queue served by one
worker thread, in the order they arrived; a request is refused at once with 429 and `Retry-After: 1` when `queue`
requests are already waiting or running. A client that goes away (a closed stream) cancels its request, queued or
running (within one token).

Chat with an instruct model renders the messages with its chat template. The built-in model edits code: it takes
the last user message in spark-nb's own chat layout (`spark_nb.edits.prompt.chat_messages`: earlier cells and the
cell in fenced blocks, then "Instruction: ..."), makes the edit with its edit format (the model itself: exact
refactors are the client's business), and answers the new cell in one ```python block. Its edit format writes
lines out of order, so that answer arrives in one chunk at the end (empty chunks carry the progress meanwhile);
/v1/completions streams any model token by token.
"""
from __future__ import annotations

from .app import Server, make_app, serve, start_in_thread

__all__ = ["Server", "make_app", "serve", "start_in_thread"]
