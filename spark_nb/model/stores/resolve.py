"""resolve: what a user passes as a model (a path, or a name `spark-nb models` lists) -> the path to load.

An existing file or folder is itself. Otherwise the name is looked up in every store, without opening any model:
first the names the listing shows, then the aliases (an Ollama MODEL for MODEL:latest, an LM Studio file name);
a name two models share is refused with both. A path-like string that names nothing (absolute, ./, ~) is left to
the loaders, whose errors say what is missing; any other unknown name is one error with the close matches.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from ..errors import ModelLoadError
from .record import StoredModel


def resolve(model: str | Path) -> Path:
    path = Path(model).expanduser()
    text = str(model)
    if path.exists() or path.is_absolute() or text.startswith((".", "~")) or not text.strip():
        return path
    from . import find

    models = find()
    for names in (lambda m: (m.name,), lambda m: m.aliases):
        paths = {m.path for m in models if text in names(m)}
        if len(paths) == 1:
            return paths.pop()
        if len(paths) > 1:
            raise ModelLoadError(f"{text!r} names {len(paths)} models: "
                                 f"{', '.join(sorted(m.name for m in models if m.path in paths))}; "
                                 "pass one of those names or a path")
    raise ModelLoadError(f"no model named {text!r}, and no file or folder {path}{_suggest(text, models)}. "
                         "`spark-nb models` lists the models on this machine (built-in, Hugging Face cache, Ollama, "
                         "LM Studio, SPARK_NB_MODELS); `spark-nb pull REPO` downloads one")


def _suggest(text: str, models: list[StoredModel]) -> str:
    names = sorted({n for m in models for n in (m.name, *m.aliases)})
    lower = {n.lower(): n for n in names}
    close = [lower[n] for n in difflib.get_close_matches(text.lower(), list(lower), n=5, cutoff=0.5)]
    close += [n for n in names if text.lower() in n.lower() and n not in close]
    return f"; close matches: {', '.join(close[:5])}" if close else ""
