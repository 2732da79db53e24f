"""The decoder forward pass, executed on the PE-tile layout.

`pack()` cuts every weight matrix into the PE tiles its placement gives it (int8 with per-output-channel scales,
or fp32 with unit scales) and stacks the layers; `forward()` then runs T tokens through the decoder in one numba
call, reading top to bottom like the model's equations:

    x = E[tokens]
    for each layer:
        h = rmsnorm(x);  [q k v] = h [Wq Wk Wv] + [bq bk bv];  q, k = rope(q), rope(k)
        x = x + attention(q, K ++ k, V ++ v) Wo
        h = rmsnorm(x);  [g u] = h [Wg Wu];  x = x + (silu(g) * u) Wd
    h = rmsnorm(x);  logits = h W_lm         # for the rows the caller wants

Matrices that read the same input are stacked at pack time, Wqkv = [Wq; Wk; Wv] and Wgu = [Wg; Wu], and cut into
PE tiles as one (of Wq's and Wg's tile shape): the input is quantized once and the products run in one parallel
region (each region costs microseconds to launch, a decode step's matmul a few). Every output row is the same dot
product as in its own matrix.

Prefill and verification pass T tokens; decode passes one. Buffers are allocated once (`Scratch`), so the
forward itself never allocates. `forward` carries the kernels' flags (JIT): numba compiles a callee inside its
caller with the caller's fastmath setting, and without it the dot products do not vectorise.

Numba's on-disk cache of `forward` embeds the kernels but is keyed on this file alone: after editing kernels.py,
delete spark_nb/wafer/__pycache__ (an installed release gets fresh files, so users never meet this).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ..model.quant import quantize_int8
from .kernels import (
    JIT,
    KV_DTYPES,
    LANES,
    QUERY_BLOCK,
    Quantized,
    add_bias,
    add_into,
    causal_attention,
    embed_rows,
    rmsnorm,
    rope,
    store_kv,
    swiglu,
    quantized,
    tiled_matmul,
)
from .tiles import aligned, tile_shape, to_tiles


class Layers(NamedTuple):
    """Every layer's weights, stacked: field[l] is layer l. Matrices are PE tiles [L, gr, gc, tm, tn] with
    per-output-row scales [L, rows]; q/k/v biases are zero for families without them."""

    attn_norm: np.ndarray  # [L, d]
    wqkv: np.ndarray  # [Wq; Wk; Wv]: heads*hd + 2 kv_heads*hd rows
    sqkv: np.ndarray
    bqkv: np.ndarray  # [L, heads*hd + 2 kv_heads*hd]
    wo: np.ndarray
    so: np.ndarray
    mlp_norm: np.ndarray  # [L, d]
    w_gate_up: np.ndarray  # [Wg; Wu]: 2 ffn rows
    s_gate_up: np.ndarray
    w_down: np.ndarray
    s_down: np.ndarray


class Decoder(NamedTuple):
    embed: np.ndarray  # tiles of E [vocab, d]
    embed_scale: np.ndarray  # [vocab]
    layers: Layers
    final_norm: np.ndarray  # [d]
    lm_head: np.ndarray  # tiles of W_lm [vocab, d]; the same array as embed when tied
    lm_head_scale: np.ndarray  # [vocab]


class Scratch(NamedTuple):
    """Working buffers for up to max_tokens tokens in flight."""

    x: np.ndarray  # [T, d] residual stream
    h: np.ndarray  # [T, d] normed input of a block
    qkv: np.ndarray  # [T, heads*hd + 2 kv_heads*hd]: q, k, v side by side
    att: np.ndarray  # [T, heads*hd] attention output
    out: np.ndarray  # [T, d] output of a block, before the residual add
    gate_up: np.ndarray  # [T, 2 ffn]: gate, up side by side
    act: np.ndarray  # [T, ffn] silu(gate) * up
    scores: np.ndarray  # [heads, QUERY_BLOCK, context + LANES]
    quant: Quantized  # the input of an int8 matrix, quantized per PE column slice


class Rotary(NamedTuple):
    cos: np.ndarray  # [context, hd/2]
    sin: np.ndarray


def _tiled(w: np.ndarray, spec, dtype: str, shape_of: np.ndarray | None = None):
    """A matrix [rows, cols] as (tiles, scale) in its PE tile shape, or in that of the matrix shape_of (the first
    of several stacked into w)."""
    tm, tn = tile_shape(spec, *(w if shape_of is None else shape_of).shape, dtype)
    if dtype == "int8":
        q, scale = quantize_int8(w)
        return to_tiles(q, tm, tn), scale
    return to_tiles(w.astype(np.float32), tm, tn), np.ones(w.shape[0], np.float32)


def pack(weights, config, spec, dtype: str) -> Decoder:
    """Cut a checkpoint's fp32 weights (spark_nb.model DecoderWeights) into PE tiles and stack the layers."""

    def stacked(*names):  # the named matrices of every layer, one above the other, as one matrix
        pairs = [_tiled(np.concatenate([getattr(layer, n) for n in names]), spec, dtype, getattr(layer, names[0]))
                 for layer in weights.layers]
        return aligned(np.stack([t for t, _ in pairs])), np.stack([s for _, s in pairs])

    def biases(*pairs):  # (name, width) each, side by side
        return np.stack([np.concatenate([np.zeros(width, np.float32) if getattr(layer, name) is None
                                         else getattr(layer, name).astype(np.float32) for name, width in pairs])
                         for layer in weights.layers])

    def vectors(name):
        return np.stack([getattr(layer, name).astype(np.float32) for layer in weights.layers])

    hd = config.head_dim
    q, kv = config.n_heads * hd, config.n_kv_heads * hd
    layers = Layers(
        vectors("attn_norm"), *stacked("wq", "wk", "wv"), biases(("bq", q), ("bk", kv), ("bv", kv)),
        *stacked("wo"), vectors("mlp_norm"), *stacked("w_gate", "w_up"), *stacked("w_down"),
    )
    embed, embed_scale = _tiled(weights.embed, spec, dtype)
    if weights.lm_head is weights.embed:
        lm_head, lm_head_scale = embed, embed_scale
    else:
        lm_head, lm_head_scale = _tiled(weights.lm_head, spec, dtype)
    return Decoder(embed, embed_scale, layers, weights.final_norm.astype(np.float32), lm_head, lm_head_scale)


