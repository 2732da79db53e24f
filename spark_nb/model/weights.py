"""Decoder weights from a model folder's safetensors files, as validated fp32 NumPy arrays.

A folder holds either `model.safetensors` or shards listed by `model.safetensors.index.json` (its `weight_map`
names the shard of every tensor). Headers are read and checked first (truncation, dtypes, shapes against the
config), then tensors are read one at a time and converted to fp32. Nothing is unpickled.

numpy has no bfloat16, so safetensors' numpy framework cannot return bf16 tensors; those are read as raw bytes
at the header's offsets and widened to fp32 by putting the 16 bits into the high half of a float32.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from .config import ModelConfig
from .errors import ModelLoadError

SINGLE_FILE = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"

# dtypes safetensors' numpy framework returns directly
NUMPY_DTYPES = {"F64", "F32", "F16"}
# bytes per element of each whole-byte dtype safetensors defines, to check every tensor's byte span; spark-nb reads
# only the float ones, the rest fail at read time with a message naming the tensor (F4/F6 pack several per byte)
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2,
            "I8": 1, "U8": 1, "BOOL": 1, "C64": 8, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F8_E4M3FNUZ": 1,
            "F8_E5M2FNUZ": 1}
MAX_HEADER = 100_000_000  # bytes of header JSON the safetensors library accepts at most
# Tensors some exporters write that carry no weights (Llama's rotary inverse frequencies are recomputed)
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class LayerWeights:
    attn_norm: np.ndarray  # [d]
    wq: np.ndarray  # [n_heads*hd, d]
    wk: np.ndarray  # [n_kv*hd, d]
    wv: np.ndarray  # [n_kv*hd, d]
    bq: np.ndarray | None  # [n_heads*hd]; Qwen2 only
    bk: np.ndarray | None  # [n_kv*hd]
    bv: np.ndarray | None  # [n_kv*hd]
    wo: np.ndarray  # [d, n_heads*hd]
    mlp_norm: np.ndarray  # [d]
    w_gate: np.ndarray  # [ffn, d]
    w_up: np.ndarray  # [ffn, d]
    w_down: np.ndarray  # [d, ffn]


@dataclass
class DecoderWeights:
    embed: np.ndarray  # [vocab, d]
    final_norm: np.ndarray  # [d]
    lm_head: np.ndarray  # [vocab, d]; the very same array as `embed` when the config ties them
    layers: list[LayerWeights]

    # what a packer reads (spark_nb.wafer.forward.pack), as StreamedWeights hands it over
    @property
    def tied(self) -> bool:
        return self.lm_head is self.embed

    def layer(self, i: int) -> LayerWeights:
        return self.layers[i]

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of "embed" or "lm_head"."""
        return getattr(self, name)[start:stop]


@dataclass
class StreamedWeights:
    """A checkpoint's decoder weights read only as a packer asks for them: a layer at a time, the vocabulary
    matrices a block of rows at a time, each checked as it is read (as DecoderWeights' are), so that fp32 never
    holds the whole model. Every tensor's presence and shape are checked before this is handed out."""

    vocab_size: int
    tied: bool
    final_norm: np.ndarray  # [d]
    read_layer: Callable[[int], LayerWeights]
    read_rows: Callable[[str, int, int], np.ndarray]  # ("embed" | "lm_head", start, stop) -> fp32 rows
    close: Callable[[], None] = lambda: None  # the files it reads from, once packed
    # (layer or None, LayerWeights field or "embed" / "lm_head") -> the matrix as its file keeps it: (bytes [rows,
    # bytes a row], kind) for a GGUF block format spark-nb computes on (wafer.blocks.FORMATS), else None (read it
    # as fp32); None for files without block formats. What dtype "auto" packs.
    read_blocks: Callable[[int | None, str], tuple[np.ndarray, object] | None] | None = None
    read_tensor: Callable[[int, str], np.ndarray] | None = None  # (layer, field) -> a tensor in fp32 (with read_blocks)
    block_kinds: dict | None = None  # with read_blocks: wafer.blocks.gguf_kinds of the file

    def layer(self, i: int) -> LayerWeights:
        return self.read_layer(i)

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        return self.read_rows("embed" if self.tied else name, start, min(stop, self.vocab_size))

    def read_all(self, n_layers: int) -> DecoderWeights:
        embed = self.rows("embed", 0, self.vocab_size)
        layers = [self.layer(i) for i in range(n_layers)]
        lm_head = embed if self.tied else self.rows("lm_head", 0, self.vocab_size)
        return DecoderWeights(embed=embed, final_norm=self.final_norm, lm_head=lm_head, layers=layers)


