"""Live charts: tok/s through the current stream, and TTFT and tok/s per request across the notebook.

Host-measured and wafer-projected values differ by orders of magnitude, so both panels use log axes and draw the
two series side by side, labelled. `LiveChart` holds only traits; charts.js draws SVG by hand (no library).

    chart = LiveChart(requests=[request_point(r) for r in results])
    chart.stream = [[t_s, host_tok_s, wafer_tok_s], ...]       # appended while a request streams
"""
from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets as t

__all__ = ["LiveChart", "request_point", "HISTORY"]

HERE = Path(__file__).parent
HISTORY = 30  # requests kept in the rolling history panel


class LiveChart(anywidget.AnyWidget):
    # text, not Paths: see StreamView (a Path pins every instance, anywidget issue #929)
    _esm = (HERE / "charts.js").read_text(encoding="utf-8")
    _css = (HERE / "view.css").read_text(encoding="utf-8")  # shared with the stream view

    stream = t.List().tag(sync=True)  # [[seconds since the request started, host tok/s, wafer tok/s], ...]
    requests = t.List().tag(sync=True)  # request_point dicts, oldest first, at most HISTORY
    title = t.Unicode("").tag(sync=True)

    @t.validate("requests")
    def _rolling(self, proposal):
        return list(proposal["value"])[-HISTORY:]

    def __repr__(self) -> str:  # the text/plain of the display: what a terminal or a saved notebook shows
        return (f"LiveChart({self.title or 'requests'}: {len(self.requests)} requests, host-measured and "
                "projected-wafer TTFT and tok/s)")


def request_point(result, label: str | None = None) -> dict:
    """A request's point for the history panel, from an EditResult or a stream's Done (anything with `.stats`);
    label: what the request was (default: an edit's family, or "edit")."""
    s = result.stats
    return dict(label=label or getattr(result, "family_hint", None) or "edit", tokens=s.tokens,
                ttft_ms=s.ttft_s * 1e3, wafer_ttft_ms=s.wafer_ttft_s * 1e3,
                tok_per_s=s.tok_per_s, wafer_tok_per_s=s.wafer_tok_per_s, wafer=s.wafer,
                drafted=getattr(s, "drafted", 0), accepted=getattr(s, "accepted", 0))