def scratch(config, max_tokens: int, context: int) -> Scratch:
    d, hd, f = config.hidden_size, config.head_dim, config.intermediate_size
    q, kv = config.n_heads * hd, config.n_kv_heads * hd

    def buf(*shape):
        return aligned(np.zeros(shape, np.float32))

    return Scratch(
        buf(max_tokens, d), buf(max_tokens, d), buf(max_tokens, q + 2 * kv), buf(max_tokens, q), buf(max_tokens, d),
        buf(max_tokens, 2 * f), buf(max_tokens, f),
        buf(config.n_heads, QUERY_BLOCK, context + LANES),
        quantized(max_tokens, max(d, q, f) + 512),  # + the widest tile's padding
    )


def rotary(config, context: int) -> Rotary:
    angles = np.outer(np.arange(context, dtype=np.float64), config.rope_inv_freq())  # [context, hd/2]
    return Rotary(np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32))


def kv_cache(config, context: int, dtype: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Keys and values of every layer in the layout causal_attention reads (see store_kv): keys [L, kv_heads,
    context/LANES, hd, LANES], values [L, kv_heads, hd/LANES, context, LANES], both rounded up; 64-byte aligned,
    as every buffer and tile stack here (tiles.aligned). dtype "fp32" or "fp16" (kernels.KV_DTYPES)."""
    if dtype not in KV_DTYPES:
        raise ValueError(f"the KV cache dtype must be one of {tuple(KV_DTYPES)}, got {dtype!r}")
    L, heads, hd, element = config.n_layers, config.n_kv_heads, config.head_dim, KV_DTYPES[dtype]
    keys = aligned(np.zeros((L, heads, -(-context // LANES), hd, LANES), element))
    return keys, aligned(np.zeros((L, heads, -(-hd // LANES), context, LANES), element))


@njit(**JIT)
def forward(tokens, start, model, k_cache, v_cache, rot, eps, window, head_dim, s, at, logits):
    """Run tokens[T] at positions start.. through the decoder: the new keys/values go into the caches, the final
    normed hidden states into s.h[:T], and the logits after the positions at[i] (indices into tokens) into
    logits[i]. One call per step: decode is T = 1, at = [0]."""
    T = tokens.shape[0]
    x, h, qkv, att, out, gate_up, act = s.x[:T], s.h[:T], s.qkv[:T], s.att[:T], s.out[:T], s.gate_up[:T], s.act[:T]
    width, kv_width = att.shape[1], (qkv.shape[1] - att.shape[1]) // 2
    q, k, v = qkv[:, :width], qkv[:, width : width + kv_width], qkv[:, width + kv_width :]
    w = model.layers
    embed_rows(tokens, model.embed, model.embed_scale, x)
    for l in range(w.attn_norm.shape[0]):
        # attention block
        rmsnorm(x, w.attn_norm[l], eps, h)
        tiled_matmul(h, w.wqkv[l], w.sqkv[l], qkv, s.quant)
        add_bias(qkv, w.bqkv[l])
        rope(q, head_dim, rot.cos, rot.sin, start)
        rope(k, head_dim, rot.cos, rot.sin, start)
        store_kv(k, v, k_cache[l], v_cache[l], start)
        causal_attention(q, k_cache[l], v_cache[l], start, window, s.scores, att)
        tiled_matmul(att, w.wo[l], w.so[l], out, s.quant)
        add_into(x, out)
        # SwiGLU block
        rmsnorm(x, w.mlp_norm[l], eps, h)
        tiled_matmul(h, w.w_gate_up[l], w.s_gate_up[l], gate_up, s.quant)
        swiglu(gate_up, act)
        tiled_matmul(act, w.w_down[l], w.s_down[l], out, s.quant)
        add_into(x, out)
    rmsnorm(x, model.final_norm, eps, h)
    if at.shape[0] > 0:  # logits = h W_lm for the wanted rows, gathered where the block outputs were
        wanted = s.out[: at.shape[0]]
        for i in range(at.shape[0]):
            for j in range(wanted.shape[1]):  # element by element: numba's row assignment takes seconds to compile
                wanted[i, j] = h[at[i], j]
        tiled_matmul(wanted, model.lm_head, model.lm_head_scale, logits, s.quant)
