"""Fault campaign: %%spark under interrupts and under generated bad input, in real "Python 3 (spark)" kernels.

Each campaign runs in one kernel started from the repo's kernelspec (test_kernelspec's `installed`), with a fresh
NUMBA_CACHE_DIR shared by the module (empty at first: the first edit compiles the wafer kernels, once).

* test_interrupt_campaign: 100 edits with the built-in model, each interrupted with `km.interrupt_kernel()` at a
  random point: while the model loads (the kernel's first edit, which also compiles the numba kernels; then a
  second wafer's), after a random forward pass, or after the last one (the result made, not applied yet). A hook in
  the kernel (HOOKS) stops the edit at the chosen point and prints a marker; the SIGINT arrives meanwhile and takes
  its normal course (ipykernel cancels the async cell at its next await). Every edit is seen by a frontend that
  renders the view, with or without spark-nb's live-cell extension (`Frontend`), so a result reaches the cell
  either as a `set_next_input` payload or written into the cell over the view's comm.
  Interrupts come only from inside the cell: one that lands before ipykernel has started a cell, or after the cell
  but before its reply, loses the execute_reply in any ipykernel 7.4 kernel, for any code (a plain python3 kernel
  lost 18 of 200 replies to interrupts sent within 4 ms of a cell's start). That is ipykernel's, not %%spark's.
* test_interrupt_while_waiting_for_a_frontend: the one await the campaign's frontends never leave an edit in.
* test_generated_bad_input: hypothesis-made argument lines, instructions and cell bodies, from a client that renders
  nothing (as nbconvert: the result comes back as set_next_input).

What must hold in each case: the cell gets an execute_reply; the kernel answers afterwards; no cell is replaced by
code that does not parse (unless --force asked for it); an interrupted cell is left byte-identical, and the same
edit run again gives exactly what it gave uninterrupted; a usage error is one line without a traceback, and any
other failure one line on stderr.

`pytest --fuzz tests/test_fault_campaign.py` runs a long campaign with a random seed (printed).
"""
from __future__ import annotations

import ast
import random
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from IPython.core.error import UsageError
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.magic_arguments import parse_argstring

from spark_nb.notebook.magics import SparkMagics
from test_kernel_stop import _send, _user
from test_kernelspec import installed  # noqa: F401  (the fixture: the kernelspec in a temporary prefix)
from test_magic_replies import Execution, run, spark_kernel

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.slow

COMPILE_S = 600  # the first edit of a kernel with an empty numba cache compiles every wafer kernel (~15-30 s)

FIB = "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
C2F = "def celsius_to_fahrenheit(celsius):\n    return celsius * 9 / 5 + 32\n"
AVERAGE = ("def average(lst):\n    total = 0\n    for x in lst:\n        total += x\n    return total / len(lst)\n")
NORMALIZE = ("def normalize(values):\n    print(values)\n    total = sum(values)\n    print('total', total)\n"
             "    return [v / total for v in values]\n")
GREET = "def greet(name, n):\n    return 'hello %s, you are %d' % (name, n)\n"
SHAPES = "".join(f"def area{i}(w, h):\n    return w*h*{i}\n\n" for i in range(6))
PYTHON = [FIB, C2F, AVERAGE, NORMALIZE, GREET, SHAPES]

# The interrupt campaign's edits: deterministic (greedy, or seeded sampling; no context, which changes with the
# history), so an edit run again must give exactly what it gave before; all by the model (--model-only where an
# exact refactor would otherwise make the edit without a forward pass to interrupt).
EDITS = [
    "%%spark --no-context add type hints\n" + FIB,
    "%%spark --no-context add a docstring\n" + C2F,
    "%%spark --no-context --model-only rename the variable lst to values\n" + AVERAGE,
    "%%spark --no-context --new --model-only remove the debug prints\n" + NORMALIZE,
    "%%spark --no-context --preview --model-only use f-strings\n" + GREET,
    "%%spark --no-context --temperature 0.8 --seed 3 add docstrings\n" + SHAPES,
]

