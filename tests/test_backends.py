"""Remote models (spark_nb.backends): names, the chat path of an edit, and one clear message per failure.

Every server here is started by the tests on 127.0.0.1: a fault server (tornado, in a thread) that answers each
model name with one failure, `spark-nb serve` in a thread, and `transformers serve` (slow: a subprocess) on a tiny
random chat model. Nothing reaches beyond this machine: the DNS failure is a patched lookup.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("openai")

import tornado.ioloop  # noqa: E402
import tornado.web  # noqa: E402

import spark_nb  # noqa: E402
from spark_nb import backends  # noqa: E402
from spark_nb.backends import Endpoint, RemoteEngine, remote_engine  # noqa: E402
from spark_nb.edits import edit, edit_steps, get_engine  # noqa: E402
from spark_nb.edits.prompt import chat_messages  # noqa: E402
from spark_nb.notebook.view import stats_line  # noqa: E402
from test_magics import ip  # noqa: E402,F401 - the IPython shell fixture with %%spark loaded

CELL = "def double(x):\n    return x * 2\n"
NEW = 'def double(x):\n    """Twice x."""\n    return x * 2\n'
ANSWER = f"Here it is:\n\n```python\n{NEW}```\n\nDone."


# -- a fault server ------------------------------------------------------------------------------------------------


def _chunk(text, finish=None):
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]}


class FaultHandler(tornado.web.RequestHandler):
    """POST /v1/chat/completions; the model name says what goes wrong: "ok", "prose", "status-N", "cut",
    "error-event" (an error event after 3 chunks), "endless" (a token every 20 ms, never done), "silent" (never
    answers), "slow-first" (the headers at once, the first chunk after 30 s), "stall" (3 chunks, then 30 s of
    silence); "projected" answers as "ok" does and /v1/models reports its config."""

    def initialize(self, log):
        self.log = log

    def on_connection_close(self):
        self.log.append(("closed", time.perf_counter()))

    async def post(self):
        body = json.loads(self.request.body)
        model = body["model"]
        self.log.append(("request", body))
        self.log.append(("authorization", self.request.headers.get("Authorization")))
        if model.startswith("status-"):
            status = int(model.split("-")[1])
            self.set_status(status)
            if status == 429:
                self.set_header("Retry-After", "7")
            return self.finish({"error": {"message": f"fault {status}", "type": "fault", "code": status}})
        if model == "silent":
            await asyncio.sleep(30)
            return
        if model == "slow-first":
            self.set_header("Content-Type", "text/event-stream")
            await self.flush()
            await asyncio.sleep(30)
            return
        text = {"ok": ANSWER, "prose": "I would add a docstring saying it doubles x.",
                "endless": f"```python\n{NEW}"}.get(model, ANSWER)  # endless: the block never closes
        self.set_header("Content-Type", "text/event-stream")
        pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
        for i, piece in enumerate(pieces):
            if model == "cut" and i == 5:
                self.request.connection.stream.close()  # mid-stream, no [DONE], an incomplete chunked body
                return
            if model == "stall" and i == 3:
                await asyncio.sleep(30)
                return
            if model == "error-event" and i == 3:  # what vLLM and spark-nb serve send when generation fails
                self.write(f"data: {json.dumps({'error': {'message': 'engine failed', 'code': 500}})}\n\n")
                return self.finish()
            self.write(f"data: {json.dumps(_chunk(piece))}\n\n")
            await self.flush()
            if model == "endless":
                await asyncio.sleep(0.02)
        if model == "endless":
            line = json.dumps(_chunk("x = 1\n"))
            while True:
                self.write(f"data: {line}\n\n")
                await self.flush()
                await asyncio.sleep(0.02)
        self.write(f"data: {json.dumps(_chunk('', 'stop'))}\n\n")
        usage = {"prompt_tokens": 30, "completion_tokens": len(pieces), "total_tokens": 30 + len(pieces)}
        self.write(f"data: {json.dumps({**_chunk(''), 'choices': [], 'usage': usage})}\n\n")
        self.write("data: [DONE]\n\n")
        self.finish()


class ModelsHandler(tornado.web.RequestHandler):
    def get(self):
        from spark_nb.model.synthetic import SHAPES, config_dict

        shape = dict(SHAPES["qwen2.5-0.5b"])
        self.finish({"object": "list", "data": [{"id": "projected", "object": "model",
                                                 "config": config_dict(shape.pop("family"), **shape)},
                                                {"id": "ok", "object": "model"}]})


def serve_in_thread(app):
    ready, box = threading.Event(), {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)

        async def start():
            from tornado.httpserver import HTTPServer

            box["http"] = HTTPServer(app)
            box["http"].add_sockets([sock])

        loop.run_until_complete(start())
        box["loop"], box["port"] = loop, sock.getsockname()[1]
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return box


@pytest.fixture(scope="module")
def faults():
    log: list = []
    box = serve_in_thread(tornado.web.Application([(r"/v1/chat/completions", FaultHandler, dict(log=log)),
                                                   (r"/v1/models", ModelsHandler)]))
    yield f"http://127.0.0.1:{box['port']}/v1", log
    box["loop"].call_soon_threadsafe(box["loop"].stop)


def remote_edit(url, model, **kw):
    return edit(CELL, "add a docstring", model=f"openai:{model}@{url}", exact=False, **kw)


# -- names ------------------------------------------------------------------------------------------------------


def test_endpoint_names():
    e = Endpoint.parse("openai:qwen2.5-coder:7b@http://localhost:11434/v1/")
    assert (e.model, e.base_url, e.api_key_env) == ("qwen2.5-coder:7b", "http://localhost:11434/v1", None)
    e = Endpoint.parse("openai:meta-llama/Llama-3.1-8B@user@https://h:8000/v1")  # the last @http splits
    assert (e.model, e.base_url) == ("meta-llama/Llama-3.1-8B@user", "https://h:8000/v1")
    with pytest.raises(ValueError, match="openai:MODEL@http"):
        Endpoint.parse("openai:model-without-url")
    with pytest.raises(ValueError, match="base_url, model"):
        Endpoint.parse({"base_url": "http://h/v1"})
    backends.ENDPOINTS["gpu-box"] = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key_env": "GPU_KEY"}
    try:
        engine = get_engine("gpu-box")
        assert isinstance(engine, RemoteEngine) and engine.remote and engine.endpoint.name == "gpu-box"
        assert get_engine("gpu-box") is engine  # cached like a loaded model
    finally:
        del backends.ENDPOINTS["gpu-box"]
    assert not backends.is_remote("some/folder") and backends.is_remote({"base_url": "x", "model": "m"})


def test_endpoints_from_a_file_for_the_command_line(faults, tmp_path, monkeypatch):
    """$SPARK_NB_ENDPOINTS names a JSON file of endpoints: `spark-nb eval --model NAME` and any process find them."""
    url, log = faults
    table = tmp_path / "endpoints.json"
    table.write_text(json.dumps({"file-box": {"base_url": url, "model": "ok", "api_key_env": "SPARK_TEST_KEY"}}))
    monkeypatch.setenv("SPARK_NB_ENDPOINTS", str(table))
    monkeypatch.setenv("SPARK_TEST_KEY", "sk-from-env")
    assert backends.is_remote("file-box") and not backends.is_remote("some/folder")
    result = edit(CELL, "add a docstring", model="file-box", exact=False)
    assert result.ok and result.code == NEW and log[-1] == ("authorization", "Bearer sk-from-env")
    table.write_text("{not json")
    with pytest.raises(ValueError, match="SPARK_NB_ENDPOINTS names .*endpoints.json, which is no JSON file"):
        backends.is_remote("file-box")


def test_notebook_endpoints_are_looked_up():
    from spark_nb.notebook.session import Spark

    spark = Spark(endpoints={"box": {"base_url": "http://127.0.0.1:1/v1", "model": "coder"}})
    engine = spark.engine_for("box")
    assert isinstance(engine, RemoteEngine) and engine.endpoint.model == "coder"


def test_key_comes_from_env_and_is_never_shown(faults, monkeypatch):
    url, log = faults
    monkeypatch.setenv("SPARK_TEST_KEY", "sk-very-secret")
    engine = remote_engine({"base_url": url, "model": "status-401", "api_key_env": "SPARK_TEST_KEY"})
    result = edit(CELL, "add a docstring", model=engine, exact=False)
    assert "sk-very-secret" not in repr(engine) and "sk-very-secret" not in result.error
    assert "401" in result.error and "SPARK_TEST_KEY" in result.error
    assert "sk-very-secret" not in repr(result)


# -- the edit's chat path ----------------------------------------------------------------------------------------


def test_remote_edit_streams_into_the_cell(faults):
    url, log = faults
    seen = []
    result = remote_edit(url, "ok", on_token=lambda code, n, host_s, wafer_s: seen.append((code, n, host_s, wafer_s)))
    assert result.ok and result.code == NEW and result.style == "chat", result.error
    request = [body for kind, body in log if kind == "request"][-1]
    assert request["messages"] == chat_messages(CELL, "add a docstring") and request["stream"]
    assert request["temperature"] == 0.0 and request["max_tokens"] > len(CELL) // 3
    # the view gets the original until the fence opens, then the code so far, with measured times and no wafer
    assert seen[0][0] == CELL and seen[-1][0].startswith(NEW[:20])
    assert all(w == 0.0 for *_, w in seen) and [h for *_, h in seen] == sorted(h for *_, h in seen)
    s = result.stats
    assert s.wafer == "remote" and s.wafer_tok_per_s == 0 and s.ttft_s > 0 and s.tokens == len(seen)
    assert stats_line(s).startswith(f"{s.tokens} tokens | remote: TTFT") and "projected" not in stats_line(s)


def test_stream_reads_usage_and_finish(faults):
    url, _ = faults
    events = list(remote_engine(f"openai:ok@{url}").stream(chat_messages(CELL, "x"), max_new_tokens=500))
    done = events[-1]
    assert done.reason == "eos" and done.text == ANSWER and done.stats.prompt_tokens == 30
    assert done.stats.tokens == len(events) - 1 and done.stats.tok_per_s > 0


@pytest.mark.parametrize("model, words", [
    ("status-401", ["refused the API key", "401"]),
    ("status-403", ["403 Forbidden"]),
    ("status-404", ["has no model 'status-404'", "404", "/models lists"]),
    ("status-429", ["429", "retry after 7 s"]),
    ("status-500", ["500 server error", "fault 500"]),
    ("status-503", ["503 server error"]),
    ("cut", ["cut after 5 chunks", "cell is unchanged"]),
    ("error-event", ["error mid-stream after 3 chunks", "engine failed"]),
    ("prose", ["no complete fenced code block"]),
])
def test_each_failure_is_one_clear_message_and_the_cell_is_untouched(faults, model, words):
    url, _ = faults
    result = remote_edit(url, model)
    assert not result.ok and result.code == CELL and result.original == CELL
    for word in words:
        assert word in result.error, result.error
    assert "\n" not in result.error and "Traceback" not in result.error


def test_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    t0 = time.perf_counter()
    result = remote_edit(f"http://127.0.0.1:{port}/v1", "m")
    assert not result.ok and result.code == CELL and time.perf_counter() - t0 < 5
    assert "connection refused" in result.error and "is the server running" in result.error


def test_dns_failure(monkeypatch):
    real = socket.getaddrinfo

    def lookup(host, *args, **kw):  # no query leaves this machine
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    result = remote_edit("http://gpu-box.invalid:8000/v1", "m")
    assert not result.ok and result.code == CELL and "DNS lookup failed" in result.error, result.error


def test_tls_error():
    sock = socket.socket()  # a plain-HTTP answer to a TLS hello: "wrong version number"
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def answer():
        conn, _ = sock.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    result = remote_edit(f"https://127.0.0.1:{sock.getsockname()[1]}/v1", "ok")
    sock.close()
    assert not result.ok and result.code == CELL and "TLS failed" in result.error, result.error


def test_read_timeout(faults, monkeypatch):
    url, _ = faults
    monkeypatch.setitem(backends.TIMEOUTS, "read", 0.5)
    t0 = time.perf_counter()
    result = edit(CELL, "add a docstring", model=RemoteEngine(Endpoint.parse(f"openai:silent@{url}")), exact=False)
    assert not result.ok and result.code == CELL and time.perf_counter() - t0 < 5
    assert "timed out" in result.error, result.error


def test_stop_closes_the_stream_at_once(faults):
    url, log = faults
    cancel = threading.Event()
    at = {}

    def on_token(code, n, host_s, wafer_s):
        if n == 40 and not cancel.is_set():
            at["stop"] = time.perf_counter()
            cancel.set()

    log.clear()
    steps = edit_steps(CELL, "add a docstring", model=f"openai:endless@{url}", exact=False, cancel=cancel,
                       on_token=on_token)
    result = spark_nb.edits.drain(steps)
    assert result.stopped and not result.ok and result.code == CELL and result.error == "stopped after 40 tokens"
    deadline = time.perf_counter() + 2
    while not any(kind == "closed" for kind, _ in log) and time.perf_counter() < deadline:
        time.sleep(0.01)
    closed = [t for kind, t in log if kind == "closed"]
    assert closed and closed[0] - at["stop"] < 0.5  # the server saw the connection close: it stops generating


def test_cancel_from_another_thread(faults):
    url, _ = faults
    stream = remote_engine(f"openai:endless@{url}").stream(chat_messages(CELL, "x"), max_new_tokens=10_000)
    threading.Timer(0.3, stream.cancel).start()
    t0 = time.perf_counter()
    events = list(stream)
    assert events[-1].reason == "cancelled" and stream.error is None and time.perf_counter() - t0 < 2


def _closed_since(log, t0, seconds=2.0):
    """When the fault server saw a connection close after t0 (None if it did not within `seconds`)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        closed = [t for kind, t in log if kind == "closed" and t > t0]
        if closed:
            return closed[0]
        time.sleep(0.01)
    return None


