"""The notebook extension: %%spark / %spark magics, the stream view and the live charts.

    %load_ext spark_nb
"""
from __future__ import annotations

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(shell) -> None:
    from .magics import SparkMagics
    from .run import async_cells, clear_last_traceback

    magics = SparkMagics(shell)
    shell.register_magics(magics)
    if getattr(shell, "kernel", None) is not None and async_cells not in shell.input_transformers_post:
        shell.input_transformers_post.append(async_cells)  # %%spark runs as an async cell: Stop works
        # ... and its errors reach ipykernel's reply the way a synchronous cell's do (see clear_last_traceback)
        shell.events.register("pre_execute", clear_last_traceback)
    if magics.session not in shell.configurables:
        shell.configurables.append(magics.session)  # so %config Spark lists and sets it


def unload_ipython_extension(shell) -> None:
    from .magics import SparkMagics
    from .run import async_cells, clear_last_traceback

    if async_cells in shell.input_transformers_post:
        shell.input_transformers_post.remove(async_cells)
    if clear_last_traceback in shell.events.callbacks["pre_execute"]:
        shell.events.unregister("pre_execute", clear_last_traceback)
    for name in ("line", "cell"):
        shell.magics_manager.magics[name].pop("spark", None)
    shell.configurables[:] = [c for c in shell.configurables if type(c).__name__ != "Spark"]
    shell.magics_manager.registry.pop(SparkMagics.__name__, None)
