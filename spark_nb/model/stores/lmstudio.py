"""LM Studio's model folders (~/.lmstudio/models, and ~/.cache/lm-studio/models of older versions):
PUBLISHER/REPO/*.gguf, named as LM Studio shows them, PUBLISHER/REPO/FILE.gguf; FILE.gguf alone resolves too, and
PUBLISHER/REPO when it holds one model (of several, it is refused with their names). Vision projectors
(mmproj-*.gguf) are not models. A REPO folder holding a config.json is a model folder."""
from __future__ import annotations

from pathlib import Path

from .record import StoredModel, folder_size

SOURCE = "lm studio"


def roots() -> list[Path]:
    return [Path.home() / ".lmstudio" / "models", Path.home() / ".cache" / "lm-studio" / "models"]


def find() -> list[StoredModel]:
    found = []
    for root in roots():
        if not root.is_dir():
            continue
        for repo in sorted(p for p in root.glob("*/*") if p.is_dir()):
            name = repo.relative_to(root).as_posix()
            if (repo / "config.json").is_file():
                found.append(StoredModel(name, repo, SOURCE, folder_size(repo)))
                continue
            files = sorted(f for f in repo.glob("*.gguf") if f.is_file() and not f.name.lower().startswith("mmproj"))
            for f in files:
                aliases = (f.name, name)  # the repo's name: its one file, or refused with their names
                found.append(StoredModel(f"{name}/{f.name}", f, SOURCE, f.stat().st_size, aliases=aliases))
    return found