# A layer's tensors: LayerWeights field -> its name in a Hugging Face layer ("model.layers.N." + name)
HF_LAYER = {
    "attn_norm": "input_layernorm.weight", "wq": "self_attn.q_proj.weight", "wk": "self_attn.k_proj.weight",
    "wv": "self_attn.v_proj.weight", "bq": "self_attn.q_proj.bias", "bk": "self_attn.k_proj.bias",
    "bv": "self_attn.v_proj.bias", "wo": "self_attn.o_proj.weight", "mlp_norm": "post_attention_layernorm.weight",
    "w_gate": "mlp.gate_proj.weight", "w_up": "mlp.up_proj.weight", "w_down": "mlp.down_proj.weight",
}


def layer_shapes(c: ModelConfig) -> tuple[dict, dict]:
    """The shapes the config implies for one layer's tensors, each with what its dimensions are: (weights, biases),
    each LayerWeights field -> (shape, meaning). The q/k/v biases are read where config.attention_bias says."""
    d, f, q_out, kv_out = c.hidden_size, c.intermediate_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    weights = {
        "attn_norm": ((d,), "hidden_size"),
        "wq": ((q_out, d), "n_heads*head_dim, hidden_size"),
        "wk": ((kv_out, d), "n_kv_heads*head_dim, hidden_size"),
        "wv": ((kv_out, d), "n_kv_heads*head_dim, hidden_size"),
        "wo": ((d, q_out), "hidden_size, n_heads*head_dim"),
        "mlp_norm": ((d,), "hidden_size"),
        "w_gate": ((f, d), "intermediate_size, hidden_size"),
        "w_up": ((f, d), "intermediate_size, hidden_size"),
        "w_down": ((d, f), "hidden_size, intermediate_size"),
    }
    biases = {"bq": ((q_out,), "n_heads*head_dim"), "bk": ((kv_out,), "n_kv_heads*head_dim"),
              "bv": ((kv_out,), "n_kv_heads*head_dim")}
    return weights, biases