@pytest.mark.parametrize("model", ["silent", "slow-first"])  # no answer yet; the answer's headers but no chunk
def test_stop_before_the_first_token_closes_the_stream_at_once(faults, model):
    url, log = faults
    engine = remote_engine(f"openai:{model}@{url}")
    stream = engine.stream(chat_messages(CELL, "x"), max_new_tokens=100)
    at = {}

    def stop():
        at["stop"] = time.perf_counter()
        stream.cancel()

    threading.Timer(0.3, stop).start()
    events = list(stream)  # blocked waiting for the server: the cancel from another thread ends it
    ended = time.perf_counter()
    assert [e.reason for e in events] == ["cancelled"] and stream.error is None
    assert ended - at["stop"] < 0.5
    closed = _closed_since(log, at["stop"])
    assert closed is not None and closed - at["stop"] < 0.5  # the server saw the connection close


def test_the_notebook_can_stop_an_edit_before_the_first_token(faults):
    """In a kernel the edit's steps run on the event loop's thread: before the server's first chunk they yield
    (heartbeats), so the loop runs, Stop lands, and the next step closes the stream; the cell stays as it was."""
    url, log = faults
    cancel = threading.Event()
    steps = edit_steps(CELL, "add a docstring", model=f"openai:silent@{url}", exact=False, cancel=cancel,
                       on_token=lambda *a: pytest.fail("no token came"))
    t0 = time.perf_counter()
    next(steps)
    next(steps)  # two steps while the server is silent: each returns within a heartbeat
    assert time.perf_counter() - t0 < 1.0
    cancel.set()  # what the view's Stop does between two steps
    stop = time.perf_counter()
    result = spark_nb.edits.drain(steps)
    assert result.stopped and not result.ok and result.code == CELL and result.error == "stopped after 0 tokens"
    closed = _closed_since(log, stop)
    assert closed is not None and closed - stop < 0.5 and time.perf_counter() - stop < 0.5
    steps = edit_steps(CELL, "add a docstring", model=f"openai:silent@{url}", exact=False)
    next(steps)
    next(steps)
    stop = time.perf_counter()
    steps.close()  # an interrupted cell drops its steps: the request waiting on the helper thread ends too
    closed = _closed_since(log, stop)
    assert closed is not None and closed - stop < 0.5