# Installed in the campaign kernel: `_plan` says where the next %%spark edit stops for the test's interrupt
# ("load": print a marker as the model starts loading; "step": after that many forward passes, or after the last
# one when there are fewer; "done": print a marker after the last pass), `_seen` what happened (the load's start
# and end, the number of passes).
HOOKS = r'''
import signal as _signal, time as _time
_spark = get_ipython().magics_manager.registry["SparkMagics"].session
_plan, _seen = {}, {}


def _pause(where):
    """Print where the edit is and wait there (up to 20 s) until the test's SIGINT arrives. The signal goes on to
    ipykernel's handler: this only notes that it came."""
    came, handler = [], _signal.getsignal(_signal.SIGINT)

    def note(signum, frame):
        came.append(signum)
        handler(signum, frame)

    _signal.signal(_signal.SIGINT, note)
    try:
        print(f"<<pause {where}>>", flush=True)
        end = _time.monotonic() + 20
        while not came and _time.monotonic() < end:
            _time.sleep(0.001)
    finally:
        _signal.signal(_signal.SIGINT, handler)


def _engine_for(model=None, wafer=None, _load=_spark.engine_for):
    if not _plan.pop("load", False):
        return _load(model, wafer)
    _seen["load"] = [_time.time()]
    print("<<load>>", flush=True)  # the test interrupts while the model loads
    try:
        return _load(model, wafer)
    finally:
        _seen["load"].append(_time.time())


def _edit_steps(*args, _steps=_spark.edit_steps, **kwargs):
    at, inner, n = _plan.pop("step", None), _steps(*args, **kwargs), 0
    try:
        while True:
            try:
                value = next(inner)
            except StopIteration as done:
                _seen["steps"] = n
                if at is not None and n < at:
                    _pause("end")  # after the last forward pass: the result is made, not applied yet
                if _plan.pop("done", False):
                    print("<<done>>", flush=True)  # the same, but the test interrupts after the cell goes on
                return done.value
            n += 1
            if n == at:
                _pause(f"step {n}")
            yield value
    finally:
        inner.close()


_spark.engine_for, _spark.edit_steps = _engine_for, _edit_steps
'''


@pytest.fixture(scope="module")
def numba_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("numba-cache")


@pytest.fixture
def kernel(installed, numba_cache):  # noqa: F811
    """One kernel per campaign (the session remembers whether a frontend answers its views, which sets how long an
    edit waits for one), all on the module's numba cache."""
    with spark_kernel(installed, env={"NUMBA_CACHE_DIR": str(numba_cache)}) as (km, kc):
        yield km, kc


def fuzzing(request) -> bool:
    return request.config.getoption("--fuzz")


# -- the interrupt campaign ------------------------------------------------------------------------------------------


class Frontend:
    """What JupyterLab does to the cell with a %%spark view, after view.js and labextension/src/index.ts: renders
    it (saying whether spark-nb's live-cell extension is there) and, with the extension, writes the streamed edit
    into the cell, then the accepted result ({cell: accept}) or the original ({cell: restore}).
    `source` is the cell as the notebook would show it; live_cells None: a client that renders nothing."""

    def __init__(self, kc, source: str, live_cells: bool | None):
        self.kc, self.source, self.live_cells = kc, source, live_cells
        self.view, self.state = None, {}
        self.original = None  # while the view owns the cell (LiveCell): the source it had when bound

    def __call__(self, msg):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_open" and self.view is None and \
                content["data"].get("state", {}).get("_anywidget_id", "").endswith("view.StreamView"):
            self.view, self.state = content["comm_id"], dict(content["data"]["state"])
            if self.live_cells is not None:  # None: a client that renders no widgets never answers
                _send(self.kc, self.view, {"event": "frontend", "live_cells": self.live_cells})
        elif kind == "comm_msg" and content["comm_id"] == self.view:
            data = content["data"]
            if data.get("method") == "update":
                self.state.update(data["state"])
                if "code" in data["state"] and self.state.get("status") == "streaming" and self._own():
                    self.source = self.state["code"]
            elif data.get("method") == "custom":
                action = data["content"].get("cell")
                if action in ("show", "accept") and self._own():
                    self.source = data["content"]["source"]
                if action == "restore" and self.original is not None:
                    self.source = self.original
                if action in ("accept", "restore"):
                    self.original = None  # the view lets go of the cell

    def _own(self) -> bool:
        if self.original is None and self.live_cells and self.state.get("live_cell"):
            self.original = self.source
        return self.original is not None


