"""spark-nb's Jupyter server extension (spark_nb.server): inline completion from one warm engine per model.

In process (a scripted engine, 10 ms a token): tokens stream and stop at a sensible boundary; a new request cancels
the one in flight within one token; one load serves every socket. Against a real `jupyter server` (the extension
enabled by the config file the wheel installs, the built-in model): a socket or POST without the token is refused,
and so is a socket with the login cookie from a page of another origin (Jupyter's own rules: a token-authenticated
request skips the origin check); two sockets share one load; a model that cannot load answers each request with
one clear message.
"""
from __future__ import annotations

import asyncio
import http.cookiejar
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from live_server import running
from spark_nb.server.complete import FIM, Boundary, Suggestion, fim_order, has_fim, held, past_held, prompt
from spark_nb.server.engines import Engines

ROOT = Path(__file__).resolve().parent.parent


# -- the prompt and the boundary ------------------------------------------------------------------------------

class _Tok:
    def __init__(self, special=()):
        self.special = set(special)

    def token_to_id(self, t):
        return 1 if t in self.special else None


def test_prompt_is_fim_only_where_the_tokenizer_has_fim_tokens():
    assert not has_fim(_Tok()) and has_fim(_Tok(FIM))
    assert prompt(_Tok(), "x = ", "\nprint(x)", "import os") == "import os\n\nx = "
    assert prompt(_Tok(FIM), "x = ", "\nprint(x)", "import os") == (
        "<|fim_prefix|>import os\n\nx = <|fim_suffix|>\nprint(x)<|fim_middle|>")  # PSM: a tokenizer says nothing


def test_prompt_follows_the_models_fim_order():
    spm = _Tok(FIM)
    spm.fim_order = "spm"  # tokenizer_config.json's "fim_order", as spark_nb.model.Tokenizer reads it
    assert fim_order(_Tok()) is None and fim_order(_Tok(FIM)) == "psm" and fim_order(spm) == "spm"
    assert prompt(spm, "x = ", "\nprint(x)", "import os") == (
        "<|fim_prefix|><|fim_suffix|>\nprint(x)<|fim_middle|>import os\n\nx = ")  # the middle continues the prefix
    # the prompt ends in the prefix: a line start's indentation is held back as in a continuation
    assert held(prompt(spm, "def f(xs):\n    ", "\n    return xs")) == (
        "<|fim_prefix|><|fim_suffix|>\n    return xs<|fim_middle|>def f(xs):\n", "    ")
    assert prompt(spm, "p" * 5000, "s" * 2000) == f"{FIM[0]}{FIM[1]}{'s' * 1000}{FIM[2]}{'p' * 4000}"  # the cuts


def test_boundary_blank_line_dedent_and_single_line():
    body = Boundary.at("def f(xs):\n    ", "")  # a line's start: the lines of the block after it too
    assert body.shown("total = 0") == (9, False)
    assert body.shown("total = 0\n    ") == (9, False)  # a new line's indentation is held back until known
    assert body.shown("total = 0\n    return total") == (26, False)
    assert body.shown("total = 0\n    return total\n\n") == (26, True)  # a blank line ends it
    assert body.shown("total = 0\n    return total\ndef g") == (26, True)  # ... and so does a dedent
    opened = Boundary.at("def f(xs):", "")  # after a block's colon: its body
    assert opened.shown("\n    return xs\n\n") == (14, True)
    value = Boundary.at("def f(xs):\n    total = ", "")  # inside a line, nothing after it: that line only
    assert value.shown("sum(xs)") == (7, False) and value.shown("sum(xs)\n    return total") == (7, True)
    mid = Boundary.at("print(", ")")  # text after the cursor on its line: that line only
    assert mid.shown("x") == (1, False) and mid.shown("x, y\nz") == (4, True)
    assert mid.shown("values)") == (6, True)  # the model writes the rest of the line again: it ends there
    total = Boundary.at("total = sum(", "), 2)\n")
    assert total.shown("values") == (6, False) and total.shown("values)") == (6, False)  # `)` may begin `), 2)`
    assert total.shown("values) + 1") == (11, False) and total.shown("values), 2)") == (6, True)