def test_the_notebook_can_stop_an_edit_while_the_server_stalls(faults):
    """A server silent midway: the steps go on yielding (heartbeats), so Stop lands within one."""
    url, log = faults
    cancel, seen = threading.Event(), []
    steps = edit_steps(CELL, "add a docstring", model=f"openai:stall@{url}", exact=False, cancel=cancel,
                       on_token=lambda code, n, *_: seen.append(n))
    deadline = time.perf_counter() + 5
    while len(seen) < 3 and time.perf_counter() < deadline:
        next(steps)
    t0 = time.perf_counter()
    for _ in range(3):
        next(steps)  # the server is silent: each step returns within a heartbeat
    assert seen == [1, 2, 3] and time.perf_counter() - t0 < 1.0
    cancel.set()
    stop = time.perf_counter()
    result = spark_nb.edits.drain(steps)
    assert result.stopped and result.code == CELL and result.error == "stopped after 3 tokens"
    closed = _closed_since(log, stop)
    assert closed is not None and closed - stop < 0.5


# -- keys --------------------------------------------------------------------------------------------------------


class _MemoryKeyring:
    """A keyring backend in memory (the tests touch no real keyring)."""

    def __init__(self, entries):
        import keyring.backend

        class Backend(keyring.backend.KeyringBackend):
            priority = 1

            def get_password(self, service, username):
                return entries.get((service, username))

            def set_password(self, service, username, password):
                entries[(service, username)] = password

            def delete_password(self, service, username):
                entries.pop((service, username), None)

        self.backend = Backend()


