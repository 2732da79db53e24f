"""The decoder forward pass, executed on the PE-tile layout.

`pack()` cuts every weight matrix into the PE tiles its placement gives it (int8 with per-output-channel scales,
or fp32 with unit scales) and stacks the layers; `forward()` then runs T tokens through the decoder in one numba
call, reading top to bottom like the model's equations:

    x = E[tokens]
    for each layer:
        h = rmsnorm(x);  [q k v] = h [Wq Wk Wv] + [bq bk bv];  q, k = rope(q), rope(k)
        x = x + attention(q, K ++ k, V ++ v) Wo
        h = rmsnorm(x);  [g u] = h [Wg Wu];  x = x + (silu(g) * u) Wd
    h = rmsnorm(x)                          # logits = h W_lm, for the rows the caller wants

Matrices that read the same input are stacked at pack time, Wqkv = [Wq; Wk; Wv] and Wgu = [Wg; Wu], and cut into
PE tiles as one (of Wq's and Wg's tile shape): the input is quantized once and the products run in one parallel
region (each region costs microseconds to launch, a decode step's matmul a few). Every output row is the same dot
product as in its own matrix.

Prefill and verification pass T tokens through `forward`, one parallel region per matmul and attention. A decode
step is one token through `decode`: the same equations and the same numbers bit for bit, but the whole step is
one parallel region whose workers claim each operation's rows and wait for one another (workers.py), since a
region costs as long to launch as a one-token matmul takes. Buffers are allocated once (`Scratch`), so neither
ever allocates. `forward` carries the kernels' flags (JIT): numba compiles a callee inside its
caller with the caller's fastmath setting, and without it the dot products do not vectorise. On an empty numba
cache the engine compiles `decode` in a helper process while it compiles `forward` itself (ahead.py).

Numba's on-disk cache of `forward` embeds the kernels but is keyed on this file alone: after editing kernels.py,
delete spark_nb/wafer/__pycache__ (an installed release gets fresh files, so users never meet this).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..model.quant import quantize_int8
from .kernels import (
    JIT,
    KV_DTYPES,
    LANES,
    QUERY_BLOCK,
    Quantized,
    _attend,
    add_bias,
    add_into,
    causal_attention,
    embed_rows,
    rmsnorm,
    rope,
    store_kv,
    swiglu,
    quantize_for,
    quantized,
    tiled_matmul,
    token_rows,
)
from .tiles import aligned, tile_shape, to_tiles
from .workers import claim, finish, phases, wait


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


class Workers(NamedTuple):
    """A decode worker's own copies of what every worker needs whole before it computes its rows: the normed
    token, its quantized slices, the SwiGLU activation (forming them twice costs less than a wait), and the
    counters the workers claim rows and wait with."""

    h: np.ndarray  # [workers, d]
    act: np.ndarray  # [workers, ffn]
    quant: Quantized  # [workers, ...]
    counters: np.ndarray  # workers.phases(5 per layer + 1)


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
    workers: Workers  # decode's


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


def scratch(config, max_tokens: int, context: int, workers: int = 1) -> Scratch:
    """Buffers for forward (up to max_tokens tokens) and for decode with up to `workers` threads."""
    d, hd, f = config.hidden_size, config.head_dim, config.intermediate_size
    q, kv = config.n_heads * hd, config.n_kv_heads * hd
    widest = max(d, q, f) + 512  # + the widest tile's padding

    def buf(*shape):
        return aligned(np.zeros(shape, np.float32))

    return Scratch(
        buf(max_tokens, d), buf(max_tokens, d), buf(max_tokens, q + 2 * kv), buf(max_tokens, q), buf(max_tokens, d),
        buf(max_tokens, 2 * f), buf(max_tokens, f),
        buf(config.n_heads, QUERY_BLOCK, context + LANES),
        quantized(max_tokens, widest),
        Workers(buf(workers, d), buf(workers, f), quantized(workers, widest), phases(DECODE_OPS * config.n_layers + 1)),
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
def forward(tokens, start, model, k_cache, v_cache, rot, eps, window, head_dim, s):
    """Run tokens[T] at positions start.. through the decoder; leaves the final normed hidden states in s.h[:T]
    and the new keys/values in the caches."""
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


DECODE_OPS = 5  # operations per layer a decode step's workers wait on: qkv, attention, wo, gate/up, down
CHUNKS_PER_WORKER = 1  # a matmul's rows are claimed in this many chunks per worker (measured: 1 to 4 alike)


@njit(parallel=True, **JIT)
def decode(tokens, start, model, k_cache, v_cache, rot, eps, window, head_dim, s, logits):
    """forward() for one token at position start, then logits[1, vocab]: the same operations on the same numbers
    (so a token decodes exactly as it verifies), run as one parallel region (see workers.py)."""
    embed_rows(tokens, model.embed, model.embed_scale, s.x[:1])
    s.workers.counters[:] = 0
    workers = s.workers.h.shape[0]  # with fewer threads some run two workers in turn: claiming keeps that right
    # numba passes only arrays and scalars into a parallel loop's body: the tuples go in as their fields, and are
    # put together again inside
    embed, embed_scale, layers, final_norm, lm, lm_scale = model
    an, wqkv, sqkv, bqkv, wo, so, mn, wgu, sgu, wd, sd = layers
    cos, sin = rot
    x, h, qkv, att, out, gate_up, act, scores, quant, own = s
    qv, qs, qsums, qb, qbs = quant
    own_h, own_act, own_quant, counters = own
    ov, os_, osums, ob, obs = own_quant
    for w in prange(workers):
        # np.int64: numba types the loop index int64 here but uint64 inside the region's body, and would compile
        # the whole worker twice
        _decode_worker_fields(np.int64(w), workers, start, embed, embed_scale, an, wqkv, sqkv, bqkv, wo, so, mn, wgu, sgu, wd, sd,
                              final_norm, lm, lm_scale, k_cache, v_cache, cos, sin, eps, window, head_dim, x, h, qkv,
                              att, out, gate_up, act, scores, qv, qs, qsums, qb, qbs, own_h, own_act, ov, os_, osums, ob,
                              obs, counters, logits)


@njit(**JIT)
def _decode_worker_fields(w, workers, start, embed, embed_scale, an, wqkv, sqkv, bqkv, wo, so, mn, wgu, sgu, wd, sd,
                          final_norm, lm, lm_scale, k_cache, v_cache, cos, sin, eps, window, head_dim, x, h, qkv, att,
                          out, gate_up, act, scores, qv, qs, qsums, qb, qbs, own_h, own_act, ov, os_, osums, ob, obs,
                          counters, logits):
    """_decode_worker, its tuples taken apart (put together here, outside the parallel loop, numba caches it)."""
    model = Decoder(embed, embed_scale, Layers(an, wqkv, sqkv, bqkv, wo, so, mn, wgu, sgu, wd, sd), final_norm, lm,
                    lm_scale)
    s = Scratch(x, h, qkv, att, out, gate_up, act, scores, Quantized(qv, qs, qsums, qb, qbs),
                Workers(own_h, own_act, Quantized(ov, os_, osums, ob, obs), counters))
    _decode_worker(w, workers, start, model, k_cache, v_cache, Rotary(cos, sin), eps, window, head_dim, s, logits)


@njit(inline="always", **JIT)
def _decode_worker(w, workers, start, model, k_cache, v_cache, rot, eps, window, head_dim, s, logits):
    """Worker w's walk through a decode step: forward()'s equations, each matmul's rows and attention's kv heads
    claimed in chunks. A worker's own copies (h, act, quant) are formed from an operation's inputs, which are
    complete once the previous operation is and are not rewritten before this one is done; a worker that then
    finds no chunk left never uses them."""
    x, qkv, att, out, gate_up = s.x[:1], s.qkv[:1], s.att[:1], s.out[:1], s.gate_up[:1]
    width, kv_width = att.shape[1], (qkv.shape[1] - att.shape[1]) // 2
    q, k, v = qkv[:, :width], qkv[:, width : width + kv_width], qkv[:, width + kv_width :]
    own = s.workers
    h, act = own.h[w : w + 1], own.act[w : w + 1]
    quant = Quantized(own.quant.values[w : w + 1], own.quant.scales[w : w + 1], own.quant.sums[w : w + 1],
                      own.quant.blocks, own.quant.block_scales)  # one token: no AMX blocks
    c = own.counters
    no_bias, no_residual = model.final_norm[:0], s.x[:0]  # empty, and typed as the real ones: one compile
    wl = model.layers
    for l in range(wl.attn_norm.shape[0]):
        op = DECODE_OPS * l  # this layer's first operation
        # attention block
        rmsnorm(x, wl.attn_norm[l], eps, h)
        _claimed_matmul(h, wl.wqkv[l], wl.sqkv[l], qkv, quant, wl.bqkv[l], no_residual, c, op, workers)
        _claimed_attention(q, k, v, k_cache[l], v_cache[l], rot, start, window, head_dim, s.scores, att, c, op + 1)
        _claimed_matmul(att, wl.wo[l], wl.so[l], out, quant, no_bias, x, c, op + 2, workers)  # x += att Wo
        # SwiGLU block
        rmsnorm(x, wl.mlp_norm[l], eps, h)
        _claimed_matmul(h, wl.w_gate_up[l], wl.s_gate_up[l], gate_up, quant, no_bias, no_residual, c, op + 3, workers)
        swiglu(gate_up, act)
        _claimed_matmul(act, wl.w_down[l], wl.s_down[l], out, quant, no_bias, x, c, op + 4, workers)  # x += ...
    rmsnorm(x, model.final_norm, eps, h)
    last = DECODE_OPS * wl.attn_norm.shape[0]
    _claimed_matmul(h, model.lm_head, model.lm_head_scale, logits, quant, no_bias, no_residual, c, last, workers)


@njit(**JIT)  # a call, not inlined: five call sites share one compiled body
def _claimed_matmul(x, tiles, scale, y, quant, bias, residual, counters, op, workers):
    """y[1, m] = x W (+ bias), in chunks of whole four-row groups claimed from operation op's counter; with a
    residual, residual += y row by row (the residual connection, as add_into). Returns when all rows are done."""
    quantize_for(x, tiles, quant)
    m = y.shape[1]
    gr, tm = tiles.shape[0], tiles.shape[2]
    per_row = tm // 4
    groups = gr * per_row
    chunks = min(groups, CHUNKS_PER_WORKER * workers)
    size = -(-groups // chunks)
    while True:
        chunk = claim(counters, op)
        if chunk >= chunks:
            break
        first, end = chunk * size, min(groups, (chunk + 1) * size)
        for g in range(first, end):  # group g holds rows 4g..4g+3 (tm is a multiple of 4)
            if 4 * g < m:
                token_rows(y, tiles, scale, x, quant, g // per_row, 4 * (g % per_row))
        # in a loop of their own, so the compiler cannot fuse y's last multiply with these adds into an fma
        # (forward adds them in other kernels: the numbers would differ in the last bit)
        for j in range(4 * first, min(4 * end, m)):
            if bias.shape[0] > 0:
                y[0, j] += bias[j]
            if residual.shape[0] > 0:
                residual[0, j] += y[0, j]
        finish(counters, op)
    wait(counters, op, chunks)


@njit(inline="always", **JIT)
def _claimed_attention(q, k, v, k_cache, v_cache, rot, start, window, head_dim, scores, att, counters, op):
    """RoPE, the cache write and attention of one token, a kv head (with the query heads that read it) per chunk."""
    kv_heads = k_cache.shape[0]
    per_kv = q.shape[1] // head_dim // kv_heads
    while True:
        kv = claim(counters, op)
        if kv >= kv_heads:
            break
        keys = k[:, kv * head_dim : (kv + 1) * head_dim]
        rope(keys, head_dim, rot.cos, rot.sin, start)
        store_kv(keys, v[:, kv * head_dim : (kv + 1) * head_dim], k_cache[kv : kv + 1], v_cache[kv : kv + 1], start)
        for head in range(kv * per_kv, (kv + 1) * per_kv):
            rope(q[:, head * head_dim : (head + 1) * head_dim], head_dim, rot.cos, rot.sin, start)
            _attend(q, k_cache, v_cache, start, window, scores, att, head, 0, 1)
        finish(counters, op)
    wait(counters, op, kv_heads)


@njit(**JIT)
def lm_head(h, model, logits, quant):
    """logits[T, vocab] = h[T, d] W_lm."""
    tiled_matmul(h, model.lm_head, model.lm_head_scale, logits, quant)
