"""The models already on this machine, and names for them: `spark-nb models`, `%spark models`, and any `model=`.

    from spark_nb.model import stores
    for m in stores.available():        # StoredModel: name, path, source, size, architecture, quantization,
        print(m.name, m.path)           #   chat_template, runs, problem (read cheaply: no weights)
    stores.resolve("qwen2.5-coder:0.5b")   # -> the GGUF blob Ollama keeps for it (a path is returned as is)

Stores, each in its own file: the built-in model and SPARK_NB_MODELS (local.py), the Hugging Face hub cache
(huggingface.py), Ollama (ollama.py), LM Studio (lmstudio.py). `pull` downloads from the hub into its cache.
"""
from __future__ import annotations

from . import huggingface, lmstudio, local, ollama
from .record import StoredModel, describe
from .resolve import resolve

__all__ = ["available", "find", "resolve", "describe", "StoredModel", "table"]

STORES = (local.builtin, local.named, huggingface.find, ollama.find, lmstudio.find)


def find() -> list[StoredModel]:
    """Every model in every store, by name and path only (nothing opened). A store that cannot be read (a folder
    without permission, a file vanishing mid-scan) lists nothing rather than failing every name's lookup."""
    found = []
    for store in STORES:
        try:
            found += store()
        except OSError:
            continue
    return found


def available() -> list[StoredModel]:
    """Every model in every store, described: architecture, quantization, chat template, whether spark-nb runs it."""
    return [describe(model) for model in find()]


def table(models: list[StoredModel]) -> str:
    """A plain-text table of described models, one a line, for the command line and %spark models."""
    rows = [("NAME", "ARCH", "SIZE", "QUANT", "CHAT", "SOURCE")]
    for m in models:
        arch = (m.architecture or "?") + ("" if m.runs else " (unsupported)" if not m.problem else " (unreadable)")
        rows.append((m.name, arch, _size(m.size), m.quantization or "?", "yes" if m.chat_template else "no",
                     m.source))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