@pytest.fixture
def keyring_with(monkeypatch):
    keyring = pytest.importorskip("keyring")
    previous = keyring.get_keyring()

    def use(entries):
        keyring.set_keyring(_MemoryKeyring(entries).backend)

    yield use
    keyring.set_keyring(previous)


def test_key_from_the_keyring_is_used_and_never_shown(ip, faults, keyring_with, caplog, capsys):
    url, log = faults
    secret = "sk-keyring-secret-1234"
    keyring_with({("spark-nb", "fault-box"): secret})
    caplog.set_level(logging.DEBUG)  # openai's and httpx's own logs included
    backends.ENDPOINTS.clear()
    ip.spark_magics.session.endpoints = {
        "fault-box": {"base_url": url, "model": "ok", "api_key_keyring": "fault-box"},
        "fault-401": {"base_url": url, "model": "status-401", "api_key_keyring": "fault-box"}}
    try:
        ip.run_cell_magic("spark", "--model fault-box --no-context add a docstring", CELL)
        assert log[-1] == ("authorization", f"Bearer {secret}")  # the key reached the server
        ip.run_cell_magic("spark", "--model fault-401 --no-context add a docstring", CELL)
        assert log[-1] == ("authorization", f"Bearer {secret}")
        ip.run_line_magic("spark", "status")
        ip.run_line_magic("spark", "history")
        engine = ip.spark_magics.session.engine_for("fault-401")
        shown = [repr(engine), str(engine.endpoint), repr(engine.endpoint), capsys.readouterr(), caplog.text,
                 repr(ip.spark_magics.session.history), json.dumps(ip.spark_magics.session.endpoints)]
    finally:
        backends.ENDPOINTS.clear()
    assert ip.calls == [(NEW, True)]
    assert "refused the API key (401 Unauthorized): check the key in the keyring entry spark-nb/fault-box" in \
        shown[3].out + shown[3].err
    assert "keyring entry spark-nb/fault-box" in shown[0]
    for text in shown:
        assert secret not in str(text)


