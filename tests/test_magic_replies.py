"""Every bad `%%spark` / `%spark` input ends with an execute_reply, in a real "Python 3 (spark)" kernel.

Issue #18: in a kernel `%%spark` runs as an async cell, and ipykernel (7.4) builds a failed async cell's reply from
`shell._last_traceback`, which only its synchronous `run_cell` clears and only a shown traceback sets. A UsageError
is shown without one, so in a kernel where no cell had run synchronously yet `do_execute` died with an
AttributeError and sent no reply (the cell never finished), and after a failed cell the reply carried that cell's
traceback. The fix (`run.clear_last_traceback`, a pre_execute hook) clears it before every execution.

The kernel comes from the repo's kernelspec as `spark-nb install-kernel --prefix` installs it (test_kernelspec's
`installed`). The helpers here (`spark_kernel`, `Execution`, `run`) serve test_fault_campaign too.
"""
from __future__ import annotations

import os
import queue
import time
from contextlib import contextmanager

import pytest

from test_kernel_stop import _user
from test_kernelspec import installed  # noqa: F401  (the fixture: the kernelspec in a temporary prefix)

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.slow

REPLY_S = 30  # far beyond any reply here (a usage error takes milliseconds); a hung cell fails the test at this
CELL = "def area(w, h):\n    return w * h\n"

# (id, code, what the message says). The %%spark cases come first: the bug hung them only in a kernel where no
# cell had run synchronously yet, and a %spark line (a synchronous cell) would end that state for those after it.
CELL_CASES = [
    ("no-instruction", "%%spark\n" + CELL, "give an instruction"),
    ("quotes-only-instruction", '%%spark ""\n' + CELL, "give an instruction"),
    ("empty-cell", "%%spark add docstrings\n", "the cell is empty"),
    ("blank-cell", "%%spark add docstrings\n   \n\t\n", "the cell is empty"),
    ("unknown-flag", "%%spark --bogus add docstrings\n" + CELL, "unrecognized arguments: --bogus"),
    ("preview-and-new", "%%spark --preview --new add docstrings\n" + CELL, "exclude each other"),
    ("max-tokens-zero", "%%spark --max-tokens 0 add docstrings\n" + CELL, "--max-tokens must be at least 1"),
    ("max-tokens-not-int", "%%spark --max-tokens many add docstrings\n" + CELL, "invalid int value: 'many'"),
    ("temperature-negative", "%%spark --temperature -1 add docstrings\n" + CELL, "--temperature must be 0"),
    ("temperature-nan", "%%spark --temperature nan add docstrings\n" + CELL, "--temperature must be 0"),
    ("temperature-denormal", "%%spark --temperature 1e-320 add docstrings\n" + CELL, "--temperature must be 0"),
    ("temperature-not-float", "%%spark --temperature hot add docstrings\n" + CELL, "invalid float value: 'hot'"),
    ("seed-negative", "%%spark --seed -1 add docstrings\n" + CELL, "--seed must be 0 or more"),
    ("seed-not-int", "%%spark --seed x add docstrings\n" + CELL, "invalid int value: 'x'"),
    ("unknown-wafer", "%%spark --wafer wse9 add docstrings\n" + CELL, "--wafer: "),
    ("flag-without-value", "%%spark add docstrings --model\n" + CELL, "expected one argument"),
    ("switch-with-value", "%%spark --preview=yes add docstrings\n" + CELL, "ignored explicit argument 'yes'"),
    ("unclosed-quote", '%%spark "add docstrings\n' + CELL, "No closing quotation"),
    ("panel-with-preview", "%%spark --panel --preview\n" + CELL, "--panel takes no"),
    ("panel-empty-cell", "%%spark --panel\n", "the cell is empty"),
]
LINE_CASES = [
    ("no-command", "%spark", "%spark needs a command"),
    ("unknown-command", "%spark bogus", "invalid choice: 'bogus'"),
    ("load-without-path", "%spark load", "%spark load takes a MODEL"),
    ("path-for-status", "%spark status extra", "other commands take none"),
    ("line-unknown-flag", "%spark status --bogus", "unrecognized arguments: --bogus"),
    ("line-unclosed-quote", '%spark load "x', "No closing quotation"),
]


@contextmanager
def spark_kernel(spec_manager, env: dict | None = None):
    """A kernel from the installed "spark" kernelspec (`env`: extra environment variables); yields (km, kc)."""
    km = jupyter_client.KernelManager(kernel_name="spark", kernel_spec_manager=spec_manager)
    km.start_kernel(env={**os.environ, **(env or {})})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


