"""The stream view: the edit appearing while the cell runs, then its diff, verdict and stats.

    live = LiveEdit(instruction, code, widgets=True)   # widgets=False: plain text (terminal IPython, no frontend)
    live.show()
    result = spark.edit(code, instruction, on_token=live.update)
    live.finish(result, applied="replaced")

`StreamView` holds only traits (its ESM and CSS are view.js / view.css beside this file); its Stop button and
redirect box send messages that `LiveEdit` hands to `on_stop()` / `on_redirect(instruction)`. `LiveEdit` keeps
the latest state in plain Python on every token and copies it into the widgets at most every `interval` seconds,
in one message per widget (`hold_sync`), so a fast stream costs a few messages a second, never one per token; the
first token is always sent at once.

Live cells: where spark-nb's JupyterLab extension is active (labextension/), a view with `live_cell` set writes
the edit into the cell that owns it while it streams, and the kernel ends the stream with `send_cell("accept",
code)` (one undoable change) or `send_cell("restore")` (the original, exactly). The view says on render whether the
extension is there (`frontend_live`: None until it has said), so the kernel knows whether to fall back to
`set_next_input`. These are messages, not traits: a reopened notebook never replays them into a cell.
"""
from __future__ import annotations

import difflib
import sys
import time
from collections import deque
from pathlib import Path

import anywidget
import traitlets as t

from .charts import LiveChart, request_point

__all__ = ["StreamView", "LiveEdit", "line_marks", "unified_diff", "text_report"]

HERE = Path(__file__).parent
# Finished %%spark views whose widgets stay live. ipywidgets keeps every widget (and its comm) in the kernel until
# it is closed, and the kernel cannot tell whether an output is still on screen (a re-run cell replaced it): left
# open, every request ever made kept its view, chart and their layouts (~35 KB) for the kernel's lifetime. So the
# oldest beyond this many are frozen: their display becomes the plain-text report and their widgets are closed.
LIVE_VIEWS = 50
_live: deque[LiveEdit] = deque()  # finished LiveEdits that own their widgets, oldest first


class StreamView(anywidget.AnyWidget):
    # The source text, not the Path: for a Path anywidget connects a per-instance lambda holding `self` to a
    # class-wide FileContents signal (for hot reload), so no instance is ever freed, closed or not (anywidget issue
    # #929); with a view per %%spark request, every request's widgets and all they referenced stayed in the kernel.
    # (The cost: anywidget's hot reload of view.js, a development aid, does not apply to these classes.)
    _esm = (HERE / "view.js").read_text(encoding="utf-8")
    _css = (HERE / "view.css").read_text(encoding="utf-8")

    instruction = t.Unicode("").tag(sync=True)
    original = t.Unicode("").tag(sync=True)
    code = t.Unicode("").tag(sync=True)  # the edit so far (unvisited input lines included), then the result
    marks = t.List(t.Unicode()).tag(sync=True)  # per line of `code`: "" unchanged, "changed" against the original
    status = t.Unicode("waiting").tag(sync=True)  # waiting, streaming, done, cancelled, error
    tokens = t.Int(0).tag(sync=True)
    elapsed_s = t.Float(0.0).tag(sync=True)
    tok_per_s = t.Float(0.0).tag(sync=True)  # host, measured over the last update interval
    ttft_s = t.Float(0.0).tag(sync=True)
    wafer_tok_per_s = t.Float(0.0).tag(sync=True)  # projected for the wafer
    wafer_ttft_s = t.Float(0.0).tag(sync=True)
    diff = t.Unicode("").tag(sync=True)  # unified diff at the end
    verdict = t.Unicode("").tag(sync=True)  # the guard's verdict and what was done with the result
    ok = t.Bool(False).tag(sync=True)
    checked = t.Bool(False).tag(sync=True)  # ok with its meaning checked (or exact): green; ok unchecked: amber
    summary = t.Unicode("").tag(sync=True)  # final stats, one line
    controls = t.Bool(False).tag(sync=True)  # show Stop and Redirect while streaming (the kernel can act on them)
    live_cell = t.Bool(False).tag(sync=True)  # stream into the owning cell (with spark-nb's frontend extension)
    decide = t.Bool(False).tag(sync=True)  # at the end show Accept / Reject / Retry: the user decides (the panel)
    exact = t.Bool(False).tag(sync=True)  # a program made the edit (no Retry: it would make the same one)


