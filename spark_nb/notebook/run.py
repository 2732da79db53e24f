"""One %%spark request from first token to result, with Stop and Redirect.

    run = EditRun(spark, live, cell, instruction, options)
    result = run.blocking()          # generate in this thread (terminal IPython): Ctrl-C stops it
    result = await run.threaded()    # generate on a worker thread while the kernel's event loop stays free

A kernel handles widget messages only when its event loop runs, and a cell that computes holds the loop. So in a
kernel `%%spark` runs as an async cell (`async_cells` rewrites it): the model generates on a worker thread (the
numba kernels release the GIL) while the cell awaits, and ipykernel (7.4+) dispatches comm messages during the
await, so the view's Stop and Redirect reach `stop()` and `redirect()` while tokens stream. The view is synced
from the event loop, every `interval` seconds; the worker only records the latest state.

Redirect ends the current generation after its token and starts a new one from the partial edit (the lines
decided so far plus the rest of the cell; a line being rewritten stays as it was) with the new instruction. The result is always judged against the cell as it
was: the guard parses it, the diff is against the original, and nothing is applied until it is done.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading

__all__ = ["EditRun", "async_cells"]


class EditRun:
    def __init__(self, spark, live, cell: str, instruction: str, options: dict):
        self.spark, self.live, self.cell, self.options = spark, live, cell, options
        self.instructions = [instruction]  # the first, then each redirect in the order they took effect
        self.cancel = threading.Event()
        self._redirect: str | None = None  # waiting for the current generation to stop
        self._lock = threading.Lock()
        live.on_stop, live.on_redirect = self.stop, self.redirect

    # -- controls (any thread) -----------------------------------------------------------------------------------

    def stop(self) -> None:
        with self._lock:
            self._redirect = None
            self.cancel.set()

    def redirect(self, instruction: str) -> None:
        instruction = instruction.strip()
        if not instruction:
            return
        with self._lock:
            self._redirect = instruction
            self.cancel.set()

    # -- generation ----------------------------------------------------------------------------------------------

    def _generate(self, on_token):
        base = self.cell
        while True:
            result = self.spark.edit(base, self.instructions[-1], cancel=self.cancel, on_token=on_token,
                                     **self.options)
            with self._lock:
                instruction, self._redirect = self._redirect, None
                if instruction is None:
                    return self._against_cell(result)
                self.cancel.clear()
            base = result.settled or base  # the partial edit (a line being written left as it was)
            self.instructions.append(instruction)
            self.live.restart(instruction)

    def _against_cell(self, result):
        """A result after redirects was made from a partial edit; the cell is what it replaces and is diffed to."""
        if result.original == self.cell:
            return result
        return dataclasses.replace(result, original=self.cell, code=result.code if result.ok else self.cell)

    def blocking(self):
        return self._generate(self.live.update)

    async def threaded(self):
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def on_token(*progress):
            first = self.live.first_token_at is None
            self.live.record(*progress)
            if first:  # show the first token at once, not at the loop's next tick
                loop.call_soon_threadsafe(self.live.flush_if_changed)

        def work():
            try:
                outcome = (self._generate(on_token), None)
            except BaseException as err:  # handed to the event loop, raised there
                outcome = (None, err)
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(outcome))

        worker = threading.Thread(target=work, name="spark-edit", daemon=True)
        worker.start()
        try:
            while not done.done():
                await asyncio.wait([done], timeout=self.live.interval)
                self.live.flush_if_changed()
        except asyncio.CancelledError:  # the kernel's interrupt: stop within one token, then report like Ctrl-C
            self.stop()
            worker.join()
            raise KeyboardInterrupt from None
        result, err = done.result()
        if err is not None:
            raise err
        return result


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