def test_a_keyring_entry_that_is_missing_or_no_keyring_package(keyring_with, monkeypatch):
    keyring_with({})
    endpoint = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key_keyring": "nowhere"}
    with pytest.raises(ValueError, match="keyring has no entry spark-nb/nowhere: store the key with `keyring set "
                                         "spark-nb nowhere`"):
        remote_engine(endpoint)
    monkeypatch.setitem(sys.modules, "keyring", None)  # not installed
    with pytest.raises(ValueError, match=r"api_key_keyring needs the keyring package \(pip install keyring\)"):
        remote_engine(endpoint)
    monkeypatch.setenv("SPARK_TEST_KEY", "sk-env")  # a variable that is set comes first: no keyring asked
    assert "SPARK_TEST_KEY" in repr(remote_engine({**endpoint, "api_key_env": "SPARK_TEST_KEY"}))


# -- a projection from the config the server reports --------------------------------------------------------------


def test_a_server_that_reports_its_config_gets_a_projection(faults):
    from spark_nb.model.synthetic import SHAPES, config_dict
    from spark_nb.wafer.cycles import decode_cycles, first_token_cycles
    from spark_nb.wafer.placement import place

    url, _ = faults
    engine = remote_engine(f"openai:projected@{url}")
    seen = []
    result = edit(CELL, "add a docstring", model=engine, exact=False,
                  on_token=lambda code, n, host_s, wafer_s: seen.append(wafer_s))
    assert result.ok and result.code == NEW
    s = result.stats
    shape = dict(SHAPES["qwen2.5-0.5b"])
    placement = place(config_dict(shape.pop("family"), **shape), "wse3", "fp16", 4096)
    # the edit stops reading at the closed block, before the usage: the prompt's length is estimated
    estimate = engine.count_tokens("".join(m["content"] for m in chat_messages(CELL, "add a docstring")))
    assert s.wafer == "wse3" and s.dtype == "fp16" and s.prompt_tokens == 0
    assert s.wafer_ttft_s == pytest.approx(first_token_cycles(placement, estimate).seconds)
    step = decode_cycles(placement, estimate + 1).seconds
    assert s.wafer_tok_per_s == pytest.approx(1 / step, rel=0.01)
    assert seen == sorted(seen) and seen[0] > 0  # the live view's wafer line, token by token
    assert "wafer wse3 (projected)" in stats_line(s)
    *tokens, done = engine.stream(chat_messages(CELL, "add a docstring"))  # read to the end: the server's count
    assert done.stats.prompt_tokens == 30
    assert done.stats.wafer_ttft_s == pytest.approx(first_token_cycles(placement, 30).seconds)
    steps = sum(decode_cycles(placement, 31 + i).seconds for i in range(len(tokens) - 1))  # affine: within 0.1 %
    assert done.stats.wafer_total_s == pytest.approx(first_token_cycles(placement, 30).seconds + steps, rel=1e-3)
    plain = edit(CELL, "add a docstring", model=f"openai:ok@{url}", exact=False)  # listed, but with no config
    assert plain.ok and plain.stats.wafer == "remote" and plain.stats.wafer_tok_per_s == 0


# Ollama reports a model's shape on its native API: POST /api/show answers the GGUF file's metadata (`model_info`,
# arrays of more than 5 items emptied unless verbose, general.name dropped) and every tensor's name, type and shape
# (GGUF's order, innermost first), as Ollama's server/routes.go GetModelInfo writes them.
OLLAMA = {
    # Qwen2.5-Coder-0.5B as Ollama's qwen2.5-coder:0.5b reports it: q/k/v biases, the embedding tied to the output
    "qwen2.5-coder:0.5b": dict(arch="qwen2", layers=24, d=896, ff=4864, heads=14, kv=2, ctx=32768, theta=1000000,
                               eps=1e-06, vocab=151936, params=494032768, tied=True, bias=True),
    "tiny-llama:latest": dict(arch="llama", layers=8, d=256, ff=768, heads=8, kv=4, ctx=2048, theta=10000,
                              eps=1e-05, vocab=8192, params=10_490_112, tied=False, bias=False),
}


