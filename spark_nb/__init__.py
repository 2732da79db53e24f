"""spark-nb: real-time AI code editing in Jupyter, on an emulated wafer-scale engine.

    import spark_nb
    engine = spark_nb.load("path/to/hf-model-folder", wafer="wse3", dtype="int8")
    for event in engine.stream("def add(a, b):", max_new_tokens=32):
        print(event.text, end="")

    result = spark_nb.edit(code, "add docstrings")    # the built-in model; result.ok, result.code, result.error
    spark_nb.panel(code)                               # in a notebook: the refactor panel over that code
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "edit", "panel", "project", "__version__"]


def _jupyter_labextension_paths():
    """Where the prebuilt JupyterLab extension lives (`jupyter labextension develop . --overwrite` links it)."""
    return [{"src": "labextension", "dest": "spark-nb"}]


def load_ipython_extension(shell):
    """`%load_ext spark_nb`: registers %%spark and %spark (imported only now: the package stays light)."""
    from .notebook import load_ipython_extension as _load

    _load(shell)


def unload_ipython_extension(shell):
    from .notebook import unload_ipython_extension as _unload

    _unload(shell)


def load(path=None, wafer="wse3", dtype="int8", context=None):
    """Load a Hugging Face model folder or a GGUF file (default: the built-in edit model) onto an emulated wafer and
    return an `Engine`. GGUF tensors of any llama.cpp quantization spark-nb reads are dequantized at load.

    wafer: a preset ("wse3", "wse2", "mini") or a WaferSpec; dtype: "int8" (per-channel), "fp32", or "auto" (a GGUF
    file's matrices, token embedding included, kept in their own block formats, Q8_0/Q4_0/Q5_0/Q4_K/Q5_K/Q6_K,
    others as Q8_0; a model folder as int8);
    context: KV cache length (default: the model's, at most 2048).
    """
    from .engine import Engine

    if path is None:
        from .edits import BUILTIN

        path = BUILTIN
    return Engine.load(path, wafer=wafer, dtype=dtype, context=context)


def edit(code, instruction, **options):
    """Edit one cell as instructed and guard the result; returns an `EditResult` (code, original, ok, error, stats,
    text). Options: model (an Engine, a folder, or None for the built-in model), max_new_tokens, temperature, seed,
    context (earlier cells), speculative, wafer, dtype, family, on_token (live progress), cancel (a
    threading.Event that stops it). See `spark_nb.edits.edit`."""
    from .edits import edit as _edit

    return _edit(code, instruction, **options)


def panel(code):
    """The refactor panel over a string of code, in a notebook: presets, an instruction, model and wafer pickers,
    the streamed edit, then Accept (kept in `.code`), Reject or Retry. `%%spark --panel` binds one to a cell."""
    from .notebook.panel import panel as _panel

    return _panel(code)


def project(config, wafer="wse3", n_wafers=1, dtype="fp16", context=1024, prompt=1024):
    """Project decode speed and time-to-first-token on a wafer from a model config alone (no weights)."""
    from .wafer.project import project as _project

    return _project(config, wafer=wafer, n_wafers=n_wafers, dtype=dtype, context=context, prompt=prompt)