def test_a_suggestion_shows_what_follows_the_held_indentation_up_to_its_boundary():
    pieces = ["   ", " return", " sum(xs", ")\n", "\n", "print(1)"]  # the model writes the held "    " itself
    s = Suggestion(_Tok(), "def f(xs):\n    ")
    assert s.text == "def f(xs):\n"  # the prompt stops at the line break
    steps = [s.add(p) for p in pieces[:5]]
    assert steps == [("", False), ("return", False), (" sum(xs", False), (")", False), ("", True)]
    assert s.shown == "return sum(xs)"  # the new line held back, then a blank line ends it, never shown
    elsewhere = Suggestion(_Tok(), "def f(xs):\n    ")
    assert elsewhere.add("\n") == ("", True) and elsewhere.shown == ""  # no indentation first: nothing to suggest
    tail = Suggestion(_Tok(), "total = sum(", "), 2)\n")
    assert [tail.add(p) for p in ("values", ")", ", 2)")] == [("values", False), ("", False), ("", True)]
    assert tail.shown == "values"  # `)` held back as the possible start of the rest, which it was


# -- Engines, in process --------------------------------------------------------------------------------------

class _Stream:
    def __init__(self, pieces, delay):
        self.pieces, self.delay, self.cancelled, self.made = pieces, delay, False, 0

    def cancel(self):
        self.cancelled = True

    def __iter__(self):
        for piece in self.pieces:
            if self.cancelled:
                break
            time.sleep(self.delay)
            self.made += 1
            yield type("Token", (), {"text": piece})()
        stats = type("Stats", (), {"as_dict": lambda self: {"tokens": 0}})()
        yield type("Done", (), {"reason": "cancelled" if self.cancelled else "length", "stats": stats,
                                "text": ""})()


class _Engine:
    tokenizer = _Tok()

    def __init__(self, pieces, delay=0.01):
        self.pieces, self.delay, self.streams, self.prompts = pieces, delay, [], []

    def stream(self, text, max_new_tokens):
        self.prompts.append(text)
        s = _Stream(self.pieces[:max_new_tokens], self.delay)
        self.streams.append(s)
        return s


def _collect(engines, jobs):
    """Run `jobs(engines, send)` on an event loop; return every message sent until each request ended."""
    async def main():
        seen, finished = [], set()

        def send(msg):
            seen.append((time.perf_counter(), msg))
            if msg["type"] in ("done", "error"):
                finished.add(msg["id"])

        ids = await jobs(engines, send)
        end = time.monotonic() + 20
        while not ids <= finished and time.monotonic() < end:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # nothing more may come after a request's last message
        return seen
    return asyncio.run(main())


def test_tokens_stream_and_stop_at_the_block_end():
    engine = _Engine(["    total", " = sum", "(xs)", "\n", "    return", " total", "\n", "print", "(1)", "x"] * 3)
    engines = Engines(load=lambda model: engine)

    async def jobs(engines, send):  # a line's start in a block: the block's lines
        engines.complete("", 1, "def f(xs):\n    ", "", "import os", 48, send)
        return {1}

    seen = [m for _, m in _collect(engines, jobs)]
    assert "".join(m["text"] for m in seen if m["type"] == "token") == "total = sum(xs)\n    return total"
    assert seen[-1]["type"] == "done" and seen[-1]["reason"] == "boundary"
    assert engine.prompts == ["import os\n\ndef f(xs):\n"]  # the line's indentation held back for the model
    assert engine.streams[0].made <= 9  # stopped within a token of the dedent