def line_marks(original: str, code: str) -> list[str]:
    """Per line of `code`: "" where it matches the original, "changed" where it was replaced or inserted."""
    a, b = original.splitlines(), code.splitlines()
    # Lines both start or both end with stay as they are, and only the stretch between is matched: SequenceMatcher
    # is quadratic in lines that repeat (a cell of 50,000 equal lines took minutes), and an edit changes a stretch.
    same = min(len(a), len(b))
    head = next((i for i in range(same) if a[i] != b[i]), same)
    tail = next((i for i in range(same - head) if a[-1 - i] != b[-1 - i]), same - head)
    marks = [""] * head + ["changed"] * (len(b) - head - tail) + [""] * tail
    middle = difflib.SequenceMatcher(None, a[head : len(a) - tail], b[head : len(b) - tail], autojunk=False)
    for block in middle.get_matching_blocks():
        marks[head + block.b : head + block.b + block.size] = [""] * block.size
    return marks


def unified_diff(original: str, code: str) -> str:
    lines = difflib.unified_diff(original.splitlines(keepends=True), code.splitlines(keepends=True),
                                 "cell (before)", "cell (after)")
    return "".join(ln if ln.endswith("\n") else ln + "\n" for ln in lines)


def _verdict(result, applied: str) -> str:
    if result is None:
        return f"{applied}"
    # a program's edit; the model's with its meaning compared (a refactor), its words unread where they are the
    # change; or the model's, only parsed
    kind = ("exact refactor" if result.style == "exact" else "parses, same meaning" if result.judged
            else "parses, same meaning; its words not checked" if result.checked else "parses; not checked")
    if result.ok and result.code == result.original:
        return f"{kind}, no change"
    if result.ok and result.carried:  # the streamed answer held more than the cell now does
        return f"{kind}: {applied}; only its {result.carried} taken, the rest of the model's answer left out"
    if result.ok:
        return f"{kind}: {applied}"
    return f"{applied}: {result.error}"


def stats_line(stats) -> str:
    if stats is None:
        return ""
    if stats.wafer == "remote":  # a server's model (spark_nb.backends): measured here, no wafer projection
        return f"{stats.tokens} tokens | remote: TTFT {stats.ttft_s * 1e3:.1f} ms, {stats.tok_per_s:.1f} tok/s"
    reused = getattr(stats, "reused", 0)  # TTFT is short when the cache held most of the prompt: say so
    held = f" ({reused} of {stats.prompt_tokens} prompt tokens held from the last request)" if reused else ""
    line = (f"{stats.tokens} tokens | host: TTFT {stats.ttft_s * 1e3:.1f} ms{held}, {stats.tok_per_s:.1f} tok/s | "
            f"wafer {stats.wafer or '?'} (projected): TTFT {stats.wafer_ttft_s * 1e3:.3f} ms, "
            f"{stats.wafer_tok_per_s:,.0f} tok/s")
    drafted = getattr(stats, "drafted", 0)
    return line + (f" | speculative: {stats.accepted} of {drafted} draft tokens accepted" if drafted else "")


def summary_line(result) -> str:
    """The line under a finished edit: the model's speed, or which exact refactor made it (no model ran)."""
    if result is None:
        return ""
    if result.style == "exact":
        return f"{result.text} ({result.seconds * 1e3:.1f} ms, no model)"
    return stats_line(result.stats)


def text_report(instruction: str, original: str, result, applied: str) -> str:
    """The plain-text form of a finished request: what the widget shows at the end."""
    out = [f"%%spark {instruction}"]
    if result is not None:
        out.append(summary_line(result))
        shown = result.proposed if result.proposed is not None else result.code
        diff = unified_diff(original, shown)
        out.append(diff.rstrip("\n") if diff else "(no change)")
    out.append(_verdict(result, applied))
    return "\n".join(x for x in out if x) + "\n"


