"""load_gguf: a GGUF file (llama.cpp's format) -> Checkpoint (config, tokenizer, fp32 weights), every part checked.

The file is read with the `gguf` library (llama.cpp's own Python package): metadata first, so that a wrong or
unsupported file fails before any weights are touched, then each tensor is dequantized to fp32 with
`gguf.quants.dequantize` and checked like a model folder's. The engine quantizes fp32 to its int8 layout as it does
for any folder; with dtype "auto" it keeps the matrices in block formats it has kernels for as the file's own bytes
(StreamedWeights.read_blocks, wafer/block_matrix.py).

llama.cpp's converter writes Llama and Mistral checkpoints as architecture "llama" and permutes the rows of their
q and k projections (it pairs rotary dimensions (i, i + hd/2) as adjacent rows, for its interleaved RoPE);
`unpermute` restores Hugging Face's order exactly, as transformers' GGUF loader does. Qwen2 files are not permuted.
"""
from __future__ import annotations

import mmap
from dataclasses import replace
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from .config import ModelConfig
from .errors import ModelLoadError
from .folder import DTYPES, Checkpoint
from .gguf_tokenizer import tokenizer_from_metadata
from .weights import LayerWeights, StreamedWeights, layer_shapes
from ..wafer.blocks import FORMATS, tensor_kinds