# ---------------------------------------------------------------------------------------------------------------
# One safetensors file: its header, checked against the file's length
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorEntry:
    file: Path
    dtype: str  # safetensors spelling: "F32", "BF16", ...
    shape: tuple[int, ...]
    begin: int  # absolute byte offsets in `file`
    end: int


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors a safetensors file declares: 8-byte little-endian header length, then JSON, then data.

    Checked as strictly as the safetensors library checks it (so that its Rust code never gets to raise a raw
    SafetensorError at the first read, and the bf16 path, which reads bytes itself, is just as safe): the header is
    a JSON object of {dtype, shape, data_offsets} entries whose byte spans match their shapes and tile the data
    exactly, from its first byte to the end of the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ModelLoadError(f"{path} is truncated ({size} bytes, less than a safetensors header); copy it again")
        header_len = int.from_bytes(prefix, "little")
        if 8 + header_len > size:
            raise ModelLoadError(
                f"{path} is truncated: its header claims {header_len} bytes but the file has {size} bytes in all; "
                "the download or copy was interrupted, fetch the file again"
            )
        if header_len > MAX_HEADER:  # the safetensors library's own limit; nothing real comes close
            raise ModelLoadError(f"{path} has a {header_len}-byte header, more than safetensors allows "
                                 f"({MAX_HEADER}); it is not a safetensors file or is corrupt, fetch it again")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelLoadError(f"{path} has a corrupt safetensors header ({err}); fetch the file again") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path} has a corrupt safetensors header (a JSON {type(header).__name__}, not an "
                             "object of tensors); fetch the file again")
    data_start = 8 + header_len
    entries = {name: _entry(path, name, info, data_start) for name, info in header.items() if name != "__metadata__"}
    # Past the end first: that is what an interrupted download looks like, and the most useful thing to say.
    last = max(entries.values(), key=lambda e: e.end, default=None)
    if last is not None and last.end > size:
        raise ModelLoadError(
            f"{path} is truncated: its header says the tensor data ends at byte {last.end} but the file has "
            f"{size} bytes; the download or copy was interrupted, fetch the file again"
        )
    # Then the tiling: tensors sorted by offset must follow one another with no gap and no overlap.
    at, previous = data_start, None
    for entry_name, entry in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != at:
            after = repr(previous) if previous else "the header"
            where = f"overlaps {after}" if entry.begin < at else f"starts {entry.begin - at} bytes after {after} ends"
            raise ModelLoadError(f"{path} has a corrupt header: the data of {entry_name!r} {where}; "
                                 "fetch the file again")
        at, previous = entry.end, entry_name
    if at != size:
        raise ModelLoadError(f"{path} has {size - at} bytes after its last tensor, which its header does not "
                             "account for; the file is corrupt or was written by something else, fetch it again")
    return entries


def _entry(path: Path, name: str, info, data_start: int) -> TensorEntry:
    """One header entry, checked: a known dtype, a shape and offsets of non-negative whole numbers, and a byte
    span that holds exactly shape's elements."""
    def count(x):
        return isinstance(x, int) and not isinstance(x, bool) and x >= 0

    try:
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        well_formed = isinstance(dtype, str) and isinstance(shape, list) and all(map(count, [*shape, begin, end]))
    except (KeyError, TypeError, ValueError):  # not an object, a key missing, offsets not a pair
        well_formed = False
    if not well_formed:
        raise ModelLoadError(
            f"{path} has a corrupt safetensors header: the entry of {name!r} is {json.dumps(info)[:200]}, not a "
            "dtype, a shape and a pair of data_offsets (non-negative whole numbers); fetch the file again"
        )
    itemsize = ITEMSIZE.get(dtype)
    if itemsize is None:
        raise ModelLoadError(
            f"tensor {name!r} in {path.name} is stored as {dtype}, which spark-nb cannot read (it reads F32, F16 "
            "and BF16 checkpoints); dequantize or convert the model first"
        )
    n_bytes = itemsize * math.prod(shape)
    if end - begin != n_bytes:
        raise ModelLoadError(
            f"{path} has a corrupt header: {name!r} spans {end - begin} bytes, but {dtype}{list(shape)} "
            f"needs {n_bytes}; fetch the file again"
        )
    return TensorEntry(path, dtype, tuple(shape), data_start + begin, data_start + end)


