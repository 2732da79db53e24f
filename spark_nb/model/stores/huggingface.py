"""The Hugging Face hub cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), read with
`huggingface_hub.scan_cache_dir`: each model repo's main revision, as a model folder (config.json beside its
safetensors) named by its repo id, and each GGUF file in it named REPO/FILE; REPO alone names a repo's only GGUF
file (of several, it is refused with their names)."""
from __future__ import annotations

import os
from pathlib import Path

from .record import StoredModel

SOURCE = "hugging face"


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloads, from the environment as it is now (huggingface_hub reads it once, at
    import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def find() -> list[StoredModel]:
    cache = hub_cache()
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    try:
        scan = scan_cache_dir(cache)
    except (OSError, ValueError):  # CacheNotFound is an OSError
        return []
    found = []
    for repo in sorted(scan.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revision = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        ggufs = sorted((f for f in revision.files if f.file_name.lower().endswith(".gguf")),
                       key=lambda f: str(f.file_path))
        folder = (revision.snapshot_path / "config.json").is_file()
        if folder:
            size = sum(f.size_on_disk for f in revision.files if f not in ggufs)
            found.append(StoredModel(repo.repo_id, revision.snapshot_path, SOURCE, size))
        for f in ggufs:
            relative = f.file_path.relative_to(revision.snapshot_path).as_posix()
            found.append(StoredModel(f"{repo.repo_id}/{relative}", f.file_path, SOURCE, f.size_on_disk,
                                     aliases=() if folder else (repo.repo_id,)))
    return found
