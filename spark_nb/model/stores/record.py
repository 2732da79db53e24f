"""StoredModel: one model found on this machine, and what its cheap parts say about it.

A store finds models (a name, a path, a size) without opening them; `describe` then reads only what a listing
shows: a GGUF file's metadata and tensor table (`header.read_header`, no tensor data), a folder's config.json and
tokenizer_config.json (no weights).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import ARCHITECTURES
from ..errors import ModelLoadError

FOLDER_FAMILIES = frozenset(ARCHITECTURES.values())  # config.json model_type values load_folder runs


@dataclass(frozen=True)
class StoredModel:
    name: str  # what to pass as a model: spark_nb.load(name), --model name
    path: Path  # a GGUF file or a Hugging Face model folder
    source: str  # the store: "built-in", "hugging face", "ollama", "lm studio", "SPARK_NB_MODELS"
    size: int  # bytes on disk
    aliases: tuple[str, ...] = ()  # other names that resolve to it (an Ollama NAME for NAME:latest, a file name)
    # filled in by describe(); None until then
    architecture: str | None = None  # general.architecture, or config.json's model_type
    quantization: str | None = None  # GGUF tensor types by share ("Q5_0/Q8_0/Q6_K"), or the folder's dtype
    chat_template: bool | None = None  # it carries a chat template (instruct models do)
    runs: bool | None = None  # spark-nb runs this architecture
    problem: str | None = None  # why it could not be read, when it could not

    @property
    def kind(self) -> str:
        return "folder" if self.path.is_dir() else "gguf"


def folder_size(path: Path) -> int:
    """Bytes of the files in a model folder (links followed: the hub cache's snapshots link to its blobs)."""
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def describe(model: StoredModel) -> StoredModel:
    """The model with architecture, quantization, chat template and `runs` filled in from its cheap parts; a file or
    folder that cannot be read gets `problem` instead of raising (a listing shows everything it finds)."""
    try:
        found = _describe_folder(model.path) if model.path.is_dir() else _describe_gguf(model.path)
    except (OSError, ValueError) as err:  # ModelLoadError is a ValueError
        return replace(model, runs=False, problem=str(err))
    return replace(model, **found)


def _describe_gguf(path: Path) -> dict:
    from ..gguf_file import ARCHITECTURES as GGUF_ARCHITECTURES  # the gguf library: only once a GGUF file is read
    from .header import read_header

    meta, tensors = read_header(path)
    arch = meta.get("general.architecture")

    return dict(architecture=arch, quantization=tensor_types(tensors),
                chat_template=bool(meta.get("tokenizer.chat_template")),
                runs=arch in GGUF_ARCHITECTURES and meta.get("split.count", 1) <= 1)


def tensor_types(tensors) -> str:
    """The weight matrices' GGUF types by number of values, largest share first ("Q5_0/Q8_0/Q6_K/Q4_K"); 1-D
    tensors (norms, biases: F32 in every llama.cpp file) count only when nothing else is there."""
    matrices = [tensor for tensor in tensors if len(tensor.shape) > 1] or list(tensors)
    shares = Counter()
    for tensor in matrices:
        shares[tensor.tensor_type.name] += int(tensor.n_elements)
    return "/".join(kind for kind, _ in shares.most_common()) or "?"


def _describe_folder(path: Path) -> dict:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{path} has no config.json")
    config = _json(config_path)
    archs = config.get("architectures") or []
    arch = config.get("model_type") or (archs[0] if archs else None)
    quant = config.get("quantization_config") or {}
    dtype = config.get("torch_dtype") or config.get("dtype") or "?"
    tokenizer = _json(path / "tokenizer_config.json") if (path / "tokenizer_config.json").is_file() else {}
    chat = bool(tokenizer.get("chat_template")) or any((path / f).is_file() for f in ("chat_template.jinja",
                                                                                       "chat_template.json"))
    runs = (arch in FOLDER_FAMILIES or any(a in ARCHITECTURES for a in archs)) and not quant and any(
        path.glob("*.safetensors"))
    return dict(architecture=arch, quantization=quant.get("quant_method", "quantized") if quant else dtype,
                chat_template=chat, runs=bool(runs))


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value