def _ollama_show(shape: dict) -> dict:
    a, d, hd = shape["arch"], shape["d"], shape["d"] // shape["heads"]
    kv = shape["kv"] * hd
    tensors = [("token_embd.weight", [d, shape["vocab"]]), ("output_norm.weight", [d])]
    tensors += [] if shape["tied"] else [("output.weight", [d, shape["vocab"]])]
    for i in range(shape["layers"]):
        layer = [("attn_norm.weight", [d]), ("attn_q.weight", [d, d]), ("attn_k.weight", [d, kv]),
                 ("attn_v.weight", [d, kv]), ("attn_output.weight", [d, d]), ("ffn_norm.weight", [d]),
                 ("ffn_gate.weight", [d, shape["ff"]]), ("ffn_up.weight", [d, shape["ff"]]),
                 ("ffn_down.weight", [shape["ff"], d])]
        layer += [("attn_q.bias", [d]), ("attn_k.bias", [kv]), ("attn_v.bias", [kv])] if shape["bias"] else []
        tensors += [(f"blk.{i}.{name}", dims) for name, dims in layer]
    info = {"general.architecture": a, "general.file_type": 7, "general.parameter_count": shape["params"],
            "general.quantization_version": 2, f"{a}.attention.head_count": shape["heads"],
            f"{a}.attention.head_count_kv": shape["kv"], f"{a}.attention.layer_norm_rms_epsilon": shape["eps"],
            f"{a}.block_count": shape["layers"], f"{a}.context_length": shape["ctx"], f"{a}.embedding_length": d,
            f"{a}.feed_forward_length": shape["ff"], f"{a}.rope.freq_base": shape["theta"],
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.merges": [],
            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.token_type": [], "tokenizer.ggml.tokens": []}
    if a == "llama":  # llama.cpp's converter writes these for Llama, not for Qwen2
        info |= {"llama.rope.dimension_count": hd, "llama.vocab_size": shape["vocab"]}
    return {"modelfile": "# Modelfile generated by \"ollama show\"", "template": "{{ .Prompt }}",
            "details": {"parent_model": "", "format": "gguf", "family": a, "families": [a],
                        "parameter_size": f"{shape['params'] / 1e6:.2f}M", "quantization_level": "Q8_0"},
            "model_info": info, "tensors": [{"name": n, "type": "Q8_0", "shape": s} for n, s in tensors],
            "capabilities": ["completion"], "modified_at": "2026-01-01T00:00:00Z"}


def _config_json(shape: dict) -> dict:
    """The same model's config.json, written by hand from the same numbers: the independent reference."""
    return {"architectures": ["Qwen2ForCausalLM" if shape["arch"] == "qwen2" else "LlamaForCausalLM"],
            "model_type": shape["arch"], "hidden_size": shape["d"], "intermediate_size": shape["ff"],
            "num_hidden_layers": shape["layers"], "num_attention_heads": shape["heads"],
            "num_key_value_heads": shape["kv"], "vocab_size": shape["vocab"], "max_position_embeddings": shape["ctx"],
            "rms_norm_eps": shape["eps"], "rope_theta": float(shape["theta"]), "tie_word_embeddings": shape["tied"],
            "torch_dtype": "bfloat16", "hidden_act": "silu"}


class OllamaModelsHandler(tornado.web.RequestHandler):
    def get(self):  # as Ollama's OpenAI API lists models: no config
        self.finish({"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "library"}
                                                for name in [*OLLAMA, "unshown", "slow-show"]]})


class OllamaShowHandler(tornado.web.RequestHandler):
    def initialize(self, log):
        self.log = log

    async def post(self):
        model = json.loads(self.request.body)["model"]
        self.log.append(("show", model))
        if model == "slow-show":
            await asyncio.sleep(5)
        if model not in OLLAMA:
            self.set_status(404)
            return self.finish({"error": f"model '{model}' not found"})
        self.finish(_ollama_show(OLLAMA[model]))


@pytest.fixture(scope="module")
def ollama():
    log: list = []
    box = serve_in_thread(tornado.web.Application([(r"/v1/chat/completions", FaultHandler, dict(log=log)),
                                                   (r"/v1/models", OllamaModelsHandler),
                                                   (r"/api/show", OllamaShowHandler, dict(log=log))]))
    yield f"http://127.0.0.1:{box['port']}/v1", log
    box["loop"].call_soon_threadsafe(box["loop"].stop)