class LiveEdit:
    """Drives a StreamView and a LiveChart (or plain text) through one request; see the module docstring."""

    def __init__(self, instruction: str, original: str, *, widgets: bool, history=(), interval: float = 0.05,
                 clock=time.perf_counter, out=None, view: StreamView | None = None, chart: LiveChart | None = None):
        """`view` and `chart`: widgets to reuse (a panel keeps one pair across requests and routes their
        messages itself); by default a new pair, whose messages come here."""
        self.instruction, self.original, self.widgets = instruction, original, widgets
        self.interval, self.clock, self.out = interval, clock, out or sys.stdout
        self.state = dict(code=original, tokens=0, host_s=0.0, wafer_s=0.0)
        self._ttft = self._wafer_ttft = None
        self.on_stop = lambda: None
        self.on_redirect = lambda instruction: None
        self._last_flush = None  # clock time of the last sync (None: send the first token at once)
        self._prev = (0, 0.0, 0.0)  # tokens, host_s, wafer_s at the last sync: live rates are over that span
        self.flushes = 0
        self.first_token_at = None  # clock time the first token was recorded
        self.first_update_ms = None  # from then until the widgets carried it (the 50 ms target)
        self.handle = None
        self.report = ""  # the plain-text report, once finished
        self.owns_widgets = widgets and view is None and chart is None  # a panel's are its own to keep or close
        self.frontend_live: bool | None = None  # whether the view found the live-cell extension (None: not said)
        self.typed = False  # the user typed in the cell while it streamed: the cell is theirs
        if widgets:
            fresh = dict(instruction=instruction, original=original, code=original, status="waiting", tokens=0,
                         marks=[""] * len(original.splitlines()), diff="", verdict="", ok=False, checked=False,
                         exact=False, summary="", tok_per_s=0.0, ttft_s=0.0, wafer_tok_per_s=0.0,
                         wafer_ttft_s=0.0, elapsed_s=0.0)
            if view is None:
                self.view = StreamView(**fresh)
                self.view.on_msg(self._on_msg)
            else:
                self.view = view
                with view.hold_sync():
                    for name, value in fresh.items():
                        setattr(view, name, value)
            points = [request_point(r) for r in history if r is not None]
            self.chart = chart if chart is not None else LiveChart(requests=points)
            if chart is not None:
                chart.stream, chart.requests = [], points

    def _on_msg(self, widget, content, buffers) -> None:
        self.handle_event(content)

    def handle_event(self, content) -> bool:
        """A message from the view: Stop, Redirect, the user typing in the cell, the frontend saying what it has.
        False for anything else (the panel's own events)."""
        if not isinstance(content, dict):
            return False
        event = content.get("event")
        if event == "stop":
            self.on_stop()
        elif event == "typed":
            self.typed = True
            self.on_stop()
        elif event == "redirect" and str(content.get("instruction", "")).strip():
            self.on_redirect(str(content["instruction"]))
        elif event == "frontend":
            self.frontend_live = bool(content.get("live_cells"))
        else:
            return False
        return True

    def stopped_verdict(self) -> str:
        """What a stopped request did to the cell."""
        return "stopped: you typed in the cell, so your text stays" if self.typed else "stopped, the cell is unchanged"

    def send_cell(self, action: str, source: str | None = None) -> None:
        """Tell the view what its live cell shows now: "show" (source, not yet a change), "accept" (source, as one
        undoable change) or "restore" (the original, exactly)."""
        if self.widgets:
            self.view.send({"cell": action, **({"source": source} if source is not None else {})})

    def enable_controls(self) -> None:
        """Show Stop and Redirect: only where their messages are handled while the edit streams."""
        if self.widgets:
            self.view.controls = True

    # -- showing -------------------------------------------------------------------------------------------------

    def _bundle(self, text: str) -> dict:
        from ipywidgets import VBox

        if not hasattr(self, "box"):
            self.box = VBox([self.view, self.chart])
        return {"text/plain": text, "application/vnd.jupyter.widget-view+json": {
            "version_major": 2, "version_minor": 0, "model_id": self.box.model_id}}

    def show(self) -> None:
        if self.widgets:
            from IPython.display import display

            self.handle = display(self._bundle(f"%%spark {self.instruction} (streaming)"), raw=True,
                                  display_id=True)

    # -- streaming -----------------------------------------------------------------------------------------------

    def update(self, code: str, tokens: int, host_s: float, wafer_s: float) -> None:
        """Called per token: keeps the state, and syncs when `interval` has passed since the last sync."""
        if self._ttft is None:
            self._ttft, self._wafer_ttft = host_s, wafer_s
            self.first_token_at = self.clock()
        self.state = dict(code=code, tokens=tokens, host_s=host_s, wafer_s=wafer_s)
        now = self.clock()
        if self._last_flush is None or now - self._last_flush >= self.interval:
            self._last_flush = now
            self.flush()

    def restart(self, instruction: str) -> None:
        """A redirect: the next tokens come from a new generation (its counts and clocks start at 0)."""
        self.instruction = f"{self.instruction} → {instruction}"
        self._prev = (0, 0.0, 0.0)

    def flush(self, status: str = "streaming") -> None:
        if not self.widgets:
            return
        s = self.state
        n0, h0, w0 = self._prev
        n, h, w = s["tokens"], s["host_s"], s["wafer_s"]
        host_rate = (n - n0) / (h - h0) if n > n0 and h > h0 and n0 else 0.0  # no rate until a span after token 1
        wafer_rate = (n - n0) / (w - w0) if n > n0 and w > w0 and n0 else 0.0
        self._prev = (n, h, w)
        self.flushes += 1
        with self.view.hold_sync():
            self.view.instruction = self.instruction
            self.view.code = s["code"]
            self.view.marks = line_marks(self.original, s["code"])
            self.view.status = status
            self.view.tokens = n
            self.view.elapsed_s = h
            self.view.ttft_s = self._ttft or 0.0
            self.view.wafer_ttft_s = self._wafer_ttft or 0.0
            if host_rate:
                self.view.tok_per_s, self.view.wafer_tok_per_s = host_rate, wafer_rate
        if self.first_update_ms is None and n and self.first_token_at is not None:
            self.first_update_ms = (self.clock() - self.first_token_at) * 1e3
        if host_rate:
            self.chart.stream = self.chart.stream + [[round(h, 4), host_rate, wafer_rate]]

    # -- the end -------------------------------------------------------------------------------------------------

    def finish(self, result, applied: str) -> str:
        """Show the final state; returns the plain-text report (printed in text mode)."""
        report = self.report = text_report(self.instruction, self.original, result, applied)
        if not self.widgets:
            print(report, end="", file=self.out)
            return report
        stats = result.stats if result is not None else None
        status = {"cancelled": "cancelled", "error": "error"}.get(applied, "done")
        if result is not None and result.stopped:
            status = "stopped"
        if result is not None and result.proposed is not None:
            self.state = {**self.state, "code": result.proposed}
        self.flush(status)
        with self.view.hold_sync():
            shown = result.proposed if result is not None and result.proposed is not None else self.original
            self.view.diff = unified_diff(self.original, shown)
            self.view.verdict = _verdict(result, applied)
            self.view.ok = bool(result is not None and result.ok)
            self.view.checked = bool(result is not None and result.judged)
            self.view.exact = bool(result is not None and result.style == "exact")
            self.view.summary = summary_line(result)
            if stats is not None:
                self.view.tok_per_s, self.view.ttft_s = stats.tok_per_s, stats.ttft_s
                self.view.wafer_tok_per_s, self.view.wafer_ttft_s = stats.wafer_tok_per_s, stats.wafer_ttft_s
        if stats is not None:
            self.chart.requests = self.chart.requests + [request_point(result)]
        if self.handle is not None:
            self.handle.update(self._bundle(report), raw=True)
        if self.owns_widgets:
            _live.append(self)
            while len(_live) > LIVE_VIEWS:
                _live.popleft().freeze()
        return report

    def freeze(self) -> None:
        """Show the finished request as its plain-text report and close its widgets, so the kernel frees them.
        The display is replaced first (by its display id, wherever it is shown), so no view is left pointing at a
        closed widget."""
        if self.handle is not None:
            self.handle.update({"text/plain": self.report}, raw=True)
        for widget in (getattr(self, "box", None), self.view, self.chart):
            if widget is not None:
                widget.layout.close()  # every DOM widget has a Layout widget of its own, registered apart
                widget.close()
