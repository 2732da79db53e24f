"""%%spark and %spark: a thin layer over `Spark` (settings, engine, history) and `LiveEdit` (the stream view)."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import context as ctx
from ..engine.sampling import validate as validate_sampling
from .run import EditRun
from .session import Spark
from .view import LiveEdit, stats_line, summary_line, unified_diff

__all__ = ["SparkMagics", "spark_async"]

COMMANDS = ("status", "models", "load", "warmup", "history", "stats", "config", "apply")
FRONTEND_WAIT_S = 1.0  # how long the first request waits for the view to say whether the live-cell extension is there
PLAIN_NOTE = ("spark: spark-nb's JupyterLab extension is not active here, so edits do not stream into the cell: the "
              "cell is replaced when it finishes (set_next_input), and the original is in `%spark history`.")


@magics_class
class SparkMagics(Magics):
    def __init__(self, shell, spark: Spark | None = None):
        super().__init__(shell)
        self.session = spark or Spark(parent=shell)

    @magic_arguments()
    @argument("instruction", nargs="*", help="What to change; `{name}` is replaced by that variable's value.")
    @argument("--panel", action="store_true", help="Show the refactor panel for this cell (presets, Accept/Reject).")
    @argument("--preview", action="store_true", help="Show the edit without applying it.")
    @argument("--new", action="store_true", help="Insert the result as a new cell below instead of replacing.")
    @argument("--force", action="store_true", help="Apply even when the result does not parse.")
    @argument("--model", help="A model folder, a .gguf file, a name `%%spark models` lists, or 'builtin' "
                               "(default: the Spark.model setting).")
    @argument("--max-tokens", type=int, help="At most this many generated tokens.")
    @argument("--temperature", type=float, help="Sampling temperature (0: greedy).")
    @argument("--seed", type=int, help="Sampling seed.")
    @argument("--wafer", help="Wafer preset to emulate: wse3, wse2, mini.")
    @argument("--no-context", action="store_true", help="Send the cell alone: no earlier cells, no names.")
    @argument("--model-only", action="store_true",
              help="Ask the model even for a refactor a program does exactly (rename, imports, prints, comments, "
                   "f-strings, logging).")
    @line_cell_magic
    def spark(self, line, cell=None):
        """Edit the cell with the AI model, streaming the edit on the emulated wafer.

        As a cell magic, %%spark INSTRUCTION edits the cell's body. The edit streams into a view (changed lines
        marked, live tok/s and TTFT for this machine and the projected wafer), then shows the diff and the
        guard's verdict. When the result parses the cell is replaced by it (the original stays in
        `%spark history`); a result that does not parse is never applied unless --force. In JupyterLab and
        Notebook 7 (spark-nb's extension) the edit streams into the cell itself and Ctrl+Z brings the original
        back; typing in the cell while it streams stops the edit and keeps your text.

        Refactors a program does exactly are made by that program, instantly, with no model loaded (a missing one
        does not stop them), and the view says "exact refactor": renames (`rename total to value`), sorting and
        removing unused imports, removing debug prints or comments, `%` and `.format` to f-strings, print to
        logging. --model-only asks the model anyway.

        %%spark --panel [INSTRUCTION] shows the refactor panel for the cell: a button per edit family (those a
        program does exactly marked "exact"), a free instruction, model and wafer pickers, a "model only" toggle,
        Stop, Redirect, then Accept, Reject or Retry.

        As a line magic: %spark status | load PATH [--wafer W] | warmup | history | stats | config | apply
        (apply: insert the code a panel last accepted as a new cell, where the panel cannot write into cells)

        Examples
        --------
        %%spark add docstrings
        def area(r):
            return 3.14159 * r * r

        %%spark --panel
        %%spark --preview rename {old} to {new}          (uses the variables old and new; an exact refactor)
        %%spark --model-only use f-strings               (the model converts, not the program)
        %%spark --new --model path/to/model convert the loop to a comprehension
        %spark load path/to/model --wafer wse2
        %spark history
        %config Spark.model = "path/to/model"            (settings: %spark config)
        """
        if cell is None:
            return self._line(line)
        args = _parse(self.spark, line)
        if args.panel:
            return self._panel(args, cell)
        return self._edit(args, cell)

    # -- %%spark ----------------------------------------------------------------------------------------------------

    def _edit(self, args, cell: str):
        """%%spark where the shell runs it synchronously (terminal IPython): generation in this thread."""
        run, result = self._start(args, cell), None
        if run is not None:
            with self._reported(run):
                result = run.blocking()
        return None if result is None else self._conclude(run, args, result, live_cell=False)

    async def edit_async(self, line: str, cell: str):
        """%%spark in a kernel (see `run.async_cells`): the event loop runs between forward passes, so Stop and
        Redirect work while the edit streams."""
        args = _parse(self.spark, line)
        if args.panel:
            return self._panel(args, cell)
        run, result, live_cell = self._start(args, cell), None, False
        if run is not None:
            run.live.enable_controls()
            with self._reported(run):
                result = await run.interleaved()
                # The last step (the final pass and the guard) runs without a break: an interrupt that arrives
                # meanwhile is delivered here (ipykernel cancels the cell a few loop turns after the signal), and
                # so is one during the wait for the frontend. Either way the cell stays as it was.
                await asyncio.sleep(0.001)
                live_cell = await self._frontend_live(run.live)
        if result is None:
            return None
        return self._conclude(run, args, result, live_cell=live_cell)

    async def _frontend_live(self, live: LiveEdit) -> bool:
        """Whether this request's view found the live-cell extension. The view says so when it renders; the first
        request of a session waits up to FRONTEND_WAIT_S for that (a fast edit can end first), later ones only
        where a frontend has answered before. Where it is missing, say so once."""
        s = self.session
        if live.widgets and live.frontend_live is None and s.frontend_answers is not False:
            deadline = time.perf_counter() + FRONTEND_WAIT_S
            while live.frontend_live is None and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
        if live.frontend_live is not None:
            s.frontend_answers = True
        elif s.frontend_answers is None:
            s.frontend_answers = False
        if not live.frontend_live and not s.said_no_live_cells:
            s.said_no_live_cells = True
            print(PLAIN_NOTE)
        return bool(live.frontend_live)

    @contextmanager
    def _reported(self, run: EditRun):
        """An interrupt or a failure during generation ends in the view and the history; the cell stays as is
        (where the edit streamed into the cell, the frontend is told to put the original back). An interrupt
        (stopped between two tokens) propagates as KeyboardInterrupt; a failure is one message on stderr. In a
        kernel the interrupt arrives as a CancelledError at whichever await the cell is in."""
        try:
            yield
        except (KeyboardInterrupt, asyncio.CancelledError) as err:
            run.live.send_cell("restore")
            run.live.finish(None, "cancelled")
            self.session.record(run.live.instruction, run.cell, None, "cancelled", "interrupted")
            if isinstance(err, KeyboardInterrupt):
                raise
            raise KeyboardInterrupt from None
        except Exception as err:
            run.live.send_cell("restore")
            run.live.finish(None, "error")
            self.session.record(run.live.instruction, run.cell, None, "error", str(err))
            print(f"spark: the edit failed: {err}", file=sys.stderr)

    def _start(self, args, cell: str) -> EditRun | None:
        """Check the request, load the model, gather context and show the view; None when it cannot start."""
        if args.preview and args.new:
            raise UsageError("--preview and --new exclude each other: --preview applies nothing")
        if args.max_tokens is not None and args.max_tokens < 1:
            raise UsageError(f"--max-tokens must be at least 1, got {args.max_tokens}")
        if args.temperature is not None:
            try:
                validate_sampling(args.temperature, 1.0)  # the engine's rule (0, or at least its minimum) ...
            except ValueError as err:
                raise UsageError(f"--{err}") from None
            if args.temperature > 10:  # ... and an upper bound past which sampling is noise
                raise UsageError(f"--temperature must be at most 10, got {args.temperature}")
        if args.seed is not None and args.seed < 0:
            raise UsageError(f"--seed must be 0 or more, got {args.seed}")
        if args.wafer is not None:
            from ..wafer.spec import get_spec

            try:
                get_spec(args.wafer)
            except (KeyError, ValueError) as err:
                raise UsageError(f"--wafer: {err}") from None
        ns = self.shell.user_ns
        instruction = self._instruction(args)
        if not instruction:
            raise UsageError("give an instruction: %%spark add docstrings")
        if not cell.strip():
            raise UsageError("the cell is empty: write the code to edit below the %%spark line")
        earlier = _earlier_cells(self.shell)
        engine = exact = None
        if not args.model_only:  # a refactor a program does exactly needs no model: none is loaded (or missing)
            context = () if args.no_context else ctx.recent_cells(earlier, self.session.context_tokens)
            exact = self.session.exact(cell, instruction, context, names=list(ns))  # kept: the request reuses it
        if exact is None:
            try:
                engine = self.session.engine_for(args.model, args.wafer)
            except Exception as err:  # no model, a bad folder, a model that does not fit: one message
                self.session.record(instruction, cell, None, "error", str(err))
                print(f"spark: cannot load the model: {err}", file=sys.stderr)
                return None
            too_long = _too_long(engine, cell, instruction)
            if too_long:  # said before the view exists: diffing a cell of many thousand lines for it took minutes
                self.session.record(instruction, cell, None, "error", too_long)
                print(f"spark: {too_long}", file=sys.stderr)
                return None
            context = () if args.no_context else ctx.collect(
                cell, earlier, ns, self.session.context_tokens, _counter(engine))
        widgets = getattr(self.shell, "kernel", None) is not None
        live = LiveEdit(instruction, cell, widgets=widgets, history=self.session.finished(),
                        interval=self.session.throttle_s)
        if widgets and not (args.preview or args.new):
            live.view.live_cell = True  # the edit replaces this cell: stream it there where the extension is
        live.show()
        options = dict(model=args.model, wafer=args.wafer, max_tokens=args.max_tokens,
                       temperature=args.temperature, seed=args.seed, context=context, exact=not args.model_only,
                       names=list(ns))  # what the kernel binds: the guard refuses edits reading anything else
        return EditRun(self.session, live, cell, instruction, options)

    def _conclude(self, run: EditRun, args, result, live_cell: bool) -> None:
        """Apply the result where it should be (live_cell: the view streamed it into the cell, so the extension
        keeps it as one undoable change; otherwise set_next_input), or put the cell back."""
        usable = result.ok or (args.force and result.proposed is not None)
        unchanged = result.ok and not result.changed  # nothing to replace or insert
        apply = not (result.stopped or args.preview or not usable or unchanged)
        if result.stopped:
            applied = run.live.stopped_verdict()
        elif args.preview:
            applied = "preview (not applied)"
        elif not usable:
            applied = "not applied, the cell is unchanged" + (" (--force applies it)" if result.proposed else "")
        elif unchanged:
            applied = "no change"
        else:
            applied = "inserted below" if args.new else "replaced the cell"
            if not result.ok:
                applied += " (--force)"
        code = result.code if result.ok else result.proposed
        if apply and live_cell and not args.new:
            run.live.send_cell("accept", code)
        else:
            run.live.send_cell("restore")  # nothing to do where nothing was streamed into the cell
            if apply:
                self.shell.set_next_input(code, replace=not args.new)
        run.live.finish(result, applied)
        self.session.record(run.live.instruction, run.cell, result, applied, result.error)

    def _panel(self, args, cell: str):
        """%%spark --panel: show the refactor panel bound to this cell; an instruction starts it at once."""
        from IPython.display import display

        from .panel import Panel

        if args.preview or args.new or args.force:
            raise UsageError("--panel takes no --preview, --new or --force: the panel's Accept and Reject decide")
        if not cell.strip():
            raise UsageError("the cell is empty: write the code to edit below the %%spark --panel line")
        context = () if args.no_context else ctx.collect(
            cell, _earlier_cells(self.shell), self.shell.user_ns, self.session.context_tokens, None)
        panel = Panel(self.session, cell, bound=True, context=context, model=args.model, wafer=args.wafer,
                      namespace=self.shell.user_ns)
        display(panel)
        instruction = self._instruction(args)
        if instruction:
            panel.start(instruction)
        return None

    def _instruction(self, args) -> str:
        """The instruction words, unquoted, with `{name}` filled from the namespace."""
        return ctx.interpolate(" ".join(args.instruction).strip().strip("'\""), self.shell.user_ns)

    # -- %spark ----------------------------------------------------------------------------------------------------

    @magic_arguments()
    @argument("command", choices=COMMANDS, help="What to do.")
    @argument("path", nargs="?", help="For load: a model folder, a .gguf file, a name `%%spark models` lists, or "
                                      "'builtin'.")
    @argument("--wafer", help="For load: the wafer preset.")
    def _line_args(self, line):
        """%spark status | models | load MODEL [--wafer W] | warmup | history | stats | config | apply"""

    def _line(self, line):
        if not line.strip():
            raise UsageError(f"%spark needs a command: one of {', '.join(COMMANDS)} (%%spark INSTRUCTION edits "
                             "a cell)")
        args = _parse(self._line_args, line)
        if (args.command == "load") != (args.path is not None):
            raise UsageError("%spark load takes a MODEL (a folder, a .gguf file, a name `%spark models` lists, or "
                             "'builtin'); other commands take none")
        getattr(self, f"_cmd_{args.command}")(args)

    def _cmd_load(self, args):
        t0 = time.perf_counter()
        try:
            engine = self.session.load(args.path, args.wafer)
        except Exception as err:
            print(f"spark: cannot load {args.path}: {err}", file=sys.stderr)
            return
        print(f"loaded in {time.perf_counter() - t0:.1f} s: {engine!r}")

    def _cmd_models(self, args):
        from ..model import stores

        print(stores.table(stores.available()))
        print("load one with %spark load NAME, or use it once with %%spark --model NAME")

    def _cmd_status(self, args):
        from ..edits import loaded_engines

        s = self.session
        print(f"model: {s.model}   wafer: {s.wafer}   dtype: {s.dtype}")
        try:
            engine = s.engine_for()
        except Exception as err:
            engine = None
            print(f"engine: not loaded ({err})")
        else:
            print(f"engine: {engine!r}")
            placement = getattr(engine, "placement", None)
            if placement is not None:
                print(placement.summary())
        for other in loaded_engines():  # models given per request (--model, --wafer) stay loaded too
            if other is not engine:
                print(f"also loaded: {other!r}")
        print(f"numba cache: {_numba_cache()}")
        print(f"requests this session: {len(s.history)}")

    def _cmd_warmup(self, args):
        t0 = time.perf_counter()
        try:
            result = self.session.edit("x = 1\n", "warm up", max_tokens=4)
        except Exception as err:
            print(f"spark: warmup failed: {err}", file=sys.stderr)
            return
        print(f"warm in {time.perf_counter() - t0:.2f} s (kernels compiled or loaded from the numba cache); "
              f"{stats_line(result.stats)}")

    def _cmd_history(self, args):
        if not self.session.history:
            print("no requests yet")
            return
        for i, r in enumerate(self.session.history, 1):
            print(f"[{i}] %%spark {r.instruction}  ->  {r.applied}")
            if r.result is not None and summary_line(r.result):
                print("    " + summary_line(r.result))
            if r.result is None:
                print(f"    {r.error}")
                continue
            result = r.result.proposed if r.result.proposed is not None else r.original
            print(unified_diff(r.original, result).rstrip("\n") or "    (no change)")
            if r.error:
                print(f"    guard: {r.error}")

    def _cmd_stats(self, args):
        done = self.session.finished()
        if not done:
            print("no finished requests yet")
            return
        if getattr(self.shell, "kernel", None) is not None:
            from IPython.display import display

            from .charts import LiveChart, request_point

            display(LiveChart(requests=[request_point(r) for r in done], title="all requests"))
            return
        print(f"{'#':>3} {'tokens':>6} {'host TTFT ms':>12} {'host tok/s':>10} {'wafer TTFT ms':>13} "
              f"{'wafer tok/s':>11}")
        for i, r in enumerate(done, 1):
            s = r.stats
            print(f"{i:>3} {s.tokens:>6} {s.ttft_s * 1e3:>12.1f} {s.tok_per_s:>10.1f} {s.wafer_ttft_s * 1e3:>13.3f} "
                  f"{s.wafer_tok_per_s:>11,.0f}")

    def _cmd_apply(self, args):
        if self.session.accepted is None:
            print("nothing accepted yet: press Accept in a %%spark --panel first", file=sys.stderr)
            return
        self.shell.set_next_input(self.session.accepted, replace=False)
        print("the accepted edit is in a new cell below")

    def _cmd_config(self, args):
        s = self.session
        for name, trait in sorted(s.traits(config=True).items()):
            print(f"Spark.{name} = {getattr(s, name)!r}    # {trait.help}")
        print("change with: %config Spark.NAME = VALUE  (or c.Spark.NAME in ipython_config.py)")


async def spark_async(line: str, cell: str):
    """What a `%%spark` cell runs in a kernel (`run.async_cells` rewrites the cell to await this)."""
    from IPython import get_ipython

    return await get_ipython().magics_manager.registry[SparkMagics.__name__].edit_async(line, cell)


def _parse(magic, line: str):
    """`parse_argstring`, where a line that cannot be split into words (an unclosed quote: shlex's ValueError) is
    a usage error like any other bad argument, not a traceback."""
    try:
        return parse_argstring(magic, line)
    except ValueError as err:
        raise UsageError(f"cannot read the arguments: {err}") from None


def _earlier_cells(shell) -> list[str]:
    """The cells run before this one as typed (IPython's `In` holds them transformed: magics as calls)."""
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if history is None:
        history = shell.user_ns.get("In", [])
    return list(history[:-1])


def _too_long(engine, cell: str, instruction: str) -> str | None:
    """Why the cell and instruction cannot fit the engine's context, or None (also where the engine cannot say)."""
    count, context = _counter(engine), getattr(engine, "context", None)
    if count is None or not isinstance(context, int):
        return None
    try:
        tokens = count(cell) + count(instruction)
    except Exception:  # text the tokenizer refuses: the edit itself says so, as one message
        return None
    if tokens < context:
        return None
    return (f"the cell and instruction are {tokens:,} tokens and the model's context holds {context:,}: edit a "
            "smaller cell")


def _counter(engine):
    tok = getattr(engine, "tokenizer", None)
    if tok is None or not hasattr(tok, "encode"):
        return None
    return lambda text: len(tok.encode(text))


def _numba_cache() -> str:
    """Where numba caches the compiled kernels, and how many are there."""
    import spark_nb

    root = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(spark_nb.__file__).parent)
    files = list(root.rglob("*.nbi"))
    return f"{len(files)} cached kernel indexes under {root}" if files else f"empty ({root}): first use compiles"
