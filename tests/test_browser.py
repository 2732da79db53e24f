"""A user in JupyterLab: %%spark cells and the refactor panel in headless Chromium (Debian's, driven by
playwright-core from tests/browser/*.mjs) against a real server and kernel, with spark-nb's JupyterLab extension.

What must hold (lab.mjs): an edit streams and replaces the cell with code that parses (or, when it does not parse,
leaves it as typed); Stop, clicked while streaming, ends the edit and leaves the cell exactly as typed; Redirect,
typed while streaming, continues from the partial edit and applies only code that parses.
And (panel.mjs): a panel preset streams into the cell's source at >= 20 updates a second without garbling a line,
Accept keeps the result as one undoable change (Ctrl+Z gives the original back), Stop and Reject put the original
back exactly, each within 100 ms of the click; a notebook saved while a cell shows an edit nobody accepted reopens
with the original; typing in the cell mid-stream stops it and keeps the user's text;
`%%spark` streams into its cell the same way. Screenshots are kept in artifacts/browser/.

Needs /usr/bin/chromium, node and `npm ci` in tests/browser (.ci/run installs all three and sets
SPARK_NB_REQUIRE_BROWSER=1, which turns a missing piece into a failure instead of a skip).
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from live_server import running

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "browser"
SHOTS = ROOT / "artifacts" / "browser"

pytestmark = pytest.mark.slow

FIRST = "def celsius_to_fahrenheit(celsius):\n    return celsius * 9 / 5 + 32"
LONG = "\n".join(
    f"def step_{i}(values, factor):\n    result = []\n    for v in values:\n        result.append(v * factor + {i})\n"
    f"    return result\n" for i in range(12))


# Cell 0. The first edit runs the built-in model; Stop and Redirect get `--model slow` (tests/slow_engine.py, 40 ms
# a token, endless until stopped or redirected), so the button is always clicked mid-stream.
SETUP = """%load_ext spark_nb
import sys
sys.path.insert(0, {tests!r})
from slow_engine import SlowEngine
from spark_nb.edits.prompt import edit_format
from spark_nb.model import Tokenizer
from spark_nb.edits import BUILTIN

tok = Tokenizer.from_folder(BUILTIN)
fmt = edit_format(tok)
head = [fmt.line, fmt.keep, fmt.line, fmt.replace] + fmt.text_ids("    result = []  # collected here\\n") + [fmt.insert]
slow = SlowEngine(tok, head, fmt.text_ids("\\n")[0])
slow.queue += [head, head, [fmt.line, fmt.keep] * 100 + [fmt.end]]  # stop: endless; redirect: endless, then a finish
slow.serve(get_ipython(), "slow")"""


# The panel notebook: a quick scripted engine (tests/slow_engine.py) that comments every line, so the text changes
# with every token while it streams.
PANEL_SETUP = """%load_ext spark_nb
import sys
sys.path.insert(0, {tests!r})
from slow_engine import SlowEngine
from spark_nb.edits.prompt import edit_format
from spark_nb.model import Tokenizer
from spark_nb.edits import BUILTIN

tok = Tokenizer.from_folder(BUILTIN)
fmt = edit_format(tok)
code = {code!r}
script = []
for line in code.splitlines(keepends=True):
    script.append(fmt.line)
    if line.strip():
        script += [fmt.replace] + fmt.text_ids(line.rstrip("\\n") + "  # noted\\n")
    else:
        script.append(fmt.keep)