def bf16_to_fp32(raw: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32: bf16 is the top half of a float32, so this is exact."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# All tensors of a folder, single file or shards
# ---------------------------------------------------------------------------------------------------------------


class TensorStore:
    """Every tensor of a model folder by name; headers are read up front, data on demand."""

    def __init__(self, entries: dict[str, TensorEntry], source: Path):
        self.entries = entries
        self.source = source  # model.safetensors or the shard index, for messages
        self._handles = {}  # Path -> safe_open, opened once per file

    @classmethod
    def open(cls, folder: str | Path) -> "TensorStore":
        folder = Path(folder)
        single, index = folder / SINGLE_FILE, folder / SHARD_INDEX
        if single.exists():
            return cls(read_header(single), single)
        if index.exists():
            return cls(cls._sharded_entries(index), index)
        pickled = (folder / "pytorch_model.bin").exists()
        hint = " (pytorch_model.bin is a pickle, which spark-nb never loads)" if pickled else ""
        raise ModelLoadError(
            f"missing weights in {folder}: expected {SINGLE_FILE} or {SHARD_INDEX}{hint}; "
            "re-save the model with save_pretrained, which writes safetensors"
        )

    @staticmethod
    def _sharded_entries(index: Path) -> dict[str, TensorEntry]:
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise ModelLoadError(f"{index} is not a valid shard index ({err!r}); re-export the model folder") from None
        if not isinstance(weight_map, dict):
            raise ModelLoadError(f"{index}'s weight_map is a JSON {type(weight_map).__name__}, not an object of "
                                 "tensor -> shard file; re-export the model folder")
        entries, headers = {}, {}
        for name, shard in weight_map.items():
            # A shard is a file beside the index: a path ("../x", "/etc/y") would read outside the model folder
            if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
                raise ModelLoadError(f"{index} places {name!r} in {shard!r}, which is not a file name in the model "
                                     "folder; re-export the model folder")
            if shard not in headers:
                path = index.parent / shard
                if not path.exists():
                    raise ModelLoadError(
                        f"{index} places {name!r} in shard {shard}, which is missing from {index.parent}; "
                        "copy every shard the index lists"
                    )
                headers[shard] = read_header(path)
            if name not in headers[shard]:
                raise ModelLoadError(f"{index} places {name!r} in {shard}, but that shard has no such tensor")
            entries[name] = headers[shard][name]
        return entries

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str, rows: slice | None = None) -> np.ndarray:
        """The tensor, or rows `rows` (a slice with a start and a stop) of a matrix, as a C-contiguous float32
        array."""
        entry = self.entries[name]
        shape = entry.shape if rows is None else (len(range(entry.shape[0])[rows]), *entry.shape[1:])
        try:
            if entry.dtype == "BF16":
                row = math.prod(entry.shape[1:]) * 2  # bytes
                with open(entry.file, "rb") as f:
                    f.seek(entry.begin + (0 if rows is None else rows.start * row))
                    raw = np.fromfile(f, dtype="<u2", count=math.prod(shape))
                return bf16_to_fp32(raw).reshape(shape)
            if entry.dtype in NUMPY_DTYPES:
                if entry.file not in self._handles:
                    self._handles[entry.file] = safe_open(str(entry.file), framework="numpy")
                handle = self._handles[entry.file]
                tensor = handle.get_tensor(name) if rows is None else handle.get_slice(name)[rows]
                return np.ascontiguousarray(tensor, dtype=np.float32).reshape(shape)
        except (SafetensorError, ValueError) as err:
            # read_header has checked what safetensors checks; this is a file that changed (shrank) since then
            raise ModelLoadError(f"{entry.file} cannot be read at {name!r} ({err}); fetch the file again") from None
        raise ModelLoadError(
            f"tensor {name!r} in {entry.file.name} is stored as {entry.dtype}; spark-nb reads F32, F16 and BF16 "
            "checkpoints, so dequantize or convert the model first"
        )

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> "TensorStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------------
# The decoder: every Hugging Face name, its expected shape, and its checks
# ---------------------------------------------------------------------------------------------------------------


