"""Models named by place rather than found in a store: the built-in edit model inside the package, and whatever
SPARK_NB_MODELS names (os.pathsep-separated: a model folder, a .gguf file, or a folder holding either kind), each
by its folder or file name (a file's stem resolves too)."""
from __future__ import annotations

import os
from pathlib import Path

from .record import StoredModel, folder_size

BUILTIN = Path(__file__).resolve().parents[2] / "models" / "builtin"  # spark_nb/models/builtin
BUILTIN_NAME = "builtin"


def builtin() -> list[StoredModel]:
    if not (BUILTIN / "config.json").is_file():
        return []
    return [StoredModel(BUILTIN_NAME, BUILTIN, "built-in", folder_size(BUILTIN))]


def named() -> list[StoredModel]:
    found = []
    for entry in os.environ.get("SPARK_NB_MODELS", "").split(os.pathsep):
        path = Path(entry).expanduser() if entry.strip() else None
        if path is None or not path.exists():
            continue
        model = _model(path, any_file=True)  # a file named here is a GGUF file whatever its suffix
        if model is not None:
            found.append(model)
        elif path.is_dir():
            found += [m for child in sorted(path.iterdir()) if (m := _model(child)) is not None]
    return found


def _model(path: Path, any_file: bool = False) -> StoredModel | None:
    if path.is_file() and (any_file or path.suffix.lower() == ".gguf"):
        return StoredModel(path.name, path, "SPARK_NB_MODELS", path.stat().st_size, aliases=(path.stem,))
    if path.is_dir() and (path / "config.json").is_file():
        return StoredModel(path.name, path, "SPARK_NB_MODELS", folder_size(path))
    return None
