"""The refactor panel in-process: presets from the model folder, a request run through (no event loop here),
Accept / Reject / Retry, what it tells its view to do with the cell, and `%spark apply`. In a real kernel and a
browser: test_kernel_stop.py and test_browser.py."""
from __future__ import annotations

import ast
import json

import pytest

from spark_nb.edits import BUILTIN
from spark_nb.notebook.panel import Panel, presets_for
from spark_nb.notebook.session import Spark
from test_magics import CODE, GOOD, edit_folder, ip, replace_second_line, scripted, tokenizer  # noqa: F401
from test_view import comms  # noqa: F401

BAD = "    return x *\n"


def sent_cells(view):
    """The live-cell messages the view was sent (custom messages, in order)."""
    return [m["content"] for m in view.comm.sent if m and m.get("method") == "custom"]


@pytest.fixture
def spark(tokenizer, monkeypatch):
    s = Spark()
    s.script = replace_second_line(tokenizer, "    return x * 2\n")
    monkeypatch.setattr(s, "engine_for", lambda *a, **k: scripted(tokenizer, s.script))
    return s


def test_presets_are_the_families_of_the_model_folder():
    trained = {json.loads(line)["family"] for line in (BUILTIN / "test_sample.jsonl").read_text().splitlines()}
    presets = presets_for(None)
    assert {label.replace(" ", "_") for label, _, _, _ in presets} == trained
    for label, instruction, kind, _ in presets:
        assert "{" not in instruction  # templates are filled in for the user to complete
        assert kind == ("fill" if label in ("rename variable", "rename function", "extract constant") else "run")


PRINTS = "import sys, os\n\ndef area(w, h):\n    print('area of %s by %s' % (w, h))\n    return w * h\n"


def test_presets_say_which_edits_a_program_makes_exactly():
    """"exact" where the router takes the preset's instruction for this code (and a template once its names are
    filled in), "model" elsewhere: f-strings and logging only where the cell has something to convert."""
    exact = {label for label, _, _, how in presets_for(None, PRINTS) if how == "exact"}
    assert exact == {"rename variable", "rename function", "to fstring", "remove debug", "print to logging",
                     "sort imports", "extract constant", "remove comments"}
    plain = {label: how for label, _, _, how in presets_for(None, CODE)}
    assert plain["to fstring"] == plain["print to logging"] == plain["add docstrings"] == "model"
    assert plain["sort imports"] == plain["remove debug"] == "exact"


def test_model_only_toggle_sends_the_request_to_the_model(comms, spark, monkeypatch):  # noqa: F811
    """The same preset, pressed as the frontend sends it: made by the program, no engine loaded; with "model only"
    on, made by the (scripted) model."""
    loads = []
    engine_for = spark.engine_for
    monkeypatch.setattr(spark, "engine_for", lambda *a, **k: loads.append(a) or engine_for(*a, **k))
    panel = Panel(spark, CODE, bound=True)
    assert not panel.controls.model_only  # off by default
    panel._on_controls({"event": "run", "instruction": "rename double to twice", "source": "%%spark --panel\n" + CODE})
    assert panel.result.style == "exact" and panel.result.code == CODE.replace("double", "twice") and loads == []
    assert panel.view.verdict.startswith("exact refactor")
    panel.reject()
    panel.controls.model_only = True  # the toggle, as the checkbox sets it
    panel._on_controls({"event": "run", "instruction": "rename double to twice", "source": "%%spark --panel\n" + CODE})
    assert panel.result.style == "edit" and panel.result.code == GOOD and len(loads) == 1  # what the script wrote
    panel.reject()
    panel.controls.model_only = False
    panel.start("sort imports", source=PRINTS)  # the preset list follows the cell: f-strings are exact here
    assert panel.result.style == "exact" and panel.result.code.startswith("import os\nimport sys\n")
    assert {p[0]: p[3] for p in panel.controls.presets}["to fstring"] == "exact" and len(loads) == 1


