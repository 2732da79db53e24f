"""spark-nb: real-time AI code editing in Jupyter, on an emulated wafer-scale engine.

    import spark_nb
    engine = spark_nb.load("path/to/hf-model-folder", wafer="wse3", dtype="int8")
    for event in engine.stream("def add(a, b):", max_new_tokens=32):
        print(event.text, end="")
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "project", "__version__"]


def load(path, wafer="wse3", dtype="int8", context=None):
    """Load a Hugging Face model folder onto an emulated wafer and return an `Engine`.

    wafer: a preset ("wse3", "wse2", "mini") or a WaferSpec; dtype: "int8" (per-channel) or "fp32";
    context: KV cache length (default: the model's, at most 2048).
    """
    from .engine import Engine

    return Engine.load(path, wafer=wafer, dtype=dtype, context=context)


def project(config, wafer="wse3", n_wafers=1, dtype="fp16", context=1024, prompt=1024):
    """Project decode speed and time-to-first-token on a wafer from a model config alone (no weights)."""
    from .wafer.project import project as _project

    return _project(config, wafer=wafer, n_wafers=n_wafers, dtype=dtype, context=context, prompt=prompt)