def outcome(reply: dict, frontend: Frontend) -> tuple[str, str | None]:
    """(the cell's source, the cell inserted below or None) after the request, as the notebook would have them."""
    cell, below = frontend.source, None
    for p in reply["payload"]:
        assert p["source"] == "set_next_input", p
        if p["replace"]:
            cell = p["text"]
        else:
            below = p["text"]
    return cell, below


def assert_parses_where_changed(code: str, result: tuple[str, str | None]) -> None:
    cell, below = result
    for text in ([cell] if cell != code else []) + ([below] if below is not None else []):
        ast.parse(text)  # a cell is only ever replaced by (or given below it) code that parses


@dataclass
class Interrupted:
    code: str
    reply: dict
    result: tuple[str, str | None]
    ex: Execution


def interrupt(km, kc, code: str, plan: str, live_cells: bool, delay: float = 0.0) -> tuple[Interrupted, float]:
    """Run `code` with HOOKS' `_plan` set to `plan`, interrupt it `delay` s after its marker; (what came of it, the
    time the interrupt was sent)."""
    assert _user(kc, f"_plan.update({plan}) or 0") == 0
    frontend = Frontend(kc, code, live_cells)
    ex = Execution(kc, code, on_iopub=frontend)
    marker = ex.read_until(lambda m: m["msg_type"] == "stream" and "<<" in m["content"]["text"], timeout=COMPILE_S)
    assert marker is not None, f"the edit ended before the planned interrupt ({plan}): {ex.stderr}"
    time.sleep(delay)
    sent = time.time()
    km.interrupt_kernel()
    reply = ex.reply(timeout=COMPILE_S)
    return Interrupted(code, reply, outcome(reply, frontend), ex), sent


def assert_kept(done: Interrupted) -> None:
    """The interrupt stopped the edit and left the cell byte-identical; the kernel answers."""
    reply = done.reply
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", \
        (reply.get("ename"), reply.get("evalue"), done.ex.stderr)
    assert reply["payload"] == []
    assert done.result == (done.code, None)  # no set_next_input, nothing written into the cell that stays
    assert done.ex.stderr == ""
    assert _user(done.ex.kc, "1 + 1") == 2


def edit(kc, code: str, live_cells: bool) -> tuple[str, str | None]:
    """Run an edit uninterrupted; the cell (and the cell below) it leaves."""
    frontend = Frontend(kc, code, live_cells)
    reply, ex = run(kc, code, on_iopub=frontend)
    assert reply["status"] == "ok" and ex.errors == [] and ex.stderr == "", (reply, ex.stderr)
    result = outcome(reply, frontend)
    assert_parses_where_changed(code, result)
    return result


