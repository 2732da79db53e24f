"""The stream view's throttling (a MockComm at the one seam ipywidgets opens comms through), its final state,
the chart's rolling history, and the plain-text fallback."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from spark_nb.edits import EditResult
from spark_nb.engine.events import Stats
from spark_nb.notebook import charts, view
from spark_nb.notebook.view import LiveEdit, line_marks

ORIGINAL = "def f(x):\n    return x*2\n"
EDITED = "def f(x):\n    return x * 2\n"
STATS = Stats(prompt_tokens=20, tokens=200, ttft_s=0.01, tok_per_s=200.0, total_s=1.0, wafer_ttft_s=1e-5,
              wafer_tok_per_s=50000.0, wafer_total_s=0.004, wafer="wse3", dtype="int8")


class MockComm:
    """What ipywidgets needs of a comm; records every message sent."""

    kernel = "mock"
    comm_id = "mock"

    def __init__(self, *args, **kwargs):
        self.sent = []
        MockComm.opened.append(self)

    def send(self, data=None, metadata=None, buffers=None):
        self.sent.append(data)

    def on_msg(self, callback):
        pass

    def on_close(self, callback):
        pass

    def close(self, *args, **kwargs):
        pass


@pytest.fixture
def comms(monkeypatch):
    import ipywidgets.widgets.widget as w

    MockComm.opened = []
    monkeypatch.setattr(w.comm, "create_comm", MockComm)
    return MockComm.opened


def result(code=EDITED, ok=True, error=None):
    return EditResult(code=code if ok else ORIGINAL, original=ORIGINAL, ok=ok, error=error, stats=STATS, text="",
                      proposed=code)


def stream(live, n=200, dt=0.005):
    """n tokens, dt seconds apart on a fake clock; the code grows one character per token."""
    clock = [0.0]
    live.clock = lambda: clock[0]
    for i in range(1, n + 1):
        clock[0] = i * dt
        live.update(EDITED[: 10 + i % 20], i, i * dt, i * dt / 100)
    return n * dt


def test_throttled_to_the_interval(comms):
    live = LiveEdit("fmt", ORIGINAL, widgets=True)
    sent_before = sum(len(c.sent) for c in comms)
    seconds = stream(live)  # 200 tokens over 1 s
    view_msgs = [m for m in live.view.comm.sent if m and m.get("method") == "update"]
    assert live.flushes == len(view_msgs)
    assert seconds / 0.05 <= live.flushes + 1  # at least one per 50 ms of stream time
    assert live.flushes <= seconds / 0.05 + 1  # and not more: never one per token
    total = sum(len(c.sent) for c in comms) - sent_before
    assert total < 200 / 4  # view and chart together, far fewer than tokens
    assert live.view.tokens >= 190  # the latest state, at most one interval behind the stream
    assert live.view.tok_per_s == pytest.approx(200.0, rel=0.01)  # 1 token per 5 ms
    assert live.view.wafer_tok_per_s == pytest.approx(20000.0, rel=0.01)
    assert live.chart.stream and all(len(p) == 3 for p in live.chart.stream)


def test_first_token_is_sent_at_once(comms):
    live = LiveEdit("fmt", ORIGINAL, widgets=True)
    live.clock = lambda: 123.0
    live.update(ORIGINAL, 1, 0.01, 1e-5)
    assert live.flushes == 1 and live.view.status == "streaming" and live.view.ttft_s == 0.01


def test_finish_shows_diff_verdict_and_stats(comms):
    live = LiveEdit("fmt", ORIGINAL, widgets=True)
    stream(live, n=10)
    report = live.finish(result(), "replaced the cell")
    v = live.view
    assert v.status == "done" and v.ok and v.code == EDITED
    assert "+    return x * 2" in v.diff and "-    return x*2" in v.diff
    # the guard only parsed it (no refactor family): not a green verdict
    assert v.verdict == "parses; not checked: replaced the cell" and not v.checked
    assert "200 tokens" in v.summary and "wafer wse3" in v.summary
    assert v.marks == ["", "changed"]
    assert live.chart.requests[-1]["wafer_ttft_ms"] == pytest.approx(0.01)
    assert report.startswith("%%spark fmt\n")
    bad = LiveEdit("x", ORIGINAL, widgets=True)
    bad.finish(result("def f(x:\n", ok=False, error="does not parse: line 1"), "not applied")
    assert not bad.view.ok and "does not parse" in bad.view.verdict and bad.view.status == "done"


def test_plain_text_fallback_prints_the_same_information():
    out = io.StringIO()
    live = LiveEdit("fmt", ORIGINAL, widgets=False, out=out)
    live.show()
    stream(live, n=50)
    live.finish(result(), "replaced the cell")
    text = out.getvalue()
    assert text.startswith("%%spark fmt\n")
    assert "host: TTFT 10.0 ms, 200.0 tok/s" in text and "wafer wse3 (projected)" in text
    assert "+    return x * 2" in text and "parses; not checked: replaced the cell" in text
    out2 = io.StringIO()
    LiveEdit("x", ORIGINAL, widgets=False, out=out2).finish(None, "cancelled")
    assert out2.getvalue() == "%%spark x\ncancelled\n"


def test_line_marks():
    assert line_marks("a\nb\nc\n", "a\nB\nc\nd\n") == ["", "changed", "", "changed"]
    assert line_marks("a\n", "a\n") == [""]


def test_chart_keeps_a_rolling_history(comms):
    chart = charts.LiveChart(requests=[dict(n=i) for i in range(charts.HISTORY + 5)])
    assert len(chart.requests) == charts.HISTORY and chart.requests[0] == dict(n=5)
    point = charts.request_point(result())
    assert point["ttft_ms"] == pytest.approx(10.0) and point["wafer_tok_per_s"] == 50000.0


def test_assets_are_files_beside_the_module():
    for cls, names in ((view.StreamView, ("view.js", "view.css")), (charts.LiveChart, ("charts.js",))):
        for name in names:
            path = Path(view.__file__).parent / name
            source = path.read_text()
            assert not re.search(r"(import|@import|url\()[^;\n]*(https?:|//)", source)  # nothing fetched
    assert str(view.StreamView._esm) == (Path(view.__file__).parent / "view.js").read_text()


def test_verdict_says_whether_the_meaning_was_checked(comms):
    """Green only where the guard compared the meaning (a refactor family) or a program made the edit; a result
    that only parses says 'not checked' (the guard cannot judge a docstring or a fix)."""
    import dataclasses

    checked = LiveEdit("rename", ORIGINAL, widgets=True)
    checked.finish(dataclasses.replace(result(), checked=True), "replaced the cell")
    assert checked.view.verdict == "parses, same meaning: replaced the cell" and checked.view.checked
    words = LiveEdit("add a docstring", ORIGINAL, widgets=True)  # the same meaning, but the words are the edit
    words.finish(dataclasses.replace(result(), checked=True, family_hint="add_docstrings"), "replaced the cell")
    assert words.view.verdict == "parses, same meaning; its words not checked: replaced the cell"
    assert not words.view.checked  # amber, not green
    carried = LiveEdit("add type hints", ORIGINAL, widgets=True)  # the answer held more than the hints
    carried.finish(dataclasses.replace(result(), checked=True, family_hint="add_type_hints", carried="type hints"),
                   "replaced the cell")
    assert carried.view.verdict == ("parses, same meaning: replaced the cell; only its type hints taken, the rest of "
                                    "the model's answer left out")
    exact = LiveEdit("rename", ORIGINAL, widgets=True)
    exact.finish(dataclasses.replace(result(), checked=True, style="exact", stats=None,
                                     text="exact refactor: rename x -> y", seconds=0.001), "replaced the cell")
    assert exact.view.verdict == "exact refactor: replaced the cell"
    assert exact.view.summary == "exact refactor: rename x -> y (1.0 ms, no model)"
