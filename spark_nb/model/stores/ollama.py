"""Ollama's store (OLLAMA_MODELS, else ~/.ollama/models and the Linux service's /usr/share/ollama/.ollama/models):
manifests/HOST/NAMESPACE/MODEL/TAG is a JSON manifest whose `application/vnd.ollama.image.model` layer names the
GGUF file by digest, kept as blobs/sha256-<hex>. Names are Ollama's own: `qwen2.5-coder:0.5b` for the library,
`user/model:tag` for another namespace, `host/user/model:tag` for another registry (hf.co); MODEL alone is
MODEL:latest, as `ollama run` reads it."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .record import StoredModel

SOURCE = "ollama"
MODEL_LAYER = "application/vnd.ollama.image.model"
REGISTRY = "registry.ollama.ai"


def roots() -> list[Path]:
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    return [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def ollama_name(host: str, namespace: str, model: str, tag: str) -> str:
    if host == REGISTRY:
        return f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def find() -> list[StoredModel]:
    found = []
    for root in roots():
        manifests = root / "manifests"
        if not manifests.is_dir():
            continue
        for manifest in sorted(manifests.glob("*/*/*/*")):
            if not manifest.is_file():
                continue
            host, namespace, model, tag = manifest.relative_to(manifests).parts
            name = ollama_name(host, namespace, model, tag)
            aliases = (name.rsplit(":", 1)[0],) if tag == "latest" else ()
            blob, size = _model_blob(root, manifest)
            if blob is not None:
                found.append(StoredModel(name, blob, SOURCE, size, aliases=aliases))
    return found


def _model_blob(root: Path, manifest: Path) -> tuple[Path | None, int]:
    """The GGUF blob a manifest's model layer names, and its size (None: no model layer, or not valid JSON)."""
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None, 0
    for layer in layers:
        if isinstance(layer, dict) and layer.get("mediaType") == MODEL_LAYER and isinstance(layer.get("digest"), str):
            blob = root / "blobs" / layer["digest"].replace(":", "-", 1)
            size = blob.stat().st_size if blob.is_file() else int(layer.get("size") or 0)
            return blob, size
    return None, 0
