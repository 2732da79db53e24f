"""Stop, Redirect and interrupt while `%%spark` streams, in a real kernel driven over the Jupyter protocol.

The kernel runs tests/slow_engine.py (the real EditDecoder path; 40 ms per token, a script that never finishes
by itself) so the timing is in the test's hands. The widget's buttons are what the frontend would send: comm
messages to the StreamView. What must hold: the messages take effect *while* the cell runs (the kernel is busy),
generation ends within a token or two of them, a stopped or interrupted cell is never replaced, and a redirect
continues from the partial edit with the new instruction and applies only a result that parses.
"""
from __future__ import annotations

import ast
import inspect
import queue
import textwrap
import time
from pathlib import Path

import pytest

from spark_nb.train import tokenizer as T

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.slow

CELL = "def f(x):\n    return x\n"

SETUP = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from slow_engine import SlowEngine
    from spark_nb.model import Tokenizer
    from spark_nb.edits.prompt import edit_format
    %load_ext spark_nb

    tok = Tokenizer.from_folder({folder!r})
    fmt = edit_format(tok)
    head = [fmt.line, fmt.keep, fmt.line, fmt.replace] + fmt.text_ids("    return x + 1\\n") + [fmt.insert]
    engine = SlowEngine(tok, head, fmt.text_ids("#")[0])
    engine.serve(get_ipython(), "slow")
