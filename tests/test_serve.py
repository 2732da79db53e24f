"""`spark-nb serve` driven by the official `openai` client, on 127.0.0.1: completions and chat, streamed and not,
the wafer stats as extra fields, the API key, the FIFO queue and its bound, a client that leaves, 16 streams at
once, and the command itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

openai = pytest.importorskip("openai")

from spark_nb.edits import get_engine  # noqa: E402
from spark_nb.edits.prompt import chat_messages  # noqa: E402
from spark_nb.engine import Engine  # noqa: E402
from spark_nb.model.synthetic import write_random_model  # noqa: E402
from spark_nb.serve import start_in_thread  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PROMPT = "def fibonacci(n):\n"


def client(url, key="none", **kw):
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, **kw)


def idle(server, seconds=10) -> bool:
    """Whether the server's queue empties within `seconds` (the worker counts a request done after its client may
    already have read the last chunk)."""
    deadline = time.time() + seconds
    while server.pending and time.time() < deadline:
        time.sleep(0.02)
    return server.pending == 0


@pytest.fixture(scope="module")
def builtin():
    engine = get_engine(None)
    url, server, stop = start_in_thread(engine, "builtin", queue_limit=8)
    yield url, engine, server
    stop()


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    folder = write_random_model(tmp_path_factory.mktemp("chat-model"), {"family": "qwen2", "vocab_size": 512,
                                                                       "max_position_embeddings": 512})
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "chat_template": CHATML}))
    engine = Engine.load(folder, dtype="fp32", context=512)
    url, server, stop = start_in_thread(engine, "tiny-chat")
    yield url, engine
    stop()


def test_models(builtin):
    url, engine, _ = builtin
    models = client(url).models.list().data
    assert [m.id for m in models] == ["builtin"] and models[0].model_extra["spark_nb"]["wafer"] == "wse3"


def test_completions_equal_in_process_streamed_or_not(builtin):
    url, engine, _ = builtin
    local = list(engine.stream(PROMPT, max_new_tokens=32))[-1]
    whole = client(url).completions.create(model="builtin", prompt=PROMPT, max_tokens=32)
    assert whole.choices[0].text == local.text and whole.usage.completion_tokens == local.stats.tokens
    extra = whole.model_extra["spark_nb"]
    assert extra["wafer"] == "wse3" and extra["wafer_tok_per_s"] > 0 and extra["wafer_ttft_s"] > 0
    chunks = list(client(url).completions.create(model="builtin", prompt=PROMPT, max_tokens=32, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == local.text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.model_extra["spark_nb"]["wafer_s"] > 0 for c in chunks[:-1])  # every token's projected time


def test_chat_with_a_template_model_equals_in_process(chat):
    url, engine = chat
    messages = [{"role": "user", "content": "write a function"}]
    local = list(engine.stream(engine.tokenizer.apply_chat_template(messages), max_new_tokens=16))[-1]
    whole = client(url).chat.completions.create(model="tiny-chat", messages=messages, max_tokens=16)
    assert whole.choices[0].message.content == local.text and whole.choices[0].message.role == "assistant"
    chunks = list(client(url).chat.completions.create(model="tiny-chat", messages=messages, max_tokens=16,
                                                      stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == local.text
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].usage.completion_tokens == 16


def test_chat_with_the_builtin_model_answers_the_edit_in_a_block(builtin):
    url, engine, _ = builtin
    from spark_nb.edits import edit

    cell = "def area(w, h):\n    return w*h\n"
    local = edit(cell, "add type hints", model=engine, exact=False)
    answer = client(url).chat.completions.create(model="builtin", messages=chat_messages(cell, "add type hints"))
    content = answer.choices[0].message.content
    assert content.startswith("```python\n") and content.rstrip().endswith("```")
    if local.proposed is not None:
        assert local.proposed.rstrip("\n") in content
    refused = pytest.raises(openai.BadRequestError, client(url).chat.completions.create, model="builtin",
                            messages=[{"role": "user", "content": "hello"}])
    assert "fenced block" in str(refused.value)


def test_errors_are_openai_errors(builtin):
    url, _, _ = builtin
    with pytest.raises(openai.NotFoundError, match="serves 'builtin'"):
        client(url).completions.create(model="gpt-4o", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client(url).completions.create(model="builtin", prompt="x", max_tokens=2, temperature=-1)
    with pytest.raises(openai.BadRequestError, match="context|fit|long"):  # the prompt does not fit
        client(url).completions.create(model="builtin", prompt="x " * 5000, max_tokens=2, stream=True)


def test_api_key():
    engine = get_engine(None)
    url, _, stop = start_in_thread(engine, "builtin", api_key="sk-local")
    try:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        assert client(url, "sk-local").models.list().data[0].id == "builtin"
    finally:
        stop()


def test_the_key_from_the_keyring(monkeypatch):
    from test_backends import _MemoryKeyring

    from spark_nb.serve.app import _key

    keyring = pytest.importorskip("keyring")
    previous = keyring.get_keyring()
    keyring.set_keyring(_MemoryKeyring({("spark-nb", "serve-box"): "sk-from-keyring"}).backend)
    try:
        assert _key(None, "serve-box") == "sk-from-keyring"
        monkeypatch.setenv("SPARK_TEST_SERVE_KEY", "sk-env")
        assert _key("SPARK_TEST_SERVE_KEY", "serve-box") == "sk-env"  # a variable that is set comes first
        with pytest.raises(SystemExit, match="no entry spark-nb/elsewhere: store the key with `keyring set"):
            _key(None, "elsewhere")
    finally:
        keyring.set_keyring(previous)
    assert _key(None, None) is None


class _Held:
    """An engine that answers each prompt with itself once the test releases it, recording the order it served
    them in."""

    tokenizer = None

    def __init__(self):
        self.order, self.release = [], threading.Event()

    def stream(self, prompt, max_new_tokens=1, **kw):
        from spark_nb.engine.events import Done, Stats, Token

        def events():
            self.order.append(prompt)
            self.release.wait(10)
            yield Token(prompt, (), 0.1, 0.0)
            yield Done(prompt, (), "length", Stats(1, 1, 0.1, 0.0, 0.1, 0.0, 0.0, 0.0, "", ""))

        return events()


def test_queue_is_fifo_and_bounded():
    """One worker, first in first out: with two places taken (one running, one waiting), a third request is
    refused at once with 429, and the first two are served in the order they came."""
    engine = _Held()
    url, server, stop = start_in_thread(engine, "held", queue_limit=2)
    results = {}

    def ask(name):
        try:
            results[name] = client(url).completions.create(model="held", prompt=name, max_tokens=1).choices[0].text
        except openai.RateLimitError as err:
            results[name] = f"429 after {err.response.headers['retry-after']}"

    try:
        threads = []
        for n, name in enumerate(("first", "second", "third"), 1):
            threads.append(threading.Thread(target=ask, args=(name,)))
            threads[-1].start()
            deadline = time.time() + 10
            while server.pending < min(n, 2) and time.time() < deadline:  # it has arrived: the next one may go
                time.sleep(0.01)
        threads[-1].join(10)
        assert results == {"third": "429 after 1"}  # refused while the others still wait
        engine.release.set()
        for t in threads:
            t.join(10)
        assert results == {"first": "first", "second": "second", "third": "429 after 1"}
        assert engine.order == ["first", "second"] and idle(server)
    finally:
        engine.release.set()
        stop()


def test_a_client_that_leaves_cancels_its_request(builtin):
    url, engine, server = builtin
    stream = client(url).completions.create(model="builtin", prompt=PROMPT, max_tokens=2000, stream=True)
    next(iter(stream))
    stream.close()  # the connection closes: the worker stops within a token
    assert idle(server)


def test_sixteen_streams_complete_or_are_refused_cleanly(builtin):
    """The load test: 16 concurrent streams against a queue of 8 for a bounded time; each one either finishes
    (finish_reason set, the whole text) or is refused with 429 and Retry-After, and the server goes on serving."""
    url, engine, server = builtin
    local = list(engine.stream(PROMPT, max_new_tokens=48))[-1].text
    outcome: list = [None] * 16

    def one(i):
        try:
            chunks = list(client(url, timeout=60).completions.create(model="builtin", prompt=PROMPT, max_tokens=48,
                                                                     stream=True))
            text = "".join(c.choices[0].text for c in chunks)
            outcome[i] = ("done", text, chunks[-1].choices[0].finish_reason)
        except openai.RateLimitError as err:
            outcome[i] = ("refused", err.response.headers.get("retry-after"), None)
        except Exception as err:  # noqa: BLE001 - anything else is a failure the assert shows
            outcome[i] = ("error", repr(err), None)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert time.time() - t0 < 120 and all(not t.is_alive() for t in threads)
    done = [o for o in outcome if o[0] == "done"]
    refused = [o for o in outcome if o[0] == "refused"]
    assert len(done) + len(refused) == 16, outcome
    assert len(done) >= 8 and all(text == local and finish == "length" for _, text, finish in done)
    assert all(after == "1" for _, after, _ in refused)
    assert idle(server)
    assert client(url).completions.create(model="builtin", prompt=PROMPT, max_tokens=4).choices[0].text


def test_the_command(tmp_path):
    """`spark-nb serve --port 0` prints its URL, serves, and stops on SIGINT (a subprocess: slow-ish)."""
    env = {**os.environ, "SPARK_TEST_SERVE_KEY": "sk-cmd"}
    proc = subprocess.Popen([sys.executable, "-m", "spark_nb.cli", "serve", "--port", "0", "--api-key-env",
                             "SPARK_TEST_SERVE_KEY"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("spark-nb serve: model 'builtin' at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert "sk-cmd" not in line
        answer = client(url, "sk-cmd").completions.create(model="builtin", prompt=PROMPT, max_tokens=4)
        assert answer.usage.completion_tokens == 4
    finally:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    missing = subprocess.run([sys.executable, "-m", "spark_nb.cli", "serve", "--api-key-env", "NO_SUCH_VAR_X"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "NO_SUCH_VAR_X" in missing.stderr


def test_a_token_event_is_the_chunk_as_json():
    """Tokens are written from a format string made once per request: the same JSON the chunk gives."""
    from spark_nb.serve.app import ChatHandler, CompletionsHandler, _event

    class Server:
        name, engine = 'odd "name" {x}', None

    for kind in (ChatHandler, CompletionsHandler):
        handler = kind.__new__(kind)
        handler.server = Server()
        text, host_s, wafer_s = 'a "quote" {brace}\n\u00e9', 0.1234567890123, 1e-7
        event = handler._token_event("id-1", 5).format(json.dumps(text), host_s, wafer_s)
        assert event == _event(handler._chunk("id-1", 5, text, extra={"host_s": host_s, "wafer_s": wafer_s,
                                                                      "wafer": ""}))