class _DecoderReader:
    """Checks named tensors against the shapes the config implies (`check`, before any is read), then reads them,
    checking each for NaN/inf (`read`)."""

    def __init__(self, store: TensorStore, config: ModelConfig):
        self.store, self.config = store, config
        self.consumed: set[str] = set()

    def check(self, name: str, shape: tuple[int, ...], meaning: str) -> None:
        if name not in self.store:
            raise ModelLoadError(
                f"missing tensor {name!r} (shape {shape}: {meaning}) in {self.store.source}, the weights of a "
                f"{self.config.family} model; "
                "the checkpoint is incomplete or of another architecture, re-export it with save_pretrained"
            )
        entry = self.store.entries[name]
        if entry.shape != shape:
            raise ModelLoadError(
                f"tensor {name!r} in {entry.file.name} has shape {entry.shape}, but config.json implies {shape} "
                f"({meaning}); the weights and config.json belong to different models, keep them together"
            )
        self.consumed.add(name)

    def read(self, name: str, rows: slice | None = None) -> np.ndarray:
        array = self.store.read(name, rows)
        if not np.isfinite(array).all():
            if rows is not None:  # count over the whole tensor
                return self.read(name)
            n_nan, n_inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
            raise ModelLoadError(
                f"tensor {name!r} in {self.store.entries[name].file.name} holds {n_nan} NaN and {n_inf} inf values; "
                "the checkpoint is corrupt or was saved after training diverged, use an earlier checkpoint"
            )
        return array

    def layer_tensors(self, i: int) -> dict:
        """LayerWeights field -> (name, shape, meaning) of layer i's tensors in the folder (biases where present
        or required)."""
        shapes, biases = layer_shapes(self.config)
        p = f"model.layers.{i}."
        return {field: (p + HF_LAYER[field], *spec) for field, spec in (shapes | biases).items()
                if field in shapes or self.config.attention_bias or p + HF_LAYER[field] in self.store}

    def check_nothing_left(self) -> None:
        # A tensor we do not read (an o_proj or MLP bias, say) would change the output: refuse rather than ignore.
        left = sorted(n for n in self.store.entries if n not in self.consumed and not n.endswith(IGNORED_SUFFIXES))
        if left:
            shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
            raise ModelLoadError(
                f"{self.store.source} holds tensors a {self.config.family} decoder in spark-nb does not use: {shown}; "
                "the model has parts spark-nb does not implement (or config.json has too few layers)"
            )


def load_decoder_weights(folder: str | Path, config: ModelConfig) -> DecoderWeights:
    """Read, check and convert to fp32 every decoder tensor of the model folder."""
    streamed = stream_decoder_weights(folder, config)
    try:
        return streamed.read_all(config.n_layers)
    finally:
        streamed.close()


def stream_decoder_weights(folder: str | Path, config: ModelConfig) -> StreamedWeights:
    """The model folder's decoder weights as StreamedWeights: every tensor's presence and shape checked now (and
    that nothing is left over), each read, checked and converted to fp32 only when the packer asks for it."""
    store = TensorStore.open(folder)
    reader = _DecoderReader(store, config)
    vocab_by_d = (config.vocab_size, config.hidden_size)
    names = {"embed": "model.embed_tokens.weight", "lm_head": "lm_head.weight"}
    reader.check(names["embed"], vocab_by_d, "vocab_size, hidden_size")
    layers = [reader.layer_tensors(i) for i in range(config.n_layers)]
    for layer in layers:
        for name, shape, meaning in layer.values():
            reader.check(name, shape, meaning)
    reader.check("model.norm.weight", (config.hidden_size,), "hidden_size")
    if config.tie_word_embeddings:
        reader.consumed.add("lm_head.weight")  # a tied copy some exporters write: the embedding by definition
    else:
        reader.check(names["lm_head"], vocab_by_d, "vocab_size, hidden_size")
    reader.check_nothing_left()

    def layer(i: int) -> LayerWeights:
        tensors = {field: reader.read(name) for field, (name, _, _) in layers[i].items()}
        return LayerWeights(**{field: None for field in layer_shapes(config)[1]} | tensors)

    return StreamedWeights(vocab_size=config.vocab_size, tied=config.tie_word_embeddings,
                           final_norm=reader.read("model.norm.weight"), read_layer=layer,
                           read_rows=lambda name, start, stop: reader.read(names[name], slice(start, stop)),
                           close=store.close)