''')



@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    T.save_tokenizer(T.train_tokenizer(inspect.getsource(inspect).splitlines() + [CELL], vocab_size=512), folder)
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    reply = kc.execute_interactive(SETUP.format(folder=str(folder), tests=str(Path(__file__).parent)), timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def _stream(kc, code, live_cells=None):
    """Run code; return (msg_id, a function that reads iopub until `until(view_state)` holds, giving the view's
    comm id and merged state). The view's custom messages to the frontend collect in state["sent"]; live_cells:
    answer the view's opening like a frontend with (True) or without (False) the live-cell extension."""
    msg_id = kc.execute(code)
    state, comm = {"sent": []}, {}

    def read(until, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            content = msg["content"]
            opened = content.get("data", {}).get("state", {})
            if msg["msg_type"] == "comm_open" and "presets" in opened:
                comm["controls"] = content["comm_id"]
            if msg["msg_type"] == "comm_open" and "instruction" in opened:
                comm["id"] = content["comm_id"]
                state.update(opened)
                if live_cells is not None:
                    _send(kc, comm["id"], {"event": "frontend", "live_cells": live_cells})
            elif msg["msg_type"] == "comm_msg" and content.get("comm_id") == comm.get("id"):
                data = content["data"]
                if data.get("method") == "custom":
                    state["sent"].append(data["content"])
                state.update(data.get("state", {}))
            if comm and until(state):
                state["controls_comm"] = comm.get("controls")
                return comm["id"], state
        raise AssertionError(f"timed out; view state {state}")

    return msg_id, read


def _send(kc, comm_id, content):
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id,
                                                      "data": {"method": "custom", "content": content}}))
    return time.time()


def _reply(kc, msg_id):
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def _user(kc, expr):
    for _ in range(20):  # after an error (the interrupt) ipykernel aborts requests for a moment: ask again
        reply = kc.execute_interactive("", user_expressions={"v": expr}, timeout=30)
        if reply["content"]["status"] != "aborted":
            return ast.literal_eval(reply["content"]["user_expressions"]["v"]["data"]["text/plain"])
        time.sleep(0.05)
    raise AssertionError(f"the kernel kept aborting requests: {reply['content']}")


def _feeds_after(kc, t):
    return _user(kc, f"sum(when > {t!r} for when in engine.feeds)")


def test_stop_button_ends_the_stream_and_keeps_the_cell(kernel):
    km, kc = kernel
    msg_id, read = _stream(kc, "%%spark --model slow --no-context add one\n" + CELL)
    comm_id, state = read(lambda s: s.get("status") == "streaming" and "return x + 1\n##" in s.get("code", ""))
    assert state["controls"] is True
    sent = _send(kc, comm_id, {"event": "stop"})
    _, state = read(lambda s: s.get("status") not in ("waiting", "streaming"))
    reply = _reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["payload"] == []  # no set_next_input: the cell stays as it was
    assert state["status"] == "stopped"
    assert "return x + 1" in state["code"]  # the partial edit stays visible
    assert _feeds_after(kc, sent) <= 2  # within one token (a second may be in flight when the message lands)


def test_redirect_continues_from_the_partial_edit(kernel):
    km, kc = kernel
    _user(kc, "engine.queue.extend([head, [fmt.line, fmt.keep] * 3 + [fmt.end]]) or 0")
    msg_id, read = _stream(kc, "%%spark --model slow --no-context add one\n" + CELL)
    comm_id, _ = read(lambda s: s.get("status") == "streaming" and "return x + 1\n#" in s.get("code", ""))
    _send(kc, comm_id, {"event": "redirect", "instruction": "keep it as it is now"})
    _, state = read(lambda s: s.get("status") not in ("waiting", "streaming"))
    reply = _reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    (payload,) = reply["content"]["payload"]
    applied = payload["text"]
    assert payload["replace"] is True and applied == "def f(x):\n    return x + 1\n"  # the insert in progress left out
    assert state["status"] == "done" and "keep it as it is now" in state["instruction"]
    second = _user(kc, "tok.decode(engine.prompts[-1])")
    assert "keep it as it is now" in second and "return x + 1" in second and "#" not in second  # the settled edit
    history = _user(kc, "[(r.instruction, r.original) for r in "
                        "get_ipython().magics_manager.registry['SparkMagics'].session.history[-1:]]")
    assert history[0][1] == CELL and history[0][0] == "add one → keep it as it is now"


def test_interrupt_stops_within_a_token_and_the_next_request_works(kernel):
    km, kc = kernel
    msg_id, read = _stream(kc, "%%spark --model slow --no-context add one\n" + CELL)
    read(lambda s: s.get("status") == "streaming" and "return x + 1\n##" in s.get("code", ""))
    sent = time.time()
    km.interrupt_kernel()
    _, state = read(lambda s: s.get("status") not in ("waiting", "streaming"))
    reply = _reply(kc, msg_id)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    assert reply["content"].get("payload", []) == []
    assert state["status"] == "cancelled" and "return x + 1" in state["code"]
    assert _feeds_after(kc, sent) <= 2
    # the next request on the same kernel works: a script that finishes, applied
    _user(kc, "engine.queue.append([fmt.line, fmt.keep, fmt.line, fmt.replace] + fmt.text_ids('    return x + 2\\n')"
              " + [fmt.end]) or 0")
    msg_id, read = _stream(kc, "%%spark --model slow --no-context add two\n" + CELL)
    read(lambda s: s.get("status") not in ("waiting", "streaming"))
    reply = _reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    (payload,) = reply["content"]["payload"]
    assert payload["text"] == "def f(x):\n    return x + 2\n"


def test_with_the_live_cell_extension_the_edit_is_accepted_in_the_cell(kernel):
    """A frontend that has spark-nb's extension gets the result as {cell: accept}; no set_next_input on top."""
    km, kc = kernel
    _user(kc, "engine.queue.append([fmt.line, fmt.keep, fmt.line, fmt.replace] + fmt.text_ids('    return x + 1\\n')"
              " + [fmt.end]) or 0")
    msg_id, read = _stream(kc, "%%spark --model slow --no-context add one\n" + CELL, live_cells=True)
    _, state = read(lambda s: s.get("status") not in ("waiting", "streaming"))
    reply = _reply(kc, msg_id)
    assert reply["content"]["status"] == "ok" and reply["content"]["payload"] == []
    assert state["live_cell"] is True and state["status"] == "done"
    assert state["sent"][-1] == {"cell": "accept", "source": "def f(x):\n    return x + 1\n"}


def test_panel_streams_while_the_kernel_is_idle(kernel):
    """%%spark --panel returns at once; a preset's edit then runs between other requests, Stop ends it, the kernel's
    interrupt stops it too (and leaves the kernel alive), and the next request works."""
    km, kc = kernel
    msg_id, read = _stream(kc, "%%spark --panel --model slow --no-context\n" + CELL, live_cells=True)
    view, state = read(lambda s: s.get("decide") is True)
    assert _reply(kc, msg_id)["content"]["status"] == "ok"  # the cell is done: the kernel is idle
    controls = state["controls_comm"]
    _send(kc, controls, {"event": "run", "instruction": "add one", "source": "%%spark --panel\n" + CELL})
    read(lambda s: s.get("status") == "streaming" and "return x + 1\n##" in s.get("code", ""))
    t0 = time.time()
    assert _user(kc, "1 + 1") == 2  # another request runs between two forward passes
    assert time.time() - t0 < 5
    assert _user(kc, "len(engine.feeds)") < _user(kc, "len(engine.feeds)")  # and the edit goes on
    sent = _send(kc, view, {"event": "stop"})
    _, state = read(lambda s: s.get("status") == "stopped")
    assert _feeds_after(kc, sent) <= 2 and state["sent"][-1] == {"cell": "restore"}

    _send(kc, controls, {"event": "run", "instruction": "add one"})
    read(lambda s: s.get("status") == "streaming")
    sent = time.time()
    km.interrupt_kernel()
    _, state = read(lambda s: s.get("status") not in ("waiting", "streaming"))
    assert state["status"] == "stopped" and state["sent"][-1] == {"cell": "restore"}
    assert _feeds_after(kc, sent) <= 2
    assert _user(kc, "1 + 1") == 2  # the kernel lives on
    _user(kc, "engine.queue.append([fmt.line, fmt.keep, fmt.line, fmt.replace] + fmt.text_ids('    return x + 1\\n')"
              " + [fmt.end]) or 0")
    _send(kc, controls, {"event": "run", "instruction": "add one"})
    _, state = read(lambda s: s.get("status") == "done" and s.get("verdict"))
    assert state["ok"] is True and state["sent"][-1] == {"cell": "show", "source": "def f(x):\n    return x + 1\n"}
    _send(kc, view, {"event": "accept", "source": state["code"], "forced": False})
    _, state = read(lambda s: s.get("status") == "accepted")
    assert _user(kc, "get_ipython().magics_manager.registry['SparkMagics'].session.accepted") == \
        "def f(x):\n    return x + 1\n"
