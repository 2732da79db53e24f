"""A model's packed tiles on disk: loading it a second time maps them instead of reading, dequantizing, quantizing
and tiling its weights again (a 0.5B GGUF at int8 on 2 cores: 7.7 s of CPU the first time, 1.45 s the second,
most of that the imports, the tokenizer and numba's cached code).

One entry per model path, dtype and wafer, under $XDG_CACHE_HOME/spark-nb/tiles (~/.cache/spark-nb/tiles): each
array of the packed Decoder as .npy (mapped copy-on-write at load, so nothing is read until a forward touches it),
the tokenizer as tokenizer.json and its settings, the config, and what the entry was made from — the model's
identity (every file's size and mtime), the packing code's own source, the wafer spec. Any difference and the
entry is rebuilt. Beside the tiles, engine.json keeps what an engine searched and measured for them — the
placement, the wafer layout the cycle model found for it, the decode threads the probe chose — under a key of the
context, the worker threads, the machine and that code (`engine_key`), so a second load skips ~1 s of finding
them. Only models of MIN_PARAMS or more are kept (a small one loads faster than it is written); at most MAX_ENTRIES
are, the least recently used and those whose model is gone evicted first.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..model import ModelConfig, Tokenizer
from ..wafer import forward as fw
from ..wafer.tiles import VECTOR_BYTES, aligned_empty

MIN_PARAMS = 50_000_000
MAX_ENTRIES = 4
FORMAT = 3  # 2: dtype auto's entries (block matrices, their formats); 3: its token embedding a block matrix
# the code whose output an entry holds: a change to any of these files and every entry is rebuilt
SOURCES = ("wafer/forward.py", "wafer/packing.py", "wafer/tiles.py", "wafer/block_matrix.py", "wafer/blocks.py",
           "model/quant.py", "model/config.py", "model/tokenizer.py", "model/weights.py", "model/folder.py",
           "model/gguf_file.py", "model/gguf_tokenizer.py")
PACKAGE = Path(__file__).resolve().parents[1]
# beside the tiles, what an engine searched and measured for them (placement, wafer layout, decode threads), and the
# code that found it: a change to any of these files and it is found again
ENGINE_FILE = "engine.json"
ENGINE_SOURCES = ("wafer/placement.py", "wafer/cycles.py", "wafer/tiles.py", "wafer/spec.py", "wafer/forward.py",
                  "wafer/kernels.py", "wafer/workers.py", "engine/engine.py")
MAX_ENGINE_KEYS = 4


def root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "spark-nb" / "tiles"


def identity(path: Path, spec, dtype: str) -> dict:
    """What an entry must match: the model's files (size, mtime), the packing code, the wafer spec and dtype."""
    files = [path] if path.is_file() else sorted(f for f in path.iterdir() if f.is_file())
    code = hashlib.sha256(b"".join((PACKAGE / name).read_bytes() for name in SOURCES)).hexdigest()
    return {"format": FORMAT, "path": str(path.resolve()), "dtype": dtype, "spec": repr(spec), "code": code,
            "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def _entry(ident: dict) -> Path:
    slot = json.dumps([ident["path"], ident["dtype"], ident["spec"]])
    return root() / hashlib.sha256(slot.encode()).hexdigest()[:24]


def load(path: Path, spec, dtype: str):
    """(config, tokenizer, packed Decoder, kinds) from the cache, or None when there is no entry for this model as
    it is. kinds: dtype "auto"'s block format of each matrix (packing.pack_blocks), else None."""
    try:
        ident = identity(path, spec, dtype)
        entry = _entry(ident)
        meta = json.loads((entry / "meta.json").read_text())
        if meta["identity"] != ident:
            return None
        config = _config(meta["config"])
        tokenizer = _tokenizer(entry, meta["tokenizer"], config)
        arrays = {name: np.asarray(np.load(entry / f"{name}.npy", mmap_mode="c")) for name in meta["arrays"]}
        kinds = None if meta["kinds"] is None else _kinds(meta["kinds"])
    except (OSError, ValueError, KeyError, TypeError):  # no entry, a partial or damaged one: build it again
        return None
    os.utime(entry / "meta.json")  # recently used
    layers = fw.Layers(**{f: arrays[f"layers.{f}"] for f in fw.Layers._fields})
    top = {f: arrays[f] for f in fw.Decoder._fields if f not in ("layers", "lm_head", "lm_head_scale")}
    tied = meta["tied"]
    head = (top["embed"], top["embed_scale"]) if tied else (arrays["lm_head"], arrays["lm_head_scale"])
    return config, tokenizer, fw.Decoder(layers=layers, lm_head=head[0], lm_head_scale=head[1], **top), kinds


class Writer:
    """An entry being written (`begin`): the packer's tiles allocated as its files, mapped and zero-filled
    (`allocate`, packing.pack's allocate=), so that they are written once, in place, rather than packed in memory
    and copied to disk afterwards; `save` then adds the rest."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.files: dict[str, np.ndarray] = {}  # name -> the array mapped from tmp / name.npy

    def allocate(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A zero-filled array [shape] backed by name.npy (64-byte aligned: .npy data starts at a multiple of 64);
        in memory instead where the file cannot be made (a full disk fails here, not at a write into the map)."""
        file = self.tmp / f"{name}.npy"
        try:
            array = np.asarray(np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape))
            with open(file, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, file.stat().st_size)
            if array.ctypes.data % VECTOR_BYTES:
                raise ValueError("unaligned")
        except (OSError, ValueError):
            file.unlink(missing_ok=True)
            return aligned_empty(shape, dtype, zero=True)
        self.files[name] = array
        return array

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def begin(path: Path, spec, dtype: str, config: ModelConfig) -> Writer | None:
    """A Writer for this model's entry, or None when it is not kept (a small model, a cache that cannot be
    written)."""
    if config.n_params < MIN_PARAMS:
        return None
    try:
        entry = _entry(identity(path, spec, dtype))
        entry.parent.mkdir(parents=True, exist_ok=True)
        return Writer(Path(tempfile.mkdtemp(prefix=".writing-", dir=entry.parent)))
    except OSError:
        return None


