"""The refactor panel: one button per edit family, a free-text instruction, model and wafer pickers, over a stream
view that ends in Accept, Reject and Retry.

    %%spark --panel                  # over a cell: the panel edits that cell
    spark_nb.panel(code)             # over a string: Accept keeps the result in `panel.code`

A preset a program does exactly (spark_nb.refactors: renames, imports, debug prints, f-strings, logging) is marked
"exact" and made by that program, instantly; the others are written by the model and checked by the guard. The
"model only" toggle sends every request to the model (`exact=False`), as `%%spark --model-only` does.

Bound to a cell, each request edits what the cell holds when the button is pressed; with spark-nb's JupyterLab
extension the edit streams into the cell, Accept keeps it as one undoable change and Reject or Stop puts the
original back (view.js does that at once, then tells the kernel). Without the extension the panel shows the edit
and Accept keeps it for `%spark apply`, which inserts it below through `set_next_input`.

A button press reaches the kernel as a widget message once the cell that showed the panel has finished, so the
edit runs as a task on the kernel's main event loop, one forward pass at a time (`EditRun.interleaved`): the
kernel stays responsive, other cells run between two passes, and every button works during the stream. Not a
worker thread: one loop drives every edit, so two never contend for the engine's cores (see run.py).
Widget messages themselves may arrive on a kernel subshell's thread (ipykernel 7 with JupyterLab 4.4+), so the
panel hands each one to the main loop first.
"""
from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path

import anywidget
import traitlets as t

from .charts import LiveChart, request_point
from .run import EditRun
from .view import LiveEdit, StreamView

__all__ = ["Panel", "RefactorControls", "presets_for"]

HERE = Path(__file__).parent
RETRY_TEMPERATURE = 0.7  # Retry samples: a greedy retry would repeat the same edit
TEMPLATE_NAMES = dict(old="old", new="new", value="42", const="NAME")  # what a "fill" preset's template shows
FALLBACK_NOTE = ("spark-nb's JupyterLab extension is not active in this frontend, so the panel cannot write into the "
                 "cell: Accept keeps the edit and `%spark apply` inserts it in a new cell below.")


class RefactorControls(anywidget.AnyWidget):
    """The panel's top: presets, instruction, pickers. Sends {event: "run", instruction, source}."""

    # text, not Paths: see StreamView (a Path pins every instance, anywidget issue #929)
    _esm = (HERE / "panel.js").read_text(encoding="utf-8")
    _css = (HERE / "view.css").read_text(encoding="utf-8")

    presets = t.List(t.List(t.Unicode())).tag(sync=True)  # [label, instruction, "run" | "fill", "exact" | "model"]
    model_only = t.Bool(False).tag(sync=True)  # every request to the model, exact refactors too
    models = t.List(t.Unicode()).tag(sync=True)
    model = t.Unicode("builtin").tag(sync=True)
    wafers = t.List(t.Unicode()).tag(sync=True)
    wafer = t.Unicode("wse3").tag(sync=True)
    busy = t.Bool(False).tag(sync=True)  # an edit is streaming: presets and Edit wait
    bound = t.Bool(False).tag(sync=True)  # edits the cell the panel is in (sends its source with each run)
    note = t.Unicode("").tag(sync=True)  # one line under the controls


def presets_for(model_path: Path | None, code: str = "") -> list[list[str]]:
    """A button per edit family the model was trained on (its folder's held-out `test_sample.jsonl` names them;
    any other model gets every family), each [label, instruction, kind, how]. kind: "run" sends the instruction,
    "fill" (families whose instruction needs names) puts a template in the text box for the user to complete.
    how: "exact" where a program makes the edit of `code` (the preset then uses the family's first phrasing that
    spark_nb.refactors takes; a template, once the names it gets are unambiguous), else "model"."""
    from ..edits import BUILTIN
    from ..refactors import route
    from ..train.families import FAMILIES

    sample = Path(model_path or BUILTIN) / "test_sample.jsonl"
    known = set(FAMILIES)
    if sample.exists():
        known = {json.loads(line)["family"] for line in sample.read_text().splitlines() if line.strip()} & known
    presets = []
    for name, family in FAMILIES.items():  # the registry's order: human-target families first
        if name not in known:
            continue
        kind = "fill" if "{" in family.paraphrases[0] else "run"
        # a template gets names the user completes: "Rename `old` to `new`."
        phrasings = [p.format(**TEMPLATE_NAMES) if kind == "fill" else p for p in family.paraphrases]
        probe = f"{TEMPLATE_NAMES['old']} = 0\n" if kind == "fill" else code  # a template's old name, bound once
        exact = next((p for p in phrasings if route(p, probe) is not None), None)
        presets.append([name.replace("_", " "), exact or phrasings[0], kind, "model" if exact is None else "exact"])
    return presets