def test_interrupt_campaign(kernel, numba_cache, request):
    km, kc = kernel
    seed = random.randrange(2**32) if fuzzing(request) else 18
    n = 400 if fuzzing(request) else 100
    print(f"interrupt campaign: {n} edits, seed {seed}")
    rng = random.Random(seed)
    assert run(kc, HOOKS)[0]["status"] == "ok"
    tally = Counter()

    # 1. The kernel's first edit loads the built-in model and, the numba cache being empty (this test runs first in
    # the module), compiles the wafer kernels, for seconds: interrupted a random moment into that. 2. Another wafer
    # loads another engine: interrupted as it starts.
    cold = not list(numba_cache.rglob("*.nbi"))
    for code, delay in [(EDITS[0], rng.uniform(0.2, 2.0) if cold else 0.0),
                        (EDITS[1].replace("--no-context", "--wafer wse2"), 0.0)]:
        done, sent = interrupt(km, kc, code, "{'load': True}", live_cells=rng.random() < 0.5, delay=delay)
        assert_kept(done)
        start, end = _user(kc, "_seen['load']")
        assert start < sent < end, "the interrupt came after the model had loaded"
        tally["load"] += 1
    assert not cold or list(numba_cache.rglob("*.nbi")), "the first edit compiled nothing into the numba cache"

    # What each edit gives uninterrupted, and how many forward passes it takes.
    expected, passes = {}, {}
    for code in EDITS:
        expected[code] = edit(kc, code, live_cells=rng.random() < 0.5)
        passes[code] = _user(kc, "_seen['steps']")
    assert any(result[0] != code for code, result in expected.items()), "no edit replaced its cell"

    for _ in range(n - 2):
        code = rng.choice(EDITS)
        at = rng.randint(1, passes[code] + 1)  # the last: after the last pass
        done, _ = interrupt(km, kc, code, f"{{'step': {at}}}", live_cells=rng.random() < 0.5)
        assert_kept(done)
        tally["end" if at > passes[code] else "pass"] += 1
        # the next edit works, and gives exactly what the same edit gave before the interrupts
        assert edit(kc, code, live_cells=rng.random() < 0.5) == expected[code]
    print(f"interrupts: {dict(tally)}; all {n} left the cell as it was and the kernel answering")
    assert sum(tally.values()) == n


def test_interrupt_while_waiting_for_a_frontend(kernel):
    """Where no frontend has ever answered a view, a finished edit waits (FRONTEND_WAIT_S) to learn whether the
    live-cell extension is there before applying the result. An interrupt then keeps the cell too, and reads as
    one: KeyboardInterrupt, the request recorded as cancelled (it was a CancelledError with a traceback, the view
    left unfinished and nothing in the history)."""
    km, kc = kernel
    assert run(kc, HOOKS)[0]["status"] == "ok"
    reply, _ = run(kc, "import spark_nb.notebook.magics as _m; _m.FRONTEND_WAIT_S = 60")  # surely still waiting
    assert reply["status"] == "ok"
    code = EDITS[0]
    done, _ = interrupt(km, kc, code, "{'done': True}", live_cells=None, delay=0.1)
    assert_kept(done)
    assert _user(kc, "[r.applied for r in _spark.history]") == ["cancelled"]
    assert run(kc, "_m.FRONTEND_WAIT_S = 0.5")[0]["status"] == "ok"
    assert edit(kc, code, live_cells=None)[0] != code  # the next edit works (and replaces the cell)


# -- generated bad input ---------------------------------------------------------------------------------------------

# Names for `{name}` in instructions: a lone surrogate (a file name read with surrogateescape, say), a NUL, a
# 100,000-character value; and `In` (the history, only in an example: it grows with every case).
NAMESPACE = 'x, y = 1, 2\ns = "\\ud800 \\udcff"\nnul = "a\\x00b"\nbig = "word " * 20_000\n'
HUGE_CELL = "".join(f"x{i} = {i}\n" for i in range(20_000))
HUGE_INSTRUCTION = "add docstrings " * 5_000
BIG = {"HUGE_CELL": HUGE_CELL, "HUGE_INSTRUCTION": HUGE_INSTRUCTION, "FIB": FIB,
       "DEEP_MINUS": "-" * 100_000 + "1\n",  # too deep for Python's parser: MemoryError
       "LONG_SUM": "x = " + "+".join(["1"] * 100_000) + "\n",  # RecursionError
       "NESTED": "x = " + "[" * 150 + "]" * 150 + "\n",
       "REPEATED": "x = 1\n" * 50_000}  # the view's line diff took minutes on 50,000 equal lines