def save(path: Path, spec, dtype: str, config: ModelConfig, tokenizer: Tokenizer, decoder,
         writer: Writer | None = None, kinds: dict | None = None) -> Path | None:
    """Keep the packed decoder of a large enough model; returns the entry (None: not kept, or it cannot be
    written: the cache is an optimisation, never an error). writer: the Writer the decoder was packed into (its
    files are not written again); kinds: dtype "auto"'s block format of each matrix."""
    writer = writer or begin(path, spec, dtype, config)
    if writer is None:
        return None
    try:
        ident = identity(path, spec, dtype)
        entry = _entry(ident)
    except OSError:
        writer.discard()
        return None
    tmp = writer.tmp
    tied = decoder.lm_head is decoder.embed
    arrays = {f"layers.{f}": getattr(decoder.layers, f) for f in fw.Layers._fields}
    arrays |= {f: getattr(decoder, f) for f in fw.Decoder._fields
               if f != "layers" and not (tied and f in ("lm_head", "lm_head_scale"))}
    meta = {"identity": ident, "config": dataclasses.asdict(config), "tied": tied, "arrays": list(arrays),
            "kinds": None if kinds is None else [[layer, name, kind.name] for (layer, name), kind in kinds.items()],
            "tokenizer": {"special_tokens": tokenizer.special_tokens, "chat_template": tokenizer.chat_template,
                          "eos_token_ids": list(tokenizer.eos_token_ids), "bos_token_id": tokenizer.bos_token_id,
                          "fim_order": tokenizer.fim_order}}
    try:
        for name, array in arrays.items():
            if writer.files.get(name) is not array:  # not packed in place
                np.save(tmp / f"{name}.npy", array)
        (tmp / "tokenizer.json").write_text(tokenizer.backend.to_str())
        (tmp / "meta.json").write_text(json.dumps(meta))  # last: an entry without it is no entry
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:
        writer.discard()
        return None
    _evict(keep=entry)
    return entry


