"""One %%spark request from first token to result, with Stop and Redirect.

    run = EditRun(spark, live, cell, instruction, options)
    result = run.blocking()          # terminal IPython: generate straight through; Ctrl-C stops it
    result = await run.interleaved() # a kernel: the event loop runs between forward passes

A kernel handles widget messages only when its event loop runs, and a cell that computes holds the loop. So in a
kernel `%%spark` runs as an async cell (`async_cells` rewrites it) that generates one forward pass at a time
(`spark_nb.edit_steps`) and yields to the loop after each; ipykernel (7.4+) dispatches comm messages while an async
cell awaits, so the view's Stop and Redirect reach `stop()` and `redirect()` between two passes. Everything stays
on the kernel's main thread, where the forward pass's lead runs (its helper threads join it). (When the engine ran
numba parallel regions, a second calling thread also made each several times slower: a decode step 0.44 ms on the
main thread, 3.4-4.3 ms from another.)

Redirect ends the current generation after its token and starts a new one from the partial edit (the lines
decided so far plus the rest of the cell; a line being rewritten stays as it was) with the new instruction. The
result is always judged against the cell as it was: the guard parses it, the diff is against the original, and
nothing is applied until it is done.
"""
from __future__ import annotations

import asyncio
import dataclasses

from ..edits import drain

__all__ = ["EditRun", "async_cells", "clear_last_traceback"]

YIELD_S = 0.05  # longest stretch of generation without the event loop getting a millisecond


class EditRun:
    def __init__(self, spark, live, cell: str, instruction: str, options: dict):
        self.spark, self.live, self.cell, self.options = spark, live, cell, options
        self.instructions = [instruction]  # the first, then each redirect in the order they took effect
        self.stopped = False
        self._redirect: str | None = None  # waiting for the current generation to stop
        live.on_stop, live.on_redirect = self.stop, self.redirect

    # -- controls (called by the view between two steps) -------------------------------------------------------

    def stop(self) -> None:
        self._redirect, self.stopped = None, True

    def redirect(self, instruction: str) -> None:
        if instruction.strip():
            self._redirect, self.stopped = instruction.strip(), True

    def is_set(self) -> bool:  # the `cancel` that spark_nb.edit polls after every token
        return self.stopped

    # -- generation ----------------------------------------------------------------------------------------------

    def _steps(self):
        base = self.cell
        while True:
            result = yield from self.spark.edit_steps(base, self.instructions[-1], cancel=self,
                                                      on_token=self.live.update, **self.options)
            instruction, self._redirect = self._redirect, None
            if instruction is None:
                return self._against_cell(result)
            self.stopped = False
            base = result.settled or base  # the partial edit (a line being written left as it was)
            self.instructions.append(instruction)
            self.live.restart(instruction)

    def _against_cell(self, result):
        """A result after redirects was made from a partial edit; the cell is what it replaces and is diffed to."""
        if result.original == self.cell:
            return result
        return dataclasses.replace(result, original=self.cell, code=result.code if result.ok else self.cell)

    def blocking(self):
        return drain(self._steps())

    async def interleaved(self):
        loop, steps = asyncio.get_running_loop(), self._steps()
        last = loop.time()
        try:
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    return done.value
                # The loop runs here. One iteration per step is nearly free; a message from the frontend needs a
                # few (shell channel thread -> main loop -> dispatch -> comm handler), so every YIELD_S the loop
                # also gets a millisecond: Stop and Redirect land within ~YIELD_S for ~2 % of the time.
                if loop.time() - last >= YIELD_S:
                    await asyncio.sleep(0.001)
                    last = loop.time()
                else:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:  # the kernel's interrupt lands at the await: report it like Ctrl-C
            steps.close()
            raise KeyboardInterrupt from None


def async_cells(lines: list[str]) -> list[str]:
    """An IPython `input_transformers_post` hook: a `%%spark` cell, which IPython has already turned into
    `get_ipython().run_cell_magic('spark', line, cell)`, becomes `await <spark_async>(line, cell)`, so the kernel
    runs it as an async cell (see the module docstring). Anything else passes through untouched."""
    import ast

    from IPython import get_ipython

    source = "".join(lines)
    shell = get_ipython()
    if "run_cell_magic('spark'" not in source or not getattr(shell, "autoawait", False):
        return lines  # with %autoawait off a top-level await would not run: keep the synchronous magic
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return lines
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return lines
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run_cell_magic" and len(call.args) == 3
            and isinstance(call.args[0], ast.Constant) and call.args[0].value == "spark"):
        return lines
    line, cell = (ast.unparse(a) for a in call.args[1:])
    return [f"await __import__('spark_nb.notebook.magics', fromlist=['_']).spark_async({line}, {cell})\n"]


def clear_last_traceback() -> None:
    """An IPython `pre_execute` hook, installed with `async_cells`: start every execution with ipykernel's record of
    the last traceback cleared, as ipykernel's own (synchronous) `run_cell` does.

    ipykernel (7.4) runs an async cell through `shell.run_cell_async`, which never clears that record, and its
    `do_execute` reads `shell._last_traceback` for every failed cell. Only a shown traceback sets it, and a
    UsageError is printed without one. So a `%%spark` usage error (no instruction, an empty cell, a bad flag: all
    raised inside the awaited cell) either crashed `do_execute` with an AttributeError where no cell had run
    synchronously yet (no execute_reply: the cell never finished in the frontend), or replied with the traceback
    of an earlier, unrelated cell."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell._last_traceback = None
        shell._last_traceback_during_displayhook = False