# Lone surrogates a Jupyter client can send: jupyter_client writes messages as UTF-8 with surrogateescape, so only
# U+DC80..U+DCFF get through (as raw bytes 0x80..0xFF, which the kernel reads as U+FFFD); any other lone surrogate
# makes the client itself refuse the message (and a server relaying a browser's), so it never reaches a kernel.
# They reach %%spark from the namespace instead: `{s}`.
SURROGATES = st.sampled_from([chr(c) for c in range(0xDC80, 0xDD00)])
BINARY = st.binary(max_size=40).map(lambda b: b.decode("latin-1"))  # NUL, controls, bytes 0x80-0xFF
BRACES = st.sampled_from(["{x}", "{s}", "{nul}", "{big}", "{unknown}", "{}", "{", "}", "}{", "{{x}}", "{0}",
                          "{x!r}", "{x.real}", "{x[0]}", "{ x }", "{'a': 1}", "f'{x}'"])
INSTRUCTIONS = st.sampled_from(["add docstrings", "add type hints", "rename the variable {x} to y", "use f-strings",
                                "remove the debug prints", "'add a docstring'", "add {unknown} {} {{x}} hints"])
WORD = st.one_of(INSTRUCTIONS, BRACES, st.text(max_size=12), BINARY, st.text(SURROGATES, min_size=1, max_size=2))
INSTRUCTION = st.one_of(INSTRUCTIONS, st.lists(WORD, max_size=6).map(" ".join), st.just("HUGE_INSTRUCTION"))

VALUES = {  # each flag's bad values, and a good one
    "--max-tokens": ["0", "-3", "abc", "1.5", "''", "99999999999999999999", "8"],
    "--temperature": ["-1", "10.5", "nan", "inf", "-inf", "1e-320", "hot", "''", "0.7"],
    "--seed": ["-1", "x", "2.5", "''", "99999999999999999999", "7"],
    "--wafer": ["wse9", "''", "WSE3", "../wse3", "mini"],
    "--model": ["/no/such/folder", "''", "~", ".", "builtin", "{x}"],
}
SWITCHES = ["--preview", "--new", "--force", "--no-context", "--panel", "--preview=yes", "--bogus", "-x", "--", "-",
            "--max-tokens", "--mod", "--n", "--pre"]  # --mod, --pre: argparse abbreviations; --n: ambiguous
FLAG = st.one_of(
    st.sampled_from(SWITCHES),
    st.sampled_from(sorted(VALUES)).flatmap(lambda f: st.sampled_from([f"{f} {v}" for v in VALUES[f]])),
    st.sampled_from(sorted(VALUES)).flatmap(lambda f: st.sampled_from([f"{f}={v}" for v in VALUES[f]])),
)
GOOD_FLAGS = st.lists(st.sampled_from(["--no-context", "--preview", "--new", "--force", "--max-tokens 40",
                                       "--temperature 0.7", "--seed 3", "--wafer mini", "--model builtin"]),
                      max_size=2, unique=True)
LINE = st.builds(lambda flags, instruction, first: " ".join(flags + [instruction] if first else [instruction] + flags),
                 st.one_of(GOOD_FLAGS, st.lists(FLAG, min_size=1, max_size=3)), INSTRUCTION, st.booleans())

CODE = st.sampled_from(PYTHON)
BODY = st.one_of(
    CODE,  # Python, as is or with something added
    st.tuples(CODE, st.one_of(BRACES, st.text(max_size=20), BINARY)).map("".join),
    st.tuples(st.one_of(BRACES, st.text(max_size=20), BINARY), CODE).map("\n".join),
    st.sampled_from(["", " ", "\n", "\n\n\t \n"]),  # empty, whitespace
    st.text(max_size=200),  # any text
    BINARY,
    st.text(st.one_of(SURROGATES, st.characters(max_codepoint=127)), max_size=40),
    st.sampled_from(["これは Python ではない\n", "SELECT * FROM t;\n", "<html></html>\n", "\x00\x01\x02\xff\n",
                     "(" * 300 + ")" * 300 + "\n", "%%time\nx = 1\n", "%%spark add docs\nx = 1\n", "{}\n{x}\n}{\n"]),
    st.sampled_from(["DEEP_MINUS", "LONG_SUM", "NESTED", "REPEATED"]),  # big ones by name (see BIG)
)