def engine_key(context: int, threads: int) -> dict:
    """What an engine's searched and measured settings for an entry depend on besides the entry's own identity:
    the context (the KV cache the placement holds), the worker threads and the machine (the decode-thread probe),
    and the code that finds them."""
    code = hashlib.sha256(b"".join((PACKAGE / name).read_bytes() for name in ENGINE_SOURCES)).hexdigest()
    return {"context": context, "threads": threads, "host": platform.node(), "cpus": os.cpu_count(), "code": code}


def recall(path: Path, spec, dtype: str, key: dict) -> dict | None:
    """What remember kept for this model's entry under key: {"placement", "layout", "decode_threads"} (JSON),
    or None."""
    try:
        entry = _entry(identity(path, spec, dtype))
        kept = json.loads((entry / ENGINE_FILE).read_text())
        return next(value for k, value in kept if k == key)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None


def remember(path: Path, spec, dtype: str, key: dict, value: dict) -> None:
    """Keep an engine's placement, wafer layout and decode threads (JSON-able) beside the model's tiles, for the
    next load under the same key (a few keys per entry, the newest first). Nothing when the model has no entry."""
    try:
        entry = _entry(identity(path, spec, dtype))
        if not (entry / "meta.json").exists():
            return
        try:
            kept = json.loads((entry / ENGINE_FILE).read_text())
        except (OSError, ValueError):
            kept = []
        kept = [[key, value]] + [pair for pair in kept if pair[0] != key][: MAX_ENGINE_KEYS - 1]
        tmp = entry / f".{ENGINE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(kept))
        os.replace(tmp, entry / ENGINE_FILE)
    except (OSError, ValueError, TypeError):
        pass  # the cache is an optimisation, never an error


def _evict(keep: Path) -> None:
    """Drop entries whose model is gone, then the least recently used beyond MAX_ENTRIES; writes older than a day
    that never finished too."""
    entries = []
    for entry in root().iterdir():
        try:
            if entry.name.startswith(".writing-"):
                if time.time() - entry.stat().st_mtime > 86400:
                    shutil.rmtree(entry, ignore_errors=True)
                continue
            meta = entry / "meta.json"
            if entry != keep and not Path(json.loads(meta.read_text())["identity"]["path"]).exists():
                shutil.rmtree(entry, ignore_errors=True)
                continue
            entries.append((meta.stat().st_mtime, entry))
        except (OSError, ValueError, KeyError):
            shutil.rmtree(entry, ignore_errors=True)
    for _, entry in sorted(entries, reverse=True)[MAX_ENTRIES:]:
        if entry != keep:
            shutil.rmtree(entry, ignore_errors=True)


def _kinds(raw: list) -> dict:
    from gguf import GGMLQuantizationType  # imported only for GGUF files

    return {(layer, name): GGMLQuantizationType[kind] for layer, name, kind in raw}


def _config(raw: dict) -> ModelConfig:
    rope = raw.get("rope_scaling")
    if rope and "factors" in rope:
        rope = {**rope, "factors": tuple(rope["factors"])}
    return ModelConfig(**{**raw, "rope_scaling": rope, "eos_token_ids": tuple(raw["eos_token_ids"])})


def _tokenizer(entry: Path, raw: dict, config: ModelConfig) -> Tokenizer:
    import tokenizers

    tokenizer = Tokenizer(tokenizers.Tokenizer.from_str((entry / "tokenizer.json").read_text()),
                          raw["special_tokens"], raw["chat_template"], config, raw["fim_order"])
    tokenizer.eos_token_ids, tokenizer.bos_token_id = tuple(raw["eos_token_ids"]), raw["bos_token_id"]
    return tokenizer
