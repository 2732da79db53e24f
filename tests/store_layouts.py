"""The on-disk layouts of the model stores spark-nb reads, with tiny models, for tests: the Hugging Face hub cache
(models--ORG--NAME/blobs, refs/main, snapshots/COMMIT/* linked to the blobs), Ollama (manifests/HOST/NS/MODEL/TAG
naming blobs/sha256-HEX), LM Studio (PUBLISHER/REPO/*.gguf), and the tiny files themselves: a GGUF file written as
llama.cpp's converter writes one (tests/gguf_files.py) and a random-weight Hugging Face folder."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gguf import GGMLQuantizationType as T
from gguf_files import byte_level_vocab, cycle_types, write_gguf

from spark_nb.model.synthetic import config_dict, random_weights, write_random_model

CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"


def tiny_gguf(path: Path, arch: str = "qwen2", chat: bool = True, kinds=(T.Q8_0, T.F16)) -> Path:
    """A 2-layer GGUF file of random weights, its matrices in `kinds` by turn."""
    vocab = byte_level_vocab()
    config = config_dict("qwen2" if arch == "qwen2" else "llama", vocab_size=len(vocab["tokens"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(path, arch, config, random_weights(config), vocab, types=cycle_types(kinds),
                      chat_template=CHAT_TEMPLATE if chat else None)


def tiny_folder(path: Path) -> Path:
    """A random-weight Hugging Face model folder (qwen2, fp32, no chat template)."""
    return write_random_model(path, {"family": "qwen2", "vocab_size": 512})


def hub_repo(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "0123456789abcdef" * 2 + "01234567"
             ) -> Path:
    """Lay files out as huggingface_hub caches a repo's main revision; returns the snapshot folder."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def folder_files(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir()) if f.is_file()}


def ollama_model(root: Path, name: str, gguf: bytes, host: str = "registry.ollama.ai") -> Path:
    """Store a GGUF file as `ollama pull` does under name ("model:tag", "user/model:tag"); returns its blob."""
    model, tag = name.split(":")
    namespace, model = model.split("/") if "/" in model else ("library", model)
    layers = []
    for media, data in (("application/vnd.ollama.image.model", gguf),
                        ("application/vnd.ollama.image.template", b"{{ .Prompt }}"),
                        ("application/vnd.ollama.image.params", b'{"stop": ["<|im_end|>"]}')):
        digest = hashlib.sha256(data).hexdigest()
        blob = root / "blobs" / f"sha256-{digest}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        layers.append({"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)})
    manifest = root / "manifests" / host / namespace / model / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64,
                   "size": 2}, "layers": layers}))
    return root / "blobs" / f"sha256-{hashlib.sha256(gguf).hexdigest()}"