class Panel:
    """One refactor panel; display it (it is the VBox `widget`)."""

    def __init__(self, spark, code: str, *, bound: bool, context=(), model: str | None = None,
                 wafer: str | None = None, namespace=None):
        """namespace: the kernel's user namespace; each request tells the guard the names it binds then."""
        from ipywidgets import VBox

        from ..edits import loaded_engines
        from ..wafer.spec import PRESETS

        self.spark, self.code, self.bound, self.context = spark, code, bound, context
        self.namespace = namespace if namespace is not None else {}
        model, wafer = model or spark.model, wafer or spark.wafer
        models = ["builtin"] + sorted({str(e.path) for e in loaded_engines()} - {str(_builtin())})
        models = list(dict.fromkeys(models + [spark.model, model]))
        self.controls = RefactorControls(presets=presets_for(_model_path(model), code), models=models, model=model,
                                         wafers=sorted(PRESETS), wafer=wafer, bound=bound)
        self.view = StreamView(original=code, code=code, marks=[""] * len(code.splitlines()), status="ready",
                               decide=True, live_cell=bound)
        self.chart = LiveChart(requests=[request_point(r) for r in spark.finished()])
        self.widget = VBox([self.controls, self.view, self.chart])
        self.frontend_live: bool | None = None  # the view says on render whether the extension is there
        self.instruction: str | None = None  # the last request's
        self.run: EditRun | None = None
        self.result = None  # the last finished request's EditResult, until accepted or rejected
        self._task = None
        self._retries = 0
        self._loop = _running_loop()  # the kernel's main event loop, where requests run (None: run them through)
        self.controls.observe(self._model_changed, "model")
        self.controls.on_msg(lambda widget, content, buffers: self._on_main(self._on_controls, content))
        self.view.on_msg(lambda widget, content, buffers: self._on_main(self._on_view, content))

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = f"spark-nb refactor panel ({'bound to this cell' if self.bound else 'over code'}; " \
                               "a widget: shown in JupyterLab, Notebook 7, VS Code)"
        return bundle

    # -- messages from the frontend ------------------------------------------------------------------------------

    def _on_main(self, handler, content) -> None:
        if self._loop is None or threading.current_thread() is threading.main_thread():
            handler(content)
        else:
            self._loop.call_soon_threadsafe(handler, content)

    def _on_controls(self, content) -> None:
        if isinstance(content, dict) and content.get("event") == "run":
            self.start(str(content.get("instruction", "")), source=content.get("source"))

    def _on_view(self, content) -> None:
        if not isinstance(content, dict):
            return
        if content.get("event") == "frontend":
            self.frontend_live = bool(content.get("live_cells"))
            if self.bound and not self.frontend_live:
                self.controls.note = FALLBACK_NOTE
        if self.run is not None and self.run.live.handle_event(content):
            return
        action = content.get("event")
        if action == "accept":
            self.accept(force=bool(content.get("forced")))
        elif action == "reject":
            self.reject()
        elif action == "retry":
            self.retry()

    def _model_changed(self, change) -> None:
        self._draw_presets(change["new"])

    def _draw_presets(self, model: str | None = None) -> None:
        """The presets for the model and the code as the panel last saw it (which are exact depends on both)."""
        self.controls.presets = presets_for(_model_path(model or self.controls.model), self.code)

    # -- requests ------------------------------------------------------------------------------------------------

    def start(self, instruction: str, *, source: str | None = None, temperature: float | None = None,
              seed: int | None = None) -> None:
        """Edit the code (or, bound to a cell, the cell's `source` as the frontend sent it) with `instruction`.
        In a kernel this returns at once and the edit streams as an event-loop task; elsewhere it runs through."""
        instruction = instruction.strip()
        if not instruction:
            self.controls.note = "give an instruction: type one, or press a preset"
            return
        if self._task is not None and not self._task.done():
            self.controls.note = "an edit is streaming: Stop it first, or Redirect it"
            return
        if self.bound and source is not None and _body(source) != self.code:
            self.code = _body(source)
            self._draw_presets()
        self.instruction, self.result = instruction, None
        live = LiveEdit(instruction, self.code, widgets=True, view=self.view, chart=self.chart,
                        history=self.spark.finished(),
                        interval=self.spark.throttle_s)
        live.frontend_live = self.frontend_live
        live.enable_controls()
        options = dict(model=self.controls.model, wafer=self.controls.wafer, temperature=temperature, seed=seed,
                       context=self.context, max_tokens=None, exact=not self.controls.model_only,
                       names=list(self.namespace))
        self.run = EditRun(self.spark, live, self.code, instruction, options)
        self.controls.busy, self.controls.note = True, ""
        if self._loop is None:  # no event loop (a script, a test): generate straight through
            self._finish(self.run, self._generate_blocking(self.run))
            return
        self._task = self._loop.create_task(self._generate(self.run))

    async def _generate(self, run: EditRun) -> None:
        # An idle kernel ignores SIGINT, so the kernel's interrupt would not reach an edit streaming from the panel:
        # while it streams, SIGINT is its Stop. (A cell that runs meanwhile gets ipykernel's own handler back.)
        previous = signal.signal(signal.SIGINT, lambda *_: run.stop())
        try:
            result = await run.interleaved()
        except Exception as err:
            result = _Failed(str(err))
        finally:
            signal.signal(signal.SIGINT, previous)
        self._finish(run, result)

    @staticmethod
    def _generate_blocking(run: EditRun):
        try:
            return run.blocking()
        except Exception as err:
            return _Failed(str(err))

    def _finish(self, run: EditRun, result) -> None:
        self.controls.busy = False
        live = run.live
        if isinstance(result, _Failed):
            live.send_cell("restore")
            live.finish(None, "error")
            self.spark.record(live.instruction, run.cell, None, "error", result.error)
            self.controls.note = f"the edit failed: {result.error}"
            return
        if result.stopped:
            live.send_cell("restore")
            applied = live.stopped_verdict()
            live.finish(result, applied)
            self.spark.record(live.instruction, run.cell, result, applied, result.error)
            return
        self.result = result
        # the cell shows an edit that parses until Accept or Reject; one that does not goes back at once (the view
        # still shows it, and Accept anyway writes it)
        if result.ok:
            live.send_cell("show", result.code)
        else:
            live.send_cell("restore")
        live.finish(result, "Accept or Reject" if result.ok else "Reject, Retry, or Accept anyway")

    def accept(self, force: bool = False) -> str | None:
        """Keep the last result (one that does not parse only with force); returns the accepted code."""
        result = self.result
        if result is None or self.run is None:
            return None
        if not result.ok and not (force and result.proposed is not None):
            self.controls.note = "the edit does not parse: Accept anyway to keep it all the same"
            return None
        code = result.code if result.ok else result.proposed
        live = self.run.live
        self.code, self.result = code, None  # the next request starts from the accepted code
        self._draw_presets()
        self.spark.accepted = code
        applied = "accepted" + ("" if result.ok else " (forced)")
        if self.bound and self.frontend_live:
            applied += ": the cell holds the edit (Ctrl+Z in the cell brings the original back)"
        elif self.bound:
            applied += ": `%spark apply` inserts it below"
        self.view.original = code
        self.view.status, self.view.verdict = "accepted", applied
        self.spark.record(live.instruction, self.run.cell, result, applied, result.error)
        return code

    def reject(self) -> None:
        if self.result is None or self.run is None:
            return
        live = self.run.live
        live.send_cell("restore")
        self.view.code, self.view.marks = self.run.cell, [""] * len(self.run.cell.splitlines())
        self.view.status, self.view.verdict = "rejected", "rejected, the cell is unchanged"
        self.spark.record(live.instruction, self.run.cell, self.result, "rejected", self.result.error)
        self.result = None

    def retry(self) -> None:
        """The last instruction again, sampled (a greedy retry would repeat the edit), from the same code."""
        if self.instruction is None or (self._task is not None and not self._task.done()):
            return
        if self.result is not None:
            self.run.live.send_cell("restore")
            self.result = None
        self._retries += 1
        self.start(self.instruction, temperature=RETRY_TEMPERATURE, seed=self._retries)


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Failed:
    """A request that failed before it had a result."""

    def __init__(self, error: str):
        self.error = error


def _body(source: str) -> str:
    """A cell's code without its `%%spark ...` line."""
    first, _, rest = source.partition("\n")
    return rest if first.lstrip().startswith("%%spark") else source


def _builtin() -> Path:
    from ..edits import BUILTIN

    return Path(BUILTIN)


def _model_path(model: str) -> Path | None:
    return None if model == "builtin" else Path(model).expanduser()


def panel(code: str) -> Panel:
    """A refactor panel over `code` (show it: the last expression of a cell, or `display(p)`). Accepted edits are
    kept in `.code`. It shares settings and history with %%spark when the extension is loaded."""
    from IPython import get_ipython

    from .magics import SparkMagics
    from .session import Spark

    shell = get_ipython()
    magics = shell.magics_manager.registry.get(SparkMagics.__name__) if shell is not None else None
    return Panel(magics.session if magics is not None else Spark(), code, bound=False,
                 namespace=shell.user_ns if shell is not None else None)