class Execution:
    """One execute_request: its reply and what it printed, read from the channels as they come."""

    def __init__(self, kc, code: str, on_iopub=None):
        self.kc, self.code, self.on_iopub = kc, code, on_iopub  # on_iopub: sees every iopub message read
        # stop_on_error=False: a failed cell must not make the kernel abort the request after it
        self.msg_id = kc.execute(code, stop_on_error=False)
        self.stdout = self.stderr = ""
        self.errors: list[dict] = []  # iopub `error` messages: a traceback shown
        self.idle = False

    def read_until(self, done, timeout: float = REPLY_S) -> dict | None:
        """Read iopub until `done(msg)` holds for a message (returns it) or the kernel goes idle after this request
        (returns None). Output counts only from this request's messages."""
        deadline = time.monotonic() + timeout
        while not self.idle:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the kernel was still busy {timeout} s after {self.code[:80]!r}: the cell "
                                     "never finishes") from None
            if self.on_iopub is not None:
                self.on_iopub(msg)
            kind, content = msg["msg_type"], msg["content"]
            if msg["parent_header"].get("msg_id") == self.msg_id:  # not another request's (a panel's, say)
                if kind == "stream":
                    setattr(self, content["name"], getattr(self, content["name"]) + content["text"])
                elif kind == "error":
                    self.errors.append(content)
                elif kind == "status" and content["execution_state"] == "idle":
                    self.idle = True
            if done(msg):
                return msg
        return None

    def reply(self, timeout: float = REPLY_S) -> dict:
        """The execute_reply's content. The request's iopub is read first, up to the kernel going idle after it,
        so that `on_iopub` (a frontend answering the cell's widgets, say) sees everything while the cell runs."""
        self.read_until(lambda msg: False, timeout)
        deadline = time.monotonic() + 10  # the reply goes out before the kernel says it is idle
        while True:
            try:
                msg = self.kc.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no execute_reply to {self.code[:80]!r}: the cell never finishes") from None
            if msg["parent_header"].get("msg_id") == self.msg_id:
                return msg["content"]


def run(kc, code: str, timeout: float = REPLY_S, on_iopub=None) -> tuple[dict, Execution]:
    """Execute `code`; (the reply's content, the Execution with its output)."""
    ex = Execution(kc, code, on_iopub)
    return ex.reply(timeout), ex


def assert_usage_error(reply: dict, ex: Execution, says: str = "") -> None:
    """A user error's reply: status error, a UsageError of one short line, no traceback, nothing applied."""
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    assert reply["traceback"] == [], reply["traceback"]  # no traceback for a user error, nor an earlier cell's
    assert says in reply["evalue"] and "\n" not in reply["evalue"], reply["evalue"]
    assert ex.errors == []  # no traceback shown either: the message went to stderr
    assert ex.stderr == f"UsageError: {reply['evalue']}\n", ex.stderr
    assert reply["payload"] == []


@pytest.fixture(scope="module")
def fresh(installed):  # noqa: F811
    """A kernel in which no cell has run yet (the state in which the bug hung every %%spark usage error)."""
    with spark_kernel(installed) as (km, kc):
        yield kc


@pytest.mark.parametrize("code, says", [c[1:] for c in CELL_CASES + LINE_CASES],
                         ids=[c[0] for c in CELL_CASES + LINE_CASES])
def test_bad_input_gets_a_short_usage_error_reply(fresh, code, says):
    reply, ex = run(fresh, code)
    assert_usage_error(reply, ex, says)
    assert len(reply["evalue"]) < 200


@pytest.mark.parametrize("code, says", [c[1:] for c in CELL_CASES], ids=[c[0] for c in CELL_CASES])
def test_usage_error_after_a_failed_cell_carries_no_stale_traceback(fresh, code, says):
    reply, ex = run(fresh, "1 / 0")
    assert reply["ename"] == "ZeroDivisionError" and reply["traceback"]
    reply, ex = run(fresh, code)
    assert_usage_error(reply, ex, says)


def test_unloadable_model_is_one_message_and_the_kernel_goes_on(fresh):
    """A failure that is not a usage error (no model at --model) is printed as one line; the cell ends `ok`."""
    reply, ex = run(fresh, "%%spark --model /no/such/folder add docstrings\n" + CELL)
    assert reply["status"] == "ok" and reply["payload"] == [] and ex.errors == []
    assert ex.stderr.startswith("spark: cannot load the model: model folder /no/such/folder does not exist")
    assert ex.stderr.count("\n") == 1
    assert _user(fresh, "1 + 1") == 2
