"""load_checkpoint: any model path or name -> Checkpoint. A name `spark-nb models` lists is resolved to its path
first (stores.resolve); a file is read as GGUF (llama.cpp, Ollama's blobs have no suffix), anything else as a
Hugging Face model folder."""
from __future__ import annotations

from pathlib import Path

from .folder import Checkpoint, load_folder
from .stores import resolve


def load_checkpoint(path: str | Path, dtype: str = "fp32", streamed: bool = False) -> Checkpoint:
    """Read and validate a model; raises ModelLoadError saying what is wrong and what to do. streamed: its weights
    are read only as the engine packs them (StreamedWeights), a layer at a time."""
    path = resolve(path)
    if path.is_file() or (path.suffix.lower() == ".gguf" and not path.exists()):
        from .gguf_file import load_gguf  # the gguf library is imported only for GGUF files

        return load_gguf(path, dtype=dtype, streamed=streamed)
    return load_folder(path, dtype=dtype, streamed=streamed)
