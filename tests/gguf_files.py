"""Tiny GGUF files as llama.cpp's converter writes them, for tests: written with gguf.GGUFWriter from Hugging Face
named weights (spark_nb.model.synthetic.random_weights) and a small real-ish vocabulary.

    write_gguf(path, "llama", config, weights, byte_level_vocab(), types=cycle_types(TENSOR_TYPES))

What the converter does and these helpers copy: tensor names (blk.N.attn_q.weight ...), the q/k row permutation of
"llama" files (`permute`, llama.cpp's LlamaModel.permute), 1-D tensors kept F32, metadata keys per architecture,
and the tokenizer as tokenizer.ggml.* arrays. Quantized tensors come from gguf.quants.quantize where gguf implements
it, else from random blocks whose scale fields are finite halves (`random_blocks`).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from spark_nb.model.synthetic import bpe_tokenizer

NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6
# Hugging Face name (after "model.layers.N.") -> GGUF name (after "blk.N.")
LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
# Byte offsets of each block's fp16 scale fields (ggml's block structs): random bytes elsewhere are valid blocks
SCALE_FIELDS = {T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,), T.Q2_K: (80, 82),
                T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,), T.IQ4_NL: (0,)}


def gguf_name(hf_name: str) -> str:
    """The GGUF name of a Hugging Face tensor name; names of neither kind (rope_freqs.weight) are kept."""
    if not hf_name.startswith("model.layers."):
        return TOP_NAMES.get(hf_name, hf_name)
    _, _, layer, rest = hf_name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{LAYER_NAMES[module]}.{kind}"


def permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf LlamaModel.permute: each head's rows (0, 1, ..., hd-1) -> (0, hd/2, 1, ...)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------------------------------------------------------
# Tensor encodings
# ---------------------------------------------------------------------------------------------------------------


def random_blocks(rows: int, cols: int, kind: T, rng: np.random.Generator, std: float = 0.05) -> np.ndarray:
    """[rows, bytes per row] of random `kind` blocks whose scales are finite halves chosen so that the
    dequantized values have a spread of roughly `std`."""
    block, size = gguf.GGML_QUANT_SIZES[kind]
    n = rows * cols // block
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    fields = SCALE_FIELDS[kind]
    for at in fields:
        raw[:, at : at + 2] = np.full((n, 1), 1.0, np.float16).view(np.uint8)
    unit = gguf.quants.dequantize(raw, kind).reshape(n, block)
    # every value is linear in the block's scale fields together; a random sign per block cancels the blocks' means
    # (K-quant blocks of random bytes are mostly positive), which would otherwise dominate every matrix product
    factor = std / max(float(unit.std()), 1e-12) * rng.uniform(0.5, 1.5, size=(n, 1)) * rng.choice([-1, 1], (n, 1))
    for at in fields:
        raw[:, at : at + 2] = factor.astype(np.float16).view(np.uint8)
    return raw.reshape(rows, cols // block * size)


def encode(w: np.ndarray, kind: T, rng: np.random.Generator) -> tuple[np.ndarray, T | None]:
    """The array GGUFWriter.add_tensor gets for w stored as `kind`, and its raw_dtype."""
    w = np.asarray(w, np.float32)
    if kind == T.F32:
        return w, None
    if kind == T.F16:
        return w.astype(np.float16), None
    try:
        return gguf.quants.quantize(w, kind), kind
    except NotImplementedError:  # gguf has no quantizer for the K-quants: random valid blocks instead
        return random_blocks(*w.shape, kind, rng, std=float(w.std())), kind


def cycle_types(kinds) -> callable:
    """A type chooser: 2-D tensors take the kinds in turn, 1-D tensors stay F32 (as llama.cpp writes them)."""
    turn = itertools.cycle(kinds)
    return lambda name, w: next(turn) if w.ndim == 2 else T.F32


# ---------------------------------------------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------------------------------------------


def byte_level_vocab(vocab_size: int = 384) -> dict:
    """A byte-level BPE (GGUF 'gpt2' model) trained on Python source, special tokens first."""
    raw = json.loads(bpe_tokenizer(vocab_size).to_str())
    vocab = raw["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    merges = [m if isinstance(m, str) else " ".join(m) for m in raw["model"]["merges"]]
    specials = {t["content"] for t in raw["added_tokens"]}
    return dict(model="gpt2", tokens=tokens, merges=merges,
                types=[CONTROL if t in specials else NORMAL for t in tokens],
                bos=tokens.index("<|endoftext|>"), eos=tokens.index("<|im_end|>"))


def sentencepiece_vocab(vocab_size: int = 640) -> dict:
    """A SentencePiece-style BPE (GGUF 'llama' model): <unk> <s> </s>, 256 byte tokens, then pieces with "▁" for
    spaces, scored by merge rank as SentencePiece scores them; no merges (llama.cpp writes none for these)."""
    import inspect

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 259, show_progress=False)
    backend.train_from_iterator(inspect.getsource(inspect).splitlines(), trainer)
    learned = sorted(backend.get_vocab().items(), key=lambda item: item[1])
    pieces = [t for t, _ in learned]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return dict(model="llama", tokens=tokens, types=types, scores=scores, bos=1, eos=2, unk=0)


# ---------------------------------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------------------------------


def write_gguf(path: str | Path, arch: str, config: dict, weights: dict[str, np.ndarray], vocab: dict,
               types=None, name: str = "tiny test model", pre: str | None = "qwen2",
               chat_template: str | None = None, seed: int = 0, metadata: dict | None = None) -> Path:
    """Write weights (Hugging Face names) and vocab as llama.cpp's converter would for `arch` ("llama", "qwen2");
    `types(gguf_name, array)` picks each tensor's type (default F32). `metadata`: extra keys, added last."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    types = types or (lambda name, w: T.F32)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if arch == "llama":
        writer.add_rope_dimension_count(config["hidden_size"] // heads)
        writer.add_vocab_size(len(vocab["tokens"]))
    writer.add_tokenizer_model(vocab["model"])
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    if "scores" in vocab:
        writer.add_token_scores(vocab["scores"])
    if "merges" in vocab:
        writer.add_token_merges(vocab["merges"])
    writer.add_bos_token_id(vocab["bos"])
    writer.add_eos_token_id(vocab["eos"])
    if "unk" in vocab:
        writer.add_unk_token_id(vocab["unk"])
    writer.add_add_bos_token(vocab["model"] == "llama")
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for key, value in (metadata or {}).items():
        writer.add_key_value(key, value, _value_type(value))
    for hf_name, w in weights.items():
        if arch == "llama" and ".q_proj." in hf_name:
            w = permute(w, heads)
        elif arch == "llama" and ".k_proj." in hf_name:
            w = permute(w, kv_heads)
        name_ = gguf_name(hf_name)
        data, raw_dtype = encode(w, types(name_, w), rng)
        writer.add_tensor(name_, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _value_type(value) -> gguf.GGUFValueType:
    if isinstance(value, str):
        return gguf.GGUFValueType.STRING
    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        return gguf.GGUFValueType.UINT32
    return gguf.GGUFValueType.FLOAT32


def tiny_qwen2(path: str | Path, kinds, **shape) -> Path:
    """A tiny Qwen2 GGUF file of random weights and the byte-level vocabulary, its 2-D tensors stored as `kinds`
    in turn (K-quants need rows of 256: hidden and intermediate sizes that are multiples of it)."""
    from spark_nb.model.synthetic import config_dict, random_weights

    vocab = byte_level_vocab()
    config = config_dict("qwen2", vocab_size=len(vocab["tokens"]), **shape)
    return write_gguf(path, "qwen2", config, random_weights(config, seed=0, std=0.03), vocab,
                      types=cycle_types(kinds))
