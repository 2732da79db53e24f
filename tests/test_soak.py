"""Soak: 1,000 consecutive %%spark edits with the built-in model in one real kernel (bench/soak.py drives it and
prints the same measurements), and the two leaks it found, each pinned down by a quick test of its own.

The soak asserts what a long notebook session needs: the kernel's RSS stays within 5 % of its size after the
warm-up, no thread and no file descriptor is left behind, and the same cell and instruction give the same outcome
every time. One edit takes ~50 ms here, so the whole 1,000 (plus a 200-edit warm-up) runs in about a minute.
"""
from __future__ import annotations

import gc
import importlib.util
import sys
import weakref
from collections import deque
from pathlib import Path

import pytest

from spark_nb.notebook import view
from spark_nb.notebook.view import LiveEdit
from test_view import ORIGINAL, comms, result  # noqa: F401  (comms: the MockComm fixture)



def _load_bench():
    """bench/soak.py (not a package): the soak itself, shared with the script that prints its numbers."""
    spec = importlib.util.spec_from_file_location("soak_bench", Path(__file__).parent.parent / "bench" / "soak.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def report():
    pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    if not Path("/proc/self/status").exists():
        pytest.skip("measures the kernel through /proc")
    return bench.soak(edits=1000, warmup=200, every=100)


@pytest.mark.slow
def test_rss_grows_less_than_5_percent_after_warmup(report):
    assert len(report.samples) == 11  # after the warm-up, then every 100 edits
    assert report.rss_growth() < 0.05, "\n".join(report.lines())


@pytest.mark.slow
def test_no_thread_or_file_descriptor_is_left_behind(report):
    base = report.baseline
    for sample in report.samples[1:]:
        assert sample.threads == base.threads, "\n".join(report.lines())  # by name, at quiet points
        assert sample.fds <= base.fds + 2, "\n".join(report.lines())  # +2: room for a transient, not a leak
        assert sample.os_threads <= base.os_threads + 2, "\n".join(report.lines())
    assert not any(name.startswith("spark-nb helper") for name in base.threads)  # the probe waited for them


@pytest.mark.slow
def test_every_repeated_request_gives_the_same_outcome(report):
    assert report.errors == []
    assert report.recorded == 1200
    assert len(report.outcomes) == len(bench.EDITS)
    for (cell, instruction), seen in report.outcomes.items():
        assert len(seen) == 1, (instruction, seen)  # (applied, error, model output, code): all identical


# -- the leaks the soak found ------------------------------------------------------------------------------------


class Handle:
    """A display handle that records its updates."""

    def __init__(self):
        self.updates = []

    def update(self, data, raw=False):
        self.updates.append(data)


def test_only_the_latest_views_stay_live_and_older_ones_show_their_report(comms, monkeypatch):  # noqa: F811
    monkeypatch.setattr(view, "LIVE_VIEWS", 2)
    monkeypatch.setattr(view, "_live", deque())
    lives = []
    for i in range(3):
        live = LiveEdit(f"fmt {i}", ORIGINAL, widgets=True)
        live.handle = Handle()
        live.finish(result(), "replaced the cell")
        lives.append(live)
    oldest, *kept = lives
    assert oldest.handle.updates[-1] == {"text/plain": oldest.report}  # no widget left in its display
    assert "fmt 0" in oldest.report and "+    return x * 2" in oldest.report
    assert oldest.view.comm is None and oldest.chart.comm is None and oldest.box.comm is None
    assert oldest.view.layout.comm is None and oldest.box.layout.comm is None  # layouts are widgets too
    for live in kept:
        assert "application/vnd.jupyter.widget-view+json" in live.handle.updates[-1]
        assert live.view.comm is not None and live.chart.comm is not None


def test_a_frozen_view_is_freed(comms, monkeypatch):  # noqa: F811
    """With `_esm` given as a Path, anywidget tied every instance to a class-wide file watcher's signal (anywidget
    issue #929): closed or not, no StreamView or LiveChart was ever freed, nor what they referenced."""
    monkeypatch.setattr(view, "LIVE_VIEWS", 0)
    monkeypatch.setattr(view, "_live", deque())
    live = LiveEdit("fmt", ORIGINAL, widgets=True)
    live.handle = Handle()
    live.finish(result(), "replaced the cell")  # shown in a box with the chart, then frozen at once (LIVE_VIEWS 0)
    assert live.handle.updates[-1] == {"text/plain": live.report}
    widgets = [weakref.ref(w) for w in (live.view, live.chart, live.box, live.view.layout)]
    del live
    gc.collect()
    assert [w() for w in widgets] == [None] * 4
