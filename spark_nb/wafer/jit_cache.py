"""Where numba caches the forward pass: in a folder named for the sources compiled into it.

numba keys a cached function on its own file alone (time stamp and size). forward.py's functions are compiled
together with the kernels they call, from kernels.py and workers.py, so after an edit of kernels.py, a pull, or a
process that had imported the old kernels writing the cache after the edit, forward's cache handed back machine
code of other kernels: a checkout whose notebooks reproduced beside a fresh clone whose did not. Cached code must
never change a number, so forward's dispatchers cache under `<cache>/wafer-<hash of every source they embed>`:
other sources, another folder, a fresh compile.

    keyed_by_sources(dispatchers, [forward.py, kernels.py, workers.py])
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from numba.core import config

__all__ = ["keyed_by_sources"]


def keyed_by_sources(dispatchers, sources) -> Path:
    """Point each numba dispatcher's on-disk cache (before anything compiled) at a folder named for the hash of
    `sources`, under NUMBA_CACHE_DIR where it is set, else beside the first source (its __pycache__); returns it."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(Path(source).read_bytes())
    base = Path(config.CACHE_DIR) if config.CACHE_DIR else Path(sources[0]).parent / "__pycache__"
    folder = base / f"wafer-{digest.hexdigest()[:16]}"
    previous = config.CACHE_DIR
    config.CACHE_DIR = str(folder)  # read once, as each dispatcher makes its cache locator
    try:
        for dispatcher in dispatchers:
            dispatcher.enable_caching()
    finally:
        config.CACHE_DIR = previous
    return folder