def test_accept_keeps_the_edit_and_tells_the_cell(comms, spark):  # noqa: F811
    panel = Panel(spark, CODE, bound=True)
    panel.frontend_live = True
    panel.start("format the expression")
    assert panel.view.status == "done" and panel.view.ok and panel.view.decide
    assert sent_cells(panel.view)[-1] == {"cell": "show", "source": GOOD}
    assert panel.accept() == GOOD
    assert panel.code == GOOD and spark.accepted == GOOD and panel.view.status == "accepted"
    assert spark.history[-1].applied.startswith("accepted: the cell holds the edit")
    assert panel.accept() is None  # once


def test_reject_restores_and_keeps_the_code(comms, spark):  # noqa: F811
    panel = Panel(spark, CODE, bound=True)
    panel.start("format the expression")
    panel.reject()
    assert sent_cells(panel.view)[-1] == {"cell": "restore"}
    assert panel.code == CODE and panel.view.status == "rejected" and panel.view.code == CODE
    assert spark.history[-1].applied == "rejected"


def test_an_edit_that_does_not_parse_is_accepted_only_when_forced(comms, spark, tokenizer):  # noqa: F811
    spark.script = replace_second_line(tokenizer, BAD)
    panel = Panel(spark, CODE, bound=True)
    panel.start("format the expression")
    assert not panel.view.ok and sent_cells(panel.view)[-1] == {"cell": "restore"}  # the cell goes back at once
    assert panel.accept() is None and panel.code == CODE
    forced = panel.accept(force=True)
    assert forced == CODE.replace("    return x*2\n", BAD)
    with pytest.raises(SyntaxError):
        ast.parse(forced)


def test_a_bound_panel_edits_what_the_cell_holds_now(comms, spark):  # noqa: F811
    panel = Panel(spark, "x = 0\n", bound=True)
    panel.start("format the expression", source="%%spark --panel\n" + CODE)
    assert panel.run.cell == CODE and panel.accept() == GOOD


def test_retry_samples_the_same_instruction(comms, spark, monkeypatch):  # noqa: F811
    panel = Panel(spark, CODE, bound=False)
    panel.start("format the expression")
    calls = []
    monkeypatch.setattr(panel, "start", lambda instruction, **kw: calls.append((instruction, kw)))
    panel.retry()
    assert calls == [("format the expression", {"temperature": 0.7, "seed": 1})]


def test_without_the_extension_accept_says_how_to_apply(comms, spark, ip):  # noqa: F811
    panel = Panel(spark, CODE, bound=True)
    panel._on_view({"event": "frontend", "live_cells": False})
    assert "%spark apply" in panel.controls.note
    panel.start("format the expression")
    panel.accept()
    assert "`%spark apply` inserts it below" in panel.view.verdict
    ip.spark_magics.session.accepted = panel.code
    ip.run_line_magic("spark", "apply")
    assert ip.calls == [(GOOD, False)]


def test_panel_magic_shows_a_bound_panel(ip, monkeypatch, tokenizer, capsys):  # noqa: F811
    shown = []
    monkeypatch.setattr(ip.spark_magics.session, "max_tokens", 0)  # whatever an earlier test configured
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    monkeypatch.setattr(ip.spark_magics.session, "engine_for",
                        lambda *a, **k: scripted(tokenizer, replace_second_line(tokenizer, "    return x * 2\n")))
    ip.run_cell_magic("spark", "--panel --no-context format the expression", CODE)
    (panel,) = shown
    assert isinstance(panel, Panel) and panel.bound and panel.result.code == GOOD, panel.result.error  # started at once
    assert ip.calls == []  # nothing applied until Accept
    with pytest.raises(Exception, match="--panel takes no"):
        ip.run_cell_magic("spark", "--panel --preview x", CODE)


def test_the_panel_tells_the_guard_what_the_kernel_binds(comms, spark, tokenizer):  # noqa: F811
    """Names are read from the namespace at each request: bound after the panel was shown, they count."""
    spark.script = replace_second_line(tokenizer, "    return x * factor\n")
    namespace = {}
    panel = Panel(spark, CODE, bound=False, namespace=namespace)
    panel.start("scale by the factor")
    assert not panel.result.ok and "nothing defines: factor" in panel.result.error
    panel.reject()
    namespace["factor"] = 3
    panel.start("scale by the factor")
    assert panel.result.ok and panel.accept() == "def double(x):\n    return x * factor\n"