def what_the_magic_gets(code: str):
    """The line and cell IPython hands %%spark for `code` (the kernel does the same), or None where the cell is no
    %%spark cell at all (`%%spark\tx`: a magic named `spark\tx`)."""
    tree = ast.parse(TransformerManager().transform_cell(code))
    call = tree.body[0].value
    if call.func.attr != "run_cell_magic" or call.args[0].value != "spark":
        return None
    return call.args[1].value, call.args[2].value


def check_bad_input(kc, line: str, body: str) -> str:
    """Run `%%spark LINE` over BODY and check the reply; what it came to (for the tally)."""
    code = f"%%spark {line}\n{body}"
    got = what_the_magic_gets(code)
    try:
        args = parse_argstring(SparkMagics.spark, got[0]) if got else None
    except (UsageError, ValueError):
        args = None  # the kernel must answer with a UsageError
    reply, ex = run(kc, code)
    assert _user(kc, "1 + 1") == 2  # the kernel answers
    assert ex.errors == [], [e["ename"] + ": " + e["evalue"] for e in ex.errors]  # no traceback shown
    if reply["status"] == "error":
        assert reply["ename"] == "UsageError" and reply["traceback"] == [], (reply["ename"], reply["evalue"][:300])
        assert "\n" not in reply["evalue"] and len(reply["evalue"]) < 300 + len(line), reply["evalue"][:300]
        assert reply["payload"] == []
        return "usage error"
    assert reply["status"] == "ok", reply["status"]
    assert got is not None and args is not None, f"the kernel took arguments that do not parse: {line[:300]!r}"
    assert "Traceback" not in ex.stderr and ex.stderr.count("\n") <= 1, ex.stderr[:2000]  # a failure: one line
    assert len(ex.stderr) < 300 + len(line), ex.stderr[:300]
    for p in reply["payload"]:
        assert p["source"] == "set_next_input" and p["replace"] is (not args.new), p["source"]
        if not args.force:
            ast.parse(p["text"])  # nothing that does not parse replaces a cell, or lands below it
    assert not (args.preview or args.panel) or reply["payload"] == []
    return "applied" if reply["payload"] else "message" if ex.stderr else "no change"


def test_generated_bad_input(kernel, request):
    km, kc = kernel
    reply, _ = run(kc, NAMESPACE)
    assert reply["status"] == "ok", reply
    reply, _ = run(kc, EDITS[1], timeout=COMPILE_S)  # load the model (compiling, if this test runs first) first
    assert reply["status"] == "ok", reply
    tally = Counter()

    @settings(max_examples=2000 if fuzzing(request) else 150, deadline=None, derandomize=not fuzzing(request),
              database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(LINE, BODY)
    @example("--no-context add type hints", "FIB")  # an edit that replaces the cell
    @example("add docstrings", "HUGE_CELL")  # a 20,000-line cell
    @example("HUGE_INSTRUCTION", "FIB")
    @example("rename {s} to {nul} and {big} {In} {unknown} {} {{x}}", "FIB")  # (In: all cells so far)
    @example("add docs", "\udcff\udcfe = 1\n")
    @example('"unclosed', "FIB")
    @example("--temperature 1e-320 add docstrings", "FIB")
    @example("--seed -1 --temperature 0.5 add docstrings", "FIB")
    @example("add docs", "DEEP_MINUS")
    @example("add docs", "LONG_SUM")
    @example("rename x to y", "REPEATED")
    def case(line, body):
        # big texts go by name (BIG), so that a failure report stays readable
        tally[check_bad_input(kc, line.replace("HUGE_INSTRUCTION", HUGE_INSTRUCTION), BIG.get(body, body))] += 1

    case()
    print(f"generated input: {dict(tally)}")
    assert tally["usage error"] and tally["applied"]  # the campaign reached both ends