def test_a_prompt_never_ends_in_a_lines_indentation():
    """held: the indentation of an empty last line is left for the model to write (a byte-level BPE merges it with
    the line break into a token models rarely see before a word), and the suggestion is what comes after it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    assert held("def f(xs):\n    ") == ("def f(xs):\n", "    ")
    assert held("if x:\n\t") == ("if x:\n", "\t")
    for text in ("def f(xs):\n", "x = ", "    ", "def f(xs):\n    total = ", "<|fim_prefix|>a\n  <|fim_suffix|>"):
        assert held(text) == (text, "")  # nothing to hold: not a line of spaces alone after a line break
    assert [past_held(t, "    ") for t in ("", "  ", "    ", "    ret", "\n", "x", "  x")] == \
        ["", "", "", "ret", None, None, None]
    # what it is for, with a GPT-2-style byte-level pre-tokenizer (the built-in model's and Qwen's kind): the
    # indentation before a word is its own piece and the word takes the last space
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    pieces = [p for p, _ in bpe.pre_tokenizer.pre_tokenize_str("def f():\n    return 1")]
    assert pieces[-3:] == ["ĊĠĠĠ", "Ġreturn", "Ġ1"]  # never "ĊĠĠĠĠ" before a word
    assert [p for p, _ in bpe.pre_tokenizer.pre_tokenize_str("def f():\n    ")][-1] == "ĊĠĠĠĠ"


def test_the_suggestion_at_a_lines_start_follows_the_indentation_the_model_writes():
    engine = _Engine(["    ", "return", " total", "\n", "\n", "x"])
    engines = Engines(load=lambda model: engine)

    async def jobs(engines, send):
        engines.complete("", 1, "def f(xs):\n    total = sum(xs)\n    ", "", "", 48, send)
        return {1}

    seen = [m for _, m in _collect(engines, jobs)]
    assert engine.prompts == ["def f(xs):\n    total = sum(xs)\n"]  # the indentation held back
    assert "".join(m["text"] for m in seen if m["type"] == "token") == "return total"
    dedent = _Engine(["def", " g", "():"])  # the model left the block: nothing to suggest there
    engines = Engines(load=lambda model: dedent)

    async def jobs2(engines, send):
        engines.complete("", 2, "def f(xs):\n    ", "", "", 48, send)
        return {2}

    seen = [m for _, m in _collect(engines, jobs2)]
    assert not [m for m in seen if m["type"] == "token"] and seen[-1]["reason"] == "boundary"
    assert dedent.streams[0].made == 1  # stopped at the first token that was not the indentation


def test_a_new_request_cancels_the_one_in_flight_within_one_token():
    engine = _Engine(["x"] * 200, delay=0.01)
    engines = Engines(load=lambda model: engine)
    marks = {}

    async def jobs(engines, send):
        first = engines.complete("", 1, "a = ", "", "", 200, send)
        await asyncio.sleep(0.1)
        first.cancel()  # what the socket does when request 2 arrives
        marks["cancel"] = time.perf_counter()
        engines.complete("", 2, "b = ", "", "", 5, send)
        return {1, 2}

    seen = _collect(engines, jobs)
    done1 = next(m for _, m in seen if m["type"] == "done" and m["id"] == 1)
    assert done1["reason"] == "cancelled"
    late = [t for t, m in seen if m["type"] == "token" and m["id"] == 1 and t > marks["cancel"]]
    assert len(late) <= 1  # at most the token being decoded when the cancel came
    assert len([m for _, m in seen if m["type"] == "token" and m["id"] == 2]) == 5
    assert engine.streams[0].made < 20


def test_one_engine_load_serves_every_request():
    loads = []

    def load(model):
        time.sleep(0.2)
        loads.append(model)
        return _Engine(["y"])

    engines = Engines(load=load)

    async def jobs(engines, send):
        for i in range(4):  # four sockets asking before the model is loaded, then one after
            engines.complete("m", i, "z = ", "", "", 4, send)
        await asyncio.sleep(0.4)
        engines.complete("m", 4, "z = ", "", "", 4, send)
        return set(range(5))

    seen = [m for _, m in _collect(engines, jobs)]
    assert loads == ["m"] and engines.loads == {"m": 1}
    assert sum(m["type"] == "done" for m in seen) == 5


def test_a_model_that_fails_to_load_gives_one_clear_error():
    def load(model):
        raise FileNotFoundError(f"no model at {model}")

    engines = Engines(load=load)

    async def jobs(engines, send):
        engines.complete("/nowhere/model", 1, "a", "", "", 4, send)
        return {1}

    seen = [m for _, m in _collect(engines, jobs)]
    assert seen == [{"type": "error", "id": 1, "model": "/nowhere/model",
                     "message": "spark-nb could not load /nowhere/model: no model at /nowhere/model"}]
    assert engines.status()["/nowhere/model"]["state"] == "failed"


# -- a real jupyter server ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    with running("server", root) as url:
        yield url, root


async def _socket_messages(url, requests, token="tok", headers=None):
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(
        url.replace("http", "ws") + "/spark-nb/socket" + (f"?token={token}" if token else ""), headers=headers))
    out = []
    for req in requests:
        ws.write_message(json.dumps(req))
    ended = 0
    while ended < len(requests):
        msg = json.loads(await asyncio.wait_for(ws.read_message(), 120))
        out.append(msg)
        ended += msg["type"] in ("done", "error")
    ws.close()
    return out


def _get(url):
    return json.loads(urllib.request.urlopen(url, timeout=30).read())


def test_the_extension_is_enabled_by_the_installed_config(server):
    config = json.loads((ROOT / "jupyter-config" / "server-config" / "spark_nb.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"] == {"spark_nb.server": True}
    assert "jupyter-config/server-config/spark_nb.json" in (ROOT / "pyproject.toml").read_text()
    url, _ = server
    assert isinstance(_get(f"{url}/spark-nb/engines?token=tok"), dict)


def test_refused_without_the_token_or_from_another_origin(server):
    from tornado.httpclient import HTTPClientError

    url, _ = server
    with pytest.raises(HTTPClientError) as refused:
        asyncio.run(_socket_messages(url, [{"type": "request", "id": 1, "prefix": "x"}], token=None))
    assert refused.value.code == 403
    # The login cookie (what a browser tab holds): accepted from the server's own origin, refused from another
    jar = http.cookiejar.CookieJar()
    urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)).open(f"{url}/api/status?token=tok")
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    assert cookie
    ok = asyncio.run(_socket_messages(url, [{"type": "request", "id": 1, "prefix": "x = ", "max_tokens": 2}],
                                      token=None, headers={"Cookie": cookie, "Origin": url}))
    assert ok[-1]["type"] == "done", ok
    with pytest.raises(HTTPClientError) as refused:
        asyncio.run(_socket_messages(url, [{"type": "request", "id": 1, "prefix": "x"}], token=None,
                                     headers={"Cookie": cookie, "Origin": "http://elsewhere.example"}))
    assert refused.value.code == 403
    post = urllib.request.Request(f"{url}/spark-nb/complete", data=b'{"prefix": "x"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=30)
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/spark-nb/engines", timeout=30)
    assert refused.value.code == 403


def test_two_sockets_share_one_warm_engine_and_post_answers_the_same(server):
    url, _ = server
    req = {"type": "request", "prefix": "def add(a, b):\n    return", "suffix": "", "context": "",
           "max_tokens": 8}

    async def two():
        return await asyncio.gather(_socket_messages(url, [{**req, "id": 1}]),
                                    _socket_messages(url, [{**req, "id": 2}]))

    a, b = asyncio.run(two())
    for msgs in (a, b):
        assert msgs[-1]["type"] == "done" and msgs[-1]["stats"]["tokens"] >= 1, msgs
    text = lambda msgs: "".join(m["text"] for m in msgs if m["type"] == "token")  # noqa: E731
    assert text(a) == text(b)  # greedy: the same suggestion for the same text
    assert _get(f"{url}/spark-nb/engines?token=tok")["builtin"] == {"state": "ready", "loads": 1, "error": None}

    post = urllib.request.Request(f"{url}/spark-nb/complete?token=tok", method="POST",
                                  data=json.dumps(req).encode(), headers={"Content-Type": "application/json"})
    lines = [json.loads(x) for x in urllib.request.urlopen(post, timeout=60).read().decode().splitlines()]
    assert text(lines) == text(a) and lines[-1]["type"] == "done"
    assert _get(f"{url}/spark-nb/engines?token=tok")["builtin"]["loads"] == 1


def test_a_ping_is_answered_at_once_on_the_socket_and_over_post(server):
    url, _ = server

    async def ping():
        from tornado.websocket import websocket_connect

        ws = await websocket_connect(url.replace("http", "ws") + "/spark-nb/socket?token=tok")
        ws.write_message(json.dumps({"type": "ping", "id": "p1"}))
        reply = json.loads(await asyncio.wait_for(ws.read_message(), 30))
        ws.close()
        return reply

    assert asyncio.run(ping()) == {"type": "pong", "id": "p1"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/spark-nb/ping?token=tok&close=1", method="POST",
                                                       data=b""), timeout=30) as reply:
        assert reply.headers["Connection"] == "close"
        assert json.loads(reply.read())["type"] == "pong"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{url}/spark-nb/ping", method="POST", data=b""), timeout=30)
    assert refused.value.code == 403


def test_a_model_that_cannot_load_answers_with_one_message(server):
    url, root = server
    msgs = asyncio.run(_socket_messages(url, [{"type": "request", "id": 9, "prefix": "x = ",
                                               "model": str(root / "no-such-model")}]))
    assert len(msgs) == 1 and msgs[0]["type"] == "error" and msgs[0]["id"] == 9
    assert msgs[0]["message"].startswith(f"spark-nb could not load {root / 'no-such-model'}: ")


def test_a_new_request_on_a_socket_cancels_its_request_in_flight(server):
    url, _ = server
    long = {"type": "request", "prefix": "def area(r):\n    return math.f", "context": "import math",
            "max_tokens": 256}  # the built-in model writes `_c_c_c...` on one line: no boundary before 256 tokens
    msgs = asyncio.run(_socket_messages(url, [{**long, "id": 1}, {**long, "id": 2, "max_tokens": 4}]))
    done = {m["id"]: m for m in msgs if m["type"] == "done"}
    assert done[1]["reason"] == "cancelled", done  # no cancel message: the second request was enough
    assert done[2]["reason"] in ("length", "boundary", "eos") and done[2]["stats"]["tokens"] >= 1, done
    assert sum(m["type"] == "token" and m["id"] == 1 for m in msgs) < 50