@pytest.mark.parametrize("model", list(OLLAMA))
def test_an_ollama_model_is_projected_from_its_gguf_metadata(ollama, model):
    from spark_nb.backends.remote import _Projector

    url, log = ollama
    engine = remote_engine(f"openai:{model}@{url}")
    result = edit(CELL, "add a docstring", model=engine, exact=False)
    assert result.ok and result.code == NEW
    reference = _Projector(_config_json(OLLAMA[model]))
    estimate = engine.count_tokens("".join(m["content"] for m in chat_messages(CELL, "add a docstring")))
    s = result.stats
    assert s.wafer == "wse3" and s.dtype == "fp16"
    assert s.wafer_ttft_s == reference.ttft_s(estimate)
    n = s.tokens
    assert s.wafer_total_s == pytest.approx(reference.ttft_s(estimate)
                                            + sum(reference.step_s(estimate + i) for i in range(1, n)))
    *_, done = engine.stream(chat_messages(CELL, "add a docstring"))  # the second request asks nothing more
    assert done.stats.wafer == "wse3" and done.stats.wafer_ttft_s == reference.ttft_s(30)
    assert log.count(("show", model)) == 1


def test_a_server_without_ollamas_show_stays_remote(ollama, faults):
    url, log = ollama
    unshown = edit(CELL, "add a docstring", model=f"openai:unshown@{url}", exact=False)  # /api/show: 404
    assert unshown.ok and unshown.stats.wafer == "remote" and unshown.stats.wafer_tok_per_s == 0
    assert ("show", "unshown") in log
    plain = edit(CELL, "add a docstring", model=f"openai:ok@{faults[0]}", exact=False)  # no /api/show at all
    assert plain.ok and plain.stats.wafer == "remote"


def test_a_slow_show_costs_no_more_than_the_describe_step(ollama, monkeypatch):
    from spark_nb.backends import remote

    monkeypatch.setattr(remote, "DESCRIBE_TIMEOUT_S", 0.5)  # /models and /api/show together
    url, _ = ollama
    t0 = time.perf_counter()
    slow = edit(CELL, "add a docstring", model=f"openai:slow-show@{url}", exact=False)  # /api/show answers in 5 s
    assert slow.ok and slow.stats.wafer == "remote" and time.perf_counter() - t0 < 2.0


# -- against spark-nb serve ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served():
    from spark_nb.serve import start_in_thread

    engine = get_engine(None)
    url, server, stop = start_in_thread(engine, "builtin")
    yield url, engine
    stop()


def test_remote_edit_against_spark_nb_serve_equals_in_process(served):
    """The built-in model behind `spark-nb serve`: the same edit as in-process, through the chat path."""
    url, engine = served
    cell = "def area(w, h):\n    return w*h\n"
    edit(cell, "add type hints", model=engine, exact=False)  # the server's engine keeps this prompt in its cache ...
    remote = edit(cell, "add type hints", model=f"openai:builtin@{url}", exact=False)
    local = edit(cell, "add type hints", model=engine, exact=False)  # ... and holds the same for this one
    assert remote.proposed == local.proposed and remote.ok == local.ok
    # the server projects the wafer: its numbers come along (the edit's own, one generation)
    assert remote.stats.wafer == "wse3" and remote.stats.wafer_tok_per_s == pytest.approx(
        local.stats.wafer_tok_per_s, rel=1e-6) and remote.stats.wafer_ttft_s == pytest.approx(local.stats.wafer_ttft_s)


def test_an_edit_the_served_model_could_not_make_says_why(served):
    url, engine = served
    cell = "def area(w, h):\n    return w*h\n"
    local = edit(cell, "add type hints", model=engine, exact=False, max_new_tokens=3)
    remote = edit(cell, "add type hints", model=f"openai:builtin@{url}", exact=False, max_new_tokens=3)
    assert not local.ok and not remote.ok and remote.code == cell
    assert remote.error == f"{url}: {local.error}", remote.error  # not "the answer has no code block"


def test_bench_edits_times_a_remote_model_once_per_task(served, capsys):
    """A server decodes its own way: `bench --edits` times each edit once and compares nothing; a failed edit (no
    first token) is counted, not divided by."""
    from spark_nb import cli
    from spark_nb.edits import bench

    url, _ = served
    result = bench.run(f"openai:builtin@{url}", limit=1)
    assert result["remote"] and result["tasks"] > 10 and "notebook cells" in result["source"]
    assert all(r["speedup"] == 1 and r["speculative_s"] == r["plain_s"] for r in result["rows"])
    failed = [r for r in result["rows"] if r["error"]]
    assert result["failed"] == len(failed) and all(r["ceiling"] != r["ceiling"] for r in failed if not r["plain_ttft_s"])
    assert "speculative decoding is the server's own affair" in bench.format_table(result)
    assert cli.main(["bench", "--edits", "--model", f"openai:builtin@{url}", "--limit", "1"]) == 0
    assert "a server's model, each edit run once" in capsys.readouterr().out