script.append(fmt.end)
slow = SlowEngine(tok, script, fmt.end, delay=0.01)
slow.serve(get_ipython(), "slow")"""
COMMENTED = "\n".join(line + "  # noted" if line.strip() else line for line in LONG.split("\n"))


def _missing() -> str | None:
    if not Path("/usr/bin/chromium").exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (HERE / "node_modules" / "playwright-core").exists():
        return "playwright-core is not installed (npm ci --prefix tests/browser)"
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = _missing()
    if reason:
        if os.environ.get("SPARK_NB_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(src) for src in (SETUP.format(tests=str(Path(__file__).parent)),
                                                           "%%spark add a docstring\n" + FIRST,
                                                           "%%spark --model slow add docstrings\n" + LONG,
                                                           "%%spark --model slow add comments\n" + LONG)]
    nbformat.write(nb, root / "check.ipynb")
    nbformat.write(nb, root / "check.ipynb.typed")  # what the user typed, to compare the saved notebook with
    panel = nbformat.v4.new_notebook(metadata=nb.metadata)
    panel.cells = [nbformat.v4.new_code_cell(src) for src in (
        PANEL_SETUP.format(tests=str(Path(__file__).parent), code=LONG + "\n"),
        "%%spark --panel --model slow\n" + LONG, "%%spark --model slow add comments\n" + LONG)]
    nbformat.write(panel, root / "panel.ipynb")
    news = root / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no "Jupyter news?" toast over the cells
    with running("lab", root, "--expose-app-in-browser", f"--LabApp.user_settings_dir={root / 'settings'}",
                 f"--LabApp.workspaces_dir={root / 'workspaces'}") as url:
        yield url, root


def test_edit_stop_and_redirect_in_jupyterlab(lab):
    url, root = lab
    seen = _node(url, "lab.mjs", "check.ipynb", root)

    typed = [c.source for c in nbformat.read(root / "check.ipynb.typed", 4).cells]
    saved = [c.source for c in nbformat.read(root / "check.ipynb", 4).cells]  # saved by the browser at the end
    assert saved[len(typed):] in ([], [""])  # Shift+Enter on the last cell adds an empty one, nothing else

    edit = seen["steps"]["edit"]
    assert edit["status"] == "done", edit
    if "replaced the cell" in edit["verdict"]:  # applied: the cell is now the edited code
        assert saved[1] != typed[1] and "%%spark" not in saved[1]
        ast.parse(saved[1])
    else:  # a result that does not parse, or no change: the cell stays exactly as typed
        assert saved[1] == typed[1], edit

    stop = seen["steps"]["stop"]
    assert stop["status"] == "stopped", stop
    assert saved[2] == typed[2]  # the cell as typed, %%spark line included
    assert stop["partial"].strip()  # what was streamed stays visible

    redirect = seen["steps"]["redirect"]  # the slow engine rewrote line 2, then the redirect kept every line
    assert redirect["status"] == "done" and "→ add type hints" in redirect["title"], redirect
    assert "replaced the cell" in redirect["verdict"], redirect
    assert saved[3] == LONG.replace("    result = []\n", "    result = []  # collected here\n", 1)
    for name in ("edit-done", "stopped", "redirected", "notebook"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000


def _node(url, script, notebook, root):
    SHOTS.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(["node", str(HERE / script), f"{url}/?token=tok", notebook, str(SHOTS)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert "error" not in seen, f"{seen}\n{(root / 'lab.log').read_text()[-3000:]}"
    assert seen["page_errors"] == []
    return seen


def _updates_per_second(changes) -> float:
    times = [t for t, _ in changes]
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e3)


def _no_garbled_lines(changes, original: str, final: str) -> None:
    """Every state the cell showed while streaming is made of the original's lines, the result's lines, and at
    most the one line being written (a prefix of a result line): no character dropped or out of place."""
    whole = set(original.splitlines()) | set(final.splitlines())
    for _, source in changes:
        partial = [ln for ln in source.splitlines() if ln not in whole]
        assert len(partial) <= 1 and all(any(f.startswith(p) for f in final.splitlines()) for p in partial), source


def test_panel_streams_into_the_cell_with_accept_reject_stop_undo(lab):
    url, root = lab
    seen = _node(url, "panel.mjs", "panel.ipynb", root)
    original = "%%spark --panel --model slow\n" + LONG
    assert seen["original"] == original

    accept = seen["steps"]["accept"]  # the preset's edit streamed into the cell, then Accept, then Ctrl+Z
    streaming = [c for c in accept["streamed"] if c[1] != COMMENTED]
    assert len(streaming) >= 10 and _updates_per_second(streaming) >= 20, accept["streamed"]
    _no_garbled_lines(accept["streamed"], original, COMMENTED)
    assert accept["done"] == COMMENTED and accept["accepted"] == COMMENTED  # the panel's line goes, like %%spark
    last = accept["accept_changes"][-1]
    assert last[1] == COMMENTED and last[0] - accept["accept_at"] < 100
    assert accept["undo_restores"], "Ctrl+Z after Accept did not give the original back"

    stop = seen["steps"]["stop"]
    assert stop["restored"] and stop["source"] == original
    restored_at = next(t for t, src in stop["changes"] if src == original and t >= stop["stop_at"])
    assert restored_at - stop["stop_at"] < 100
    assert stop["changes"][-1][1] == original  # nothing streamed in after the Stop

    reject = seen["steps"]["reject"]
    assert reject["restored"] and reject["status"] == "rejected"
    assert reject["changes"][-1][1] == original and reject["changes"][-1][0] - reject["reject_at"] < 100

    reload = seen["steps"]["reload"]  # saved while showing an unaccepted edit, reopened: the original is back
    assert reload["shown"] == COMMENTED and reload["reopened"] == original

    typed = seen["steps"]["typed"]  # the user's keystrokes won: the stream stopped, their text stayed
    assert typed["status"] == "stopped" and typed["source"].endswith("# mine"), typed
    assert typed["later"] == typed["source"] and "you typed" in typed["verdict"]

    magic = seen["steps"]["magic"]
    assert magic["original"] == "%%spark --model slow add comments\n" + LONG
    assert magic["applied"] == COMMENTED and "replaced the cell" in magic["verdict"], magic["verdict"]
    streaming = [c for c in magic["changes"] if c[1] != COMMENTED]
    assert len(streaming) >= 10 and _updates_per_second(streaming) >= 20
    _no_garbled_lines(magic["changes"], magic["original"], COMMENTED)
    assert magic["undo_restores"]
    for name in ("panel-streaming", "panel-done", "panel-accepted", "panel-stopped", "magic-streaming"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000

    saved = [c.source for c in nbformat.read(root / "panel.ipynb", 4).cells]
    assert saved[1] == typed["source"] and saved[2] == magic["original"]  # zero lost cells
    (SHOTS / "panel-timings.json").write_text(json.dumps({  # what was measured, for the record
        "panel_updates_per_s": _updates_per_second([c for c in accept["streamed"] if c[1] != COMMENTED]),
        "magic_updates_per_s": _updates_per_second(streaming),
        "accept_ms": last[0] - accept["accept_at"], "stop_ms": restored_at - stop["stop_at"],
        "reject_ms": reject["changes"][-1][0] - reject["reject_at"]}, indent=1))


def _completion_bench():
    """bench/completion_latency.py (not a package): the notebook, the run and the summary, shared with the script
    that prints the latencies for the README."""
    spec = importlib.util.spec_from_file_location("completion_bench", ROOT / "bench" / "completion_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inline_completion_streams_cancels_and_reports_a_failed_model(lab):
    """Ghost text from the server's warm built-in engine while typing (tests/browser/completion.mjs): the provider
    is registered, a suggestion streams token by token, Alt+ArrowRight accepts its first word, a keystroke cancels
    the request in flight, typing is as
    quick with completion on as off, the socket's overhead is measured beside one POST each (with where a
    keystroke's request spends its time, and a no-op round trip on each transport), and a model that cannot load
    says so once however many keystrokes ask."""
    url, root = lab
    bench = _completion_bench()
    seen = bench.run(f"{url}/?token=tok", bench.write_notebook(root), SHOTS, trials=12, pings=30)
    assert "error" not in seen, f"{seen}\n{(root / 'lab.log').read_text()[-3000:]}"
    assert seen["page_errors"] == []
    assert seen["registered"] == {"plugin": True, "provider": "spark-nb"}

    stream = seen["steps"]["stream"]  # context = the cell above, prefix = the cell up to the cursor
    assert stream["request"]["context"] == bench.CELLS[0] and stream["request"]["prefix"] == bench.CELLS[1] + "f"
    assert stream["tokens"] >= 2 and stream["done"]["stats"]["tokens"] >= 2 and stream["shown"]

    word = seen["steps"]["word"]  # Alt+ArrowRight takes the suggestion's first word into the cell
    assert word["after"].startswith(word["before"]) and len(word["after"]) > len(word["before"]), word
    assert word["after"][len(word["before"]):].startswith(word["ghost"]), word  # the ghost's first token, then more

    frames = seen["steps"]["cancel"]["frames"]  # "ff" 5 ms apart: the first request is cancelled by the second
    requests = [f for f in frames if f[0] == "sent" and f[2] == "request"]
    assert len(requests) == 2
    first, second = requests[0][3], requests[1][3]
    cancels = [i for i, f in enumerate(frames) if f[0] == "sent" and f[2] == "cancel" and f[3] == first]
    assert cancels and cancels[0] < frames.index(requests[1]), frames  # cancelled before the next one went out
    assert any(f[0] == "received" and f[2] == "done" and f[3] == second for f in frames), frames

    summary = bench.summarize(seen)
    for transport in ("websocket", "http"):
        s = summary[transport]
        assert s["missed"] <= s["keystrokes"] // 4, s  # nearly every keystroke gets its ghost text
        assert s["ghost_p50"] < 500, s  # generous: the machine is shared; bench/completion_latency.py reports
    assert summary["websocket"]["echo_p50"] < summary["off"]["echo_p50"] + 10  # typing is not slowed
    assert summary["legs"]["websocket"]["n"] >= 6 and summary["legs"]["http"]["n"] >= 6, summary["legs"]
    ping = summary["ping"]
    assert all(ping[t]["n"] == 30 and ping[t]["p50"] > 0 for t in ("websocket", "http", "http_new_connection"))
    assert ping["connections"]["http_new_connection"] == 30, ping  # `Connection: close` made each POST a new one

    toasts = seen["steps"]["failed"]["toasts"]
    assert len(toasts) == 1 and toasts[0].startswith("spark-nb could not load /nonexistent/spark-nb-model"), toasts
    (SHOTS / "completion-latency.json").write_text(json.dumps(summary, indent=1))
    assert (SHOTS / "completion-ghost.png").stat().st_size > 10_000