ARCHITECTURES = ("llama", "qwen2")  # general.architecture; Mistral 7B is written as "llama"
PERMUTED = ("llama",)  # architectures whose q/k rows llama.cpp's converter permutes
TENSOR_TYPES = (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
ROPE_FREQS = "rope_freqs.weight"  # Llama 3.1's rope scaling, written as a divisor per rotary frequency
MAGIC = b"GGUF"
ARRAY, STRING = gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING
DEQUANTIZE_VALUES = 1 << 18  # per call of a block decoder: numpy's per-call cost vanishes, arrays stay in cache
# A layer's tensors: LayerWeights field -> its name in a GGUF layer ("blk.N." + name), as llama.cpp names them
GGUF_LAYER = {
    "attn_norm": "attn_norm.weight", "wq": "attn_q.weight", "wk": "attn_k.weight", "wv": "attn_v.weight",
    "bq": "attn_q.bias", "bk": "attn_k.bias", "bv": "attn_v.bias", "wo": "attn_output.weight",
    "mlp_norm": "ffn_norm.weight", "w_gate": "ffn_gate.weight", "w_up": "ffn_up.weight", "w_down": "ffn_down.weight",
}


class _Reader(gguf.GGUFReader):
    """gguf.GGUFReader with its one hot spot made cheap: the reader slices its memory map once per metadata value
    (~700,000 times for a 150k-token vocabulary and its merges), and slicing a np.memmap runs Python code each
    time; slicing a plain array view of the same buffer does not (9 s -> 1.6 s for Qwen2.5's vocabulary here), and
    arrays of strings are walked in one loop. The values and tensors are the same views of the same bytes
    (tests/test_gguf.py compares them)."""

    def _get(self, offset, dtype, count=1, override_order=None):
        plain = self.__dict__.get("_plain")
        if plain is None:
            plain = self._plain = self.data.view(np.ndarray)
        dtype, count = np.dtype(dtype), int(count)
        array = plain[offset : offset + dtype.itemsize * count].view(dtype)[:count]
        order = self.byte_order if override_order is None else override_order
        return array if order == "I" else array.view(dtype.newbyteorder(order))

    def _get_field_parts(self, orig_offs, raw_type):
        """An array (a vocabulary, its merges, its token types) in one loop of plain slices, the same parts gguf
        makes (each number; each string's length and bytes) without a recursive call and _gets per element."""
        if raw_type != ARRAY or self.byte_order != "I" or not np.little_endian:
            return super()._get_field_parts(orig_offs, raw_type)
        item, count = self._get(orig_offs, np.uint32), self._get(orig_offs + 4, np.uint64)
        number = self.gguf_scalar_to_np.get(int(item[0]))
        if item[0] != STRING and number is None:  # arrays of arrays: as gguf reads them
            return super()._get_field_parts(orig_offs, raw_type)
        plain, offs, n = self._plain, orig_offs + 12, int(count[0])
        if number is not None:
            size = np.dtype(number).itemsize
            parts = [item, count, *plain[offs : offs + size * n].view(number).reshape(n, 1)]  # 1-element views
            return 12 + size * n, parts, list(range(2, 2 + n)), [ARRAY] + [gguf.GGUFValueType(int(item[0]))] * (n > 0)
        data = memoryview(plain)
        parts, indices = [item, count], []
        for _ in range(n):
            length = int.from_bytes(data[offs : offs + 8], "little")
            indices.append(len(parts) + 1)
            parts += (plain[offs : offs + 8].view(np.uint64), plain[offs + 8 : offs + 8 + length])
            offs += 8 + length
        return offs - orig_offs, parts, indices, [ARRAY] + [STRING] * (n > 0)


def open_gguf(path: Path) -> gguf.GGUFReader:
    """The reader of a GGUF file, or a ModelLoadError saying why it cannot be read (not GGUF, truncated, corrupt)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file (it starts with {magic!r}, not {MAGIC!r}); pass a .gguf "
                             "file written by llama.cpp, or a Hugging Face model folder")
    try:
        reader = _Reader(path)
    except (ValueError, IndexError, KeyError, OverflowError, TypeError, MemoryError) as err:
        raise ModelLoadError(f"{path} is truncated or corrupt: the gguf library cannot read it ({err}); the download "
                             "or copy was probably interrupted, fetch the file again") from None
    size = path.stat().st_size
    for tensor in reader.tensors:  # the reader returns short views rather than failing at every truncation
        if tensor.data_offset + tensor.n_bytes > size or tensor.data.nbytes != tensor.n_bytes:
            raise ModelLoadError(f"{path} is truncated: tensor {tensor.name!r} ends at byte "
                                 f"{tensor.data_offset + tensor.n_bytes} but the file has {size} bytes; the download "
                                 "or copy was interrupted, fetch the file again")
    return reader


def metadata(reader: gguf.GGUFReader, where: str) -> dict:
    """Every metadata value as Python (str, int, float, bool, lists of them)."""
    try:
        return {name: field.contents() for name, field in reader.fields.items()}
    except (UnicodeDecodeError, ValueError, IndexError) as err:
        raise ModelLoadError(f"{where} has corrupt metadata ({err}); fetch the file again") from None


def config_from_metadata(meta: dict, tensors: dict, where: str) -> ModelConfig:
    """A ModelConfig from `{arch}.*` metadata and the tensors present (tied output, q/k/v biases)."""
    arch = meta.get("general.architecture")
    if meta.get("split.count", 1) > 1:
        raise ModelLoadError(f"{where} is part {meta.get('split.no', 0) + 1} of a GGUF split into "
                             f"{meta['split.count']} files; merge them into one first (llama.cpp's llama-gguf-split "
                             "--merge FIRST-PART OUT.gguf)")
    if arch not in ARCHITECTURES:
        raise ModelLoadError(f"{where} holds a {arch!r} model (general.architecture); spark-nb runs GGUF files of "
                             f"the architectures {', '.join(ARCHITECTURES)} (Mistral files are 'llama')")

    def count(key, default=None):
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(f"{where}'s {arch}.{key} is {value!r}, not a positive whole number; the file "
                                 "is incomplete or corrupt, convert the model again")
        return value

    def real(key, default):
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ModelLoadError(f"{where}'s {arch}.{key} is {value!r}, not a finite number >= 0; the file is corrupt")
        return float(value)

    d, n_heads = count("embedding_length"), count("attention.head_count")
    n_kv = count("attention.head_count_kv", n_heads)
    if d % n_heads and f"{arch}.attention.key_length" not in meta:
        raise ModelLoadError(f"{where}'s embedding_length {d} is not divisible by attention.head_count {n_heads}; "
                             "the file is corrupt")
    head_dim = count("attention.key_length", d // n_heads or 1)
    if n_heads % n_kv:
        raise ModelLoadError(f"{where}'s attention.head_count {n_heads} is not a multiple of head_count_kv {n_kv}; "
                             "the file is corrupt")
    rotary = meta.get(f"{arch}.rope.dimension_count", head_dim)
    if rotary != head_dim:
        raise ModelLoadError(f"{where} rotates {rotary} of each head's {head_dim} dimensions (rope.dimension_count); "
                             "spark-nb implements rotary embedding over whole heads only")
    if "token_embd.weight" not in tensors:
        raise ModelLoadError(f"{where} has no token_embd.weight tensor, the token embedding; the file is incomplete")
    vocab = int(tensors["token_embd.weight"].shape[-1])  # GGUF lists dimensions innermost first: [d, vocab]
    name = str(meta.get("general.name", "")).lower()
    return ModelConfig(
        # a "llama" file named like Mistral is labelled so; it runs as Llama (llama.cpp applies no sliding window)
        family="mistral" if arch == "llama" and "mistral" in name else arch,
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=count("feed_forward_length"),
        n_layers=count("block_count"),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        rms_norm_eps=real("attention.layer_norm_rms_epsilon", 1e-6),
        rope_theta=real("rope.freq_base", 10000.0),
        rope_scaling=_rope_scaling(meta, arch, tensors, where),
        max_position_embeddings=count("context_length", 2048),
        tie_word_embeddings="output.weight" not in tensors,
        attention_bias="blk.0.attn_q.bias" in tensors,
    )


def _rope_scaling(meta: dict, arch: str, tensors: dict, where: str) -> dict | None:
    kind = meta.get(f"{arch}.rope.scaling.type", "none")
    factor = meta.get(f"{arch}.rope.scaling.factor", meta.get(f"{arch}.rope.scale_linear"))
    if ROPE_FREQS in tensors:
        if kind not in ("none", "linear") or (kind == "linear" and factor not in (None, 1.0)):
            raise ModelLoadError(f"{where} combines rope frequency factors with {kind!r} rope scaling, which "
                                 "spark-nb does not implement")
        return {"rope_type": "freq_factors"}  # the factors themselves are a tensor, read with the weights
    if kind == "none" and factor in (None, 1.0):
        return None
    if kind in ("linear", "none") and factor:
        return {"rope_type": "linear", "factor": float(factor)}
    raise ModelLoadError(f"{where} asks for {kind!r} rope scaling (factor {factor}); spark-nb implements linear "
                         "scaling and Llama 3's frequency factors")


def unpermute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation: within each head, rows (0, hd/2, 1, hd/2+1, ...) back to (0, 1, ...)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def dequantize(data: np.ndarray, kind: T) -> np.ndarray:
    """gguf.quants.dequantize, the same values, several times faster: gguf dequantizes 16 rows per call (a 151936-row
    embedding is 9,500 calls, each paying numpy's per-operation cost on small arrays); this hands gguf's own
    block decoder (the type's dequantize_rows) about DEQUANTIZE_VALUES values at a time."""
    if kind in (T.F32, T.F16, T.BF16):  # conversions, done whole
        return gguf.quants.dequantize(data, kind)
    rows = np.asarray(data).reshape(-1, data.shape[-1])
    decoder = getattr(gguf.quants, kind.name)
    block, size = gguf.GGML_QUANT_SIZES[kind]
    out = np.empty((rows.shape[0], rows.shape[1] // size * block), np.float32)
    step = max(1, DEQUANTIZE_VALUES // out.shape[1])
    for i in range(0, rows.shape[0], step):
        out[i : i + step] = decoder.dequantize_rows(rows[i : i + step])
    return out.reshape(*data.shape[:-1], out.shape[-1])


class _TensorReader:
    """Dequantizes named tensors to fp32, checking each one's shape and type (`check`, before any is read) and
    values (`read`); the file's pages a tensor was read from are handed back as soon as it is."""

    def __init__(self, reader: gguf.GGUFReader, config: ModelConfig, where: str, permuted: bool):
        self.tensors = {t.name: t for t in reader.tensors}
        self.config, self.where, self.permuted = config, where, permuted
        # np.memmap's mmap.mmap (mapped from the file's first byte) and its address, to give pages back
        self.file = getattr(reader.data, "_mmap", None) if getattr(reader.data, "offset", None) == 0 else None
        self.base = reader.data.ctypes.data
        self.consumed: set[str] = set()

    def check(self, name: str, shape: tuple[int, ...], meaning: str) -> None:
        """The tensor is there, [out, in] as in Hugging Face checkpoints, of a type spark-nb dequantizes."""
        if name not in self.tensors:
            raise ModelLoadError(f"{self.where} lacks tensor {name!r} ({meaning}, shape {shape}) of a "
                                 f"{self.config.family} model; the file is incomplete or of another architecture")
        t = self.tensors[name]
        kind = T(t.tensor_type)
        got = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dimensions innermost first
        if got != shape:
            raise ModelLoadError(f"{self.where}'s tensor {name!r} has shape {got}, but the metadata implies {shape} "
                                 f"({meaning}); the file is corrupt or its metadata belongs to another model")
        if kind not in TENSOR_TYPES:
            raise ModelLoadError(
                f"{self.where}'s tensor {name!r} is stored as {kind.name}, which spark-nb cannot dequantize; it reads "
                f"{', '.join(k.name for k in TENSOR_TYPES)}: use a file quantized to one of those (e.g. Q4_K_M, Q8_0)"
            )
        self.consumed.add(name)

    def read(self, name: str, heads: int = 0, rows: slice = slice(None)) -> np.ndarray:
        """The (checked) tensor, or its rows `rows` of a matrix, as fp32; `heads`: undo the q/k permutation."""
        t = self.tensors[name]
        data = t.data[rows] if t.data.ndim > 1 else t.data
        shape = (len(data), *reversed([int(n) for n in t.shape[:-1]])) if t.data.ndim > 1 else (int(t.shape[0]),)
        array = np.ascontiguousarray(dequantize(data, T(t.tensor_type)), dtype=np.float32).reshape(shape)
        if np.may_share_memory(array, t.data):  # F32 comes back as a view of the file's read-only memory map
            array = array.copy()
        self._give_back(data)
        if heads and self.permuted:
            array = unpermute(array, heads)
        # a sum is NaN or inf when any value is (checked exactly only then): no mask as large as the tensor
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(array.sum()) or np.isfinite(array).all()
        if not finite:
            if rows != slice(None):  # count over the whole tensor
                return self.read(name, heads)
            raise ModelLoadError(f"{self.where}'s tensor {name!r} holds {int(np.isnan(array).sum())} NaN and "
                                 f"{int(np.isinf(array).sum())} inf values; the file is corrupt")
        return array

    def blocks(self, name: str, heads: int = 0) -> tuple[np.ndarray, T] | None:
        """The (checked) matrix's bytes [rows, bytes a row] and kind where it is in a block format spark-nb computes
        on (wafer.blocks.FORMATS), q/k rows unpermuted (whole rows of blocks: the same bytes), else None. A copy:
        the file's pages are handed back as read()'s are."""
        t = self.tensors[name]
        kind = T(t.tensor_type)
        if kind not in FORMATS:
            return None
        raw = np.array(t.data).reshape(int(t.shape[-1]), -1)
        self._give_back(t.data)
        return (unpermute(raw, heads) if heads and self.permuted else raw), kind

    def tensor(self, name: str, shape: tuple[int, ...], meaning: str, heads: int = 0) -> np.ndarray:
        self.check(name, shape, meaning)
        return self.read(name, heads)

    def _give_back(self, data: np.ndarray) -> None:
        """Drop the file's pages under data from this process (they stay in the OS's page cache): a tensor read is
        not needed again, and the mapped file would otherwise add its whole size to the peak memory of a load."""
        if self.file is None or not hasattr(mmap, "MADV_DONTNEED") or not data.nbytes:
            return
        start = data.ctypes.data - self.base
        first, end = start // mmap.PAGESIZE * mmap.PAGESIZE, start + data.nbytes
        try:
            self.file.madvise(mmap.MADV_DONTNEED, first, end - first)
        except (OSError, ValueError):
            pass

    def layer_tensors(self, i: int) -> dict:
        """LayerWeights field -> (GGUF name, shape, meaning, heads to unpermute) of layer i."""
        c = self.config
        shapes, biases = layer_shapes(c)
        heads = {"wq": c.n_heads, "bq": c.n_heads, "wk": c.n_kv_heads, "bk": c.n_kv_heads}  # permuted q/k rows
        return {field: (f"blk.{i}." + GGUF_LAYER[field], *spec, heads.get(field, 0))
                for field, spec in (shapes | (biases if c.attention_bias else {})).items()}

    def layer(self, i: int) -> LayerWeights:
        tensors = {field: self.read(name, heads) for field, (name, _, _, heads) in self.layer_tensors(i).items()}
        return LayerWeights(**{field: None for field in layer_shapes(self.config)[1]} | tensors)

    def check_nothing_left(self) -> None:
        left = sorted(set(self.tensors) - self.consumed)
        if left:
            shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
            raise ModelLoadError(f"{self.where} holds tensors a {self.config.family} decoder in spark-nb does not use: "
                                 f"{shown}; the model has parts spark-nb does not implement (or too few layers)")


def load_gguf(path: str | Path, dtype: str = "fp32", streamed: bool = False) -> Checkpoint:
    """Read and validate a GGUF file; raises ModelLoadError saying what is wrong and what to do. streamed: the
    weights are StreamedWeights, dequantized only as the engine packs them (every tensor's presence, shape and
    type are checked here, its values as it is read)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist" if not path.exists() else f"{path} is not a file")
    if dtype not in DTYPES:
        raise ModelLoadError(f"unsupported dtype {dtype!r}: choose one of {', '.join(map(repr, DTYPES))}")
    reader = open_gguf(path)
    where = path.name
    meta = metadata(reader, where)
    tensors = {t.name: t for t in reader.tensors}
    config = config_from_metadata(meta, tensors, where)
    tokenizer = tokenizer_from_metadata(meta, config, where)
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelLoadError(f"{where} has {tokenizer.vocab_size} tokens but a token embedding of {config.vocab_size} "
                             "rows: some tokens would have no embedding; the file is corrupt")
    # the bos and stop tokens the tokenizer found in the metadata (the engine stops at these)
    config = replace(config, bos_token_id=tokenizer.bos_token_id, eos_token_ids=tokenizer.eos_token_ids)
    tensor_reader = _TensorReader(reader, config, where, permuted=meta["general.architecture"] in PERMUTED)
    if config.rope_scaling and config.rope_scaling["rope_type"] == "freq_factors":
        factors = tensor_reader.tensor(ROPE_FREQS, (config.head_dim // 2,), "a divisor per rotary frequency")
        config = replace(config, rope_scaling={"rope_type": "freq_factors", "factors": tuple(map(float, factors))})
    try:
        config.check_rotary()
    except ModelLoadError as err:  # its words are config.json's; the values here come from the file's metadata
        raise ModelLoadError(f"{where}'s rope settings are unusable: {err}") from None
    # every tensor's presence, shape and type, before any is read
    vocab_by_d = (config.vocab_size, config.hidden_size)
    tensor_reader.check("token_embd.weight", vocab_by_d, "vocab, hidden_size")
    for i in range(config.n_layers):
        for name, shape, meaning, _ in tensor_reader.layer_tensors(i).values():
            tensor_reader.check(name, shape, meaning)
    tensor_reader.check("output_norm.weight", (config.hidden_size,), "hidden_size")
    tied = config.tie_word_embeddings
    if not tied:
        tensor_reader.check("output.weight", vocab_by_d, "vocab, hidden_size")
    tensor_reader.check_nothing_left()
    names = {"embed": "token_embd.weight", "lm_head": "output.weight"}

    def read_blocks(layer: int | None, field: str):
        if layer is None:
            return tensor_reader.blocks(names["embed" if tied else field])
        name, _, _, heads = tensor_reader.layer_tensors(layer)[field]
        return tensor_reader.blocks(name, heads)

    def read_tensor(layer: int, field: str) -> np.ndarray:
        name, _, _, heads = tensor_reader.layer_tensors(layer)[field]
        return tensor_reader.read(name, heads)

    weights = StreamedWeights(
        vocab_size=config.vocab_size, tied=tied, final_norm=tensor_reader.read("output_norm.weight"),
        read_layer=tensor_reader.layer,
        read_rows=lambda name, start, stop: tensor_reader.read(names[name], rows=slice(start, stop)),
        read_blocks=read_blocks, read_tensor=read_tensor,
        block_kinds=tensor_kinds({name: T(t.tensor_type) for name, t in tensors.items()}))
    if not streamed:
        weights = weights.read_all(config.n_layers)
    return Checkpoint(path=path, config=config, tokenizer=tokenizer, weights=weights, dtype=dtype)