def test_remote_completion_text_equals_in_process(served):
    url, engine = served
    prompt = "def fibonacci(n):\n"
    list(engine.stream(prompt, max_new_tokens=24))  # the cache holds the prompt for both (as above)
    *tokens, remote = remote_engine(f"openai:builtin@{url}").stream(prompt, max_new_tokens=24)
    local = list(engine.stream(prompt, max_new_tokens=24))[-1]
    assert remote.text == local.text and remote.stats.tokens == 24 and remote.reason == local.reason
    assert [t.wafer_s for t in tokens] == sorted(t.wafer_s for t in tokens) and tokens[0].wafer_s > 0
    assert remote.stats.wafer_total_s == pytest.approx(local.stats.wafer_total_s)  # projected by the server


# -- against transformers serve -----------------------------------------------------------------------------------

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def transformers_serve(tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("torch")
    from spark_nb.model.synthetic import write_random_model

    folder = write_random_model(tmp_path_factory.mktemp("tiny-chat"), {"family": "qwen2", "vocab_size": 512,
                                                                       "max_position_embeddings": 512})
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "chat_template": CHATML}))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cli = os.path.join(os.path.dirname(sys.executable), "transformers")
    proc = subprocess.Popen([cli, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"})
    lines, deadline = [], time.time() + 180
    try:
        for line in proc.stdout:
            lines.append(line)
            if "running on" in line.lower() or time.time() > deadline:
                break
        if proc.poll() is not None or not any("running on" in x.lower() for x in lines):
            pytest.skip("transformers serve did not start: " + "".join(lines[-5:]))
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep its pipe drained
        yield f"http://127.0.0.1:{port}/v1", str(folder)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_remote_backend_against_transformers_serve(transformers_serve):
    import openai

    url, name = transformers_serve
    messages = chat_messages(CELL, "add a docstring")
    chunks = openai.OpenAI(base_url=url, api_key="none").chat.completions.create(
        model=name, messages=messages, max_tokens=12, temperature=0.0, stream=True)
    bare = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    events = list(remote_engine(f"openai:{name}@{url}").stream(messages, max_new_tokens=12))
    done = events[-1]
    assert done.reason in ("length", "eos") and done.stats.wafer == "remote" and done.stats.ttft_s > 0
    assert done.text == bare  # greedy both times, streamed both times: the same text
    # a random model answers no code block: one clear message, the cell untouched
    result = edit(CELL, "add a docstring", model=f"openai:{name}@{url}", exact=False, max_new_tokens=12)
    assert not result.ok and result.code == CELL and "no complete fenced code block" in result.error
    missing = edit(CELL, "add a docstring", model=f"openai:no-such-model@{url}", exact=False, max_new_tokens=4)
    assert not missing.ok and missing.code == CELL and missing.error


# -- %%spark with a remote model ----------------------------------------------------------------------------------


def test_spark_magic_with_a_remote_model(ip, faults, capsys):
    url, _ = faults
    ip.run_cell_magic("spark", f"--model openai:ok@{url} --no-context add a docstring", CELL)
    assert ip.calls == [(NEW, True)]
    out = capsys.readouterr().out
    assert "replaced the cell" in out and "remote: TTFT" in out and "projected" not in out
    ip.spark_magics.session.endpoints = {"down": {"base_url": url, "model": "status-503"}}
    ip.run_cell_magic("spark", "--model down --no-context add a docstring", CELL)
    assert ip.calls == [(NEW, True)]  # nothing more: the cell is untouched
    captured = capsys.readouterr()
    assert "503 server error" in captured.out + captured.err
    ip.run_line_magic("spark", "status")
    ip.run_line_magic("spark", "history")
    out = capsys.readouterr().out
    assert "RemoteEngine('ok' at http://127.0.0.1:" in out and "503 server error" in out  # status, history


def test_the_panel_lists_a_loaded_remote_model(faults):
    from spark_nb.notebook.panel import Panel
    from spark_nb.notebook.session import Spark

    url, _ = faults
    engine = get_engine(f"openai:ok@{url}")
    panel = Panel(Spark(), CELL, bound=False)
    assert engine.path == f"openai:ok@{url}" and engine.path in panel.controls.models
    result = Spark().edit(CELL, "add a docstring", model=engine.path, exact=False)  # the picker's name works
    assert result.ok and result.code == NEW
