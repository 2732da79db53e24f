"""Every numba kernel in spark_nb/wafer/kernels.py against its NumPy twin in reference.py, and the whole forward
against a decoder composed of the twins.

Shapes are ragged (rows and columns not multiples of the tile) and the tiles' padding is filled with garbage, so a
kernel that reads past a ragged edge fails; output buffers start as NaN, so one that forgets to overwrite fails.
The `check_*` functions are plain functions so that test_every_kernel_runs_without_jit can run them again in a
subprocess under NUMBA_DISABLE_JIT=1, where each kernel is plain Python.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from spark_nb.model import DecoderWeights, LayerWeights, ModelConfig, quantize_int8
from spark_nb.model.synthetic import config_dict
from spark_nb.wafer import forward as fw
from spark_nb.wafer import kernels as k
from spark_nb.wafer import reference as ref
from spark_nb.wafer.packing import pack
from spark_nb.wafer.spec import WSE3
from spark_nb.wafer.tiles import to_tiles

GARBAGE = {"fp32": np.float32(1e4), "int8": np.int8(127)}  # fills tile padding: reading it ruins the result
SMALL_PE = WSE3.replace(name="small-pe", sram_per_pe=2048)  # tiles of ~16 x 16: many per matrix, ragged edges


def assert_close(actual, expected, rtol=3e-5):
    """fp32 kernels (fastmath, fp32 accumulation) against float64 twins: relative to the result's magnitude."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def nan(*shape):
    return np.full(shape, np.nan, np.float32)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def tiled(rng, rows, cols, tm, tn, dtype):
    """Random W[rows, cols] as (tiles with garbage in the padding, per-row scale)."""
    w = randn(rng, rows, cols)
    if dtype == "int8":
        w, scale = quantize_int8(w)
    else:
        scale = (0.5 + rng.random(rows)).astype(np.float32)  # not ones, so a misapplied scale shows
    padded = np.full((-(-rows // tm) * tm, -(-cols // tn) * tn), GARBAGE[dtype])
    padded[:rows, :cols] = w
    return to_tiles(padded, tm, tn), scale


# -- one check per kernel ----------------------------------------------------------------------------------------


def check_tiled_matmul(rng, T, m, n, tm, tn, dtype):
    x = randn(rng, T, n)
    tiles, scale = tiled(rng, m, n, tm, tn, dtype)
    y = nan(T, m)
    k.tiled_matmul(x, tiles, scale, y, k.quantized(T, n + tn))
    assert_close(y, ref.tiled_matmul(x, tiles, scale, m), rtol=1e-4 if dtype == "int8" else 3e-5)
    for t in range(T):  # bit for bit what the token gives alone: decode and verification must agree
        alone = nan(1, m)
        k.tiled_matmul(x[t : t + 1], tiles, scale, alone, k.quantized(1, n + tn))
        np.testing.assert_array_equal(alone[0], y[t])
    # its three steps, the rows split the way forward's workers claim them (any order, any spans): the same bits
    q, units = k.quantized(T, n + tn), k.matmul_units(T, tiles)
    k.prepare_input(x, tiles, q)
    k.interleave_input(T, tiles, q, 0, T // 16)
    split = nan(T, m)
    for first, end in ((units // 2, units), (0, units // 2)):
        k.matmul_rows(x, tiles, scale, split, q, first, end)
    np.testing.assert_array_equal(split, y)
    for first, end in ((units // 2, units), (0, units // 2), (units - 1, units)):  # the rows a span forms
        part = nan(T, m)
        k.matmul_rows(x, tiles, scale, part, q, first, end)
        lo, hi = k.unit_rows(T, tiles, first, end, m)
        written = ~np.isnan(part).all(axis=0)
        assert written[lo:hi].all() and not written[:lo].any() and not written[hi:].any()


def check_quantize_slices(rng, T, n, tn):
    x = randn(rng, T, n) * np.float32(3.0)
    x[0, :tn] = 0.0  # an all-zero slice keeps scale 1
    q = k.quantized(T, n + tn)
    q.values[:] = 99  # garbage: the padding past n must come back as zeros
    k.quantize_slices(x, tn, q)
    values, scales, sums = ref.quantize_slices(x, tn)
    slices = scales.shape[1]
    np.testing.assert_array_equal(q.values[:, :n], values)
    np.testing.assert_array_equal(q.values[:, n : slices * tn], 0)
    np.testing.assert_array_equal(q.scales[:, :slices], scales)
    np.testing.assert_array_equal(q.sums[:, :slices], sums)
    assert np.abs(values.astype(np.float32) * np.repeat(scales, tn, axis=1)[:, :n] - x).max() <= scales.max() / 2


def check_interleave_blocks(rng, T, n, tn):
    """The AMX layout: 16 tokens side by side, each token's int8 values in fours (one int32), and their scales."""
    slices = -(-n // tn)
    q = k.Quantized(rng.integers(-127, 128, (T, slices * tn), dtype=np.int8), randn(rng, T, slices),
                    np.zeros((T, slices), np.int32), np.zeros((T // 16, slices * tn // 4, 16), np.int32),
                    nan(T // 16, slices, 16))
    k.interleave_blocks(q, 0, T // 16, slices, tn)
    for b in range(T // 16):
        tokens = q.values[16 * b : 16 * b + 16]  # [16, slices * tn]
        as_bytes = q.blocks[b].view(np.int8).reshape(slices * tn // 4, 16, 4)  # [quad, token, byte]
        np.testing.assert_array_equal(as_bytes.transpose(1, 0, 2).reshape(16, -1), tokens)
        np.testing.assert_array_equal(q.block_scales[b].T, q.scales[16 * b : 16 * b + 16])


def check_embed_rows(rng, vocab, d, tm, tn, dtype):
    tiles, scale = tiled(rng, vocab, d, tm, tn, dtype)
    tokens = np.array([0, vocab - 1, 3 % vocab, vocab - 1, vocab // 2], np.int64)
    out = nan(len(tokens), d)
    k.embed_rows(tokens, tiles, scale, out)
    np.testing.assert_array_equal(out, ref.embed_rows(tokens, tiles, scale, vocab, d))


def check_rmsnorm(rng, T, d):
    x, weight = randn(rng, T, d) * 3, randn(rng, d)
    out = nan(T, d)
    k.rmsnorm(x, weight, np.float32(1e-5), out)
    assert_close(out, ref.rmsnorm(x, weight, 1e-5))


def check_add(rng, T, d):
    x, y, bias = randn(rng, T, d), randn(rng, T, d), randn(rng, d)
    expected = x + y + bias
    k.add_into(x, y)
    k.add_bias(x, bias)
    assert_close(x, expected)


def check_rope(rng, T, heads, head_dim, start):
    context = start + T + 3
    angles = rng.random((context, head_dim // 2)) * 6.3
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    x = randn(rng, T, heads * head_dim)
    expected = ref.rope(x, head_dim, cos, sin, start)
    k.rope(x, head_dim, cos, sin, start)
    assert_close(x, expected)


def caches(kv_heads, head_dim, context, kv="fp32"):
    """Empty (NaN) caches in the kernels' layout, fp32 or fp16 (float16 bits in uint16, as kernels.KV_DTYPES)."""
    lanes = k.LANES
    shapes = (kv_heads, -(-context // lanes), head_dim, lanes), (kv_heads, -(-head_dim // lanes), context, lanes)
    if kv == "fp16":
        return tuple(np.full(shape, np.nan, np.float16).view(np.uint16) for shape in shapes)
    return tuple(nan(*shape) for shape in shapes)


def check_store_kv(rng, T, kv_heads, head_dim, start, kv="fp32"):
    context = start + T + 2
    key, value = randn(rng, T, kv_heads * head_dim), randn(rng, T, kv_heads * head_dim)
    k_cache, v_cache = caches(kv_heads, head_dim, context, kv)
    twin_k, twin_v = caches(kv_heads, head_dim, context, kv)
    k.store_kv(key, value, k_cache, v_cache, start)
    ref.store_kv(key, value, twin_k, twin_v, start)
    np.testing.assert_array_equal(k_cache, twin_k)  # NaN where nothing was written; NumPy's fp16 rounding, bit for bit
    np.testing.assert_array_equal(v_cache, twin_v)
    keys, values = ref.by_position(k_cache, v_cache)
    for cache, new in ((keys, key), (values, value)):
        exact = new.reshape(T, kv_heads, head_dim).swapaxes(0, 1)
        expected = exact.astype(np.float16).astype(np.float32) if kv == "fp16" else exact
        if kv == "fp16":
            assert not np.array_equal(cache[:, start : start + T], exact)  # rounded, really
        np.testing.assert_array_equal(cache[:, start : start + T], expected)
        assert np.isnan(cache[:, :start]).all() and np.isnan(cache[:, start + T : context]).all()


def check_causal_attention(rng, T, heads, kv_heads, head_dim, start, window, kv="fp32"):
    context = start + T + 3  # cache positions past start + T hold garbage that must not be read
    q = randn(rng, T, heads * head_dim)
    keys, values = randn(rng, context, kv_heads * head_dim), randn(rng, context, kv_heads * head_dim)
    keys[start + T :], values[start + T :] = 1e4, np.nan
    k_cache, v_cache = caches(kv_heads, head_dim, context, kv)
    k.store_kv(keys, values, k_cache, v_cache, 0)
    scores = nan(heads, k.QUERY_BLOCK, context + k.LANES)
    out = nan(T, heads * head_dim)
    k.causal_attention(q, k_cache, v_cache, start, window, scores, out)
    assert_close(out, ref.causal_attention(q, k_cache, v_cache, start, window))
    by_head = nan(T, heads * head_dim)
    for h in reversed(range(heads)):  # a head at a time, in any order (the forward's workers claim them): same bits
        k.attend_head(q, k_cache, v_cache, start, window, scores, by_head, h)
    np.testing.assert_array_equal(by_head, out)
    for t in range(T):  # bit for bit what the query gives alone: decode and verification must agree
        alone = nan(1, heads * head_dim)
        k.causal_attention(q[t : t + 1], k_cache, v_cache, start + t, window, scores, alone)
        np.testing.assert_array_equal(alone[0], out[t])


def check_swiglu(rng, T, f):
    gate_up = np.concatenate([randn(rng, T, f) * 4, randn(rng, T, f)], axis=1)
    out = nan(T, f)
    k.swiglu(gate_up, out)
    assert_close(out, ref.swiglu(gate_up))


# -- the whole forward against a decoder made of the twins --------------------------------------------------------


def tiny_decoder(rng, family="qwen2", dtype="int8", spec=SMALL_PE, **sizes):
    """A random decoder (random norms and biases) packed into PE tiles, without a model folder."""
    config = ModelConfig.from_dict(config_dict(family, **sizes))
    d, f, hd, vocab = config.hidden_size, config.intermediate_size, config.head_dim, config.vocab_size
    q, kv = config.n_heads * hd, config.n_kv_heads * hd

    def w(*shape):
        return randn(rng, *shape) * 0.2

    def bias(n):
        return w(n) if config.attention_bias else None

    layers = [LayerWeights(attn_norm=1 + w(d), wq=w(q, d), wk=w(kv, d), wv=w(kv, d), bq=bias(q), bk=bias(kv),
                           bv=bias(kv), wo=w(d, q), mlp_norm=1 + w(d), w_gate=w(f, d), w_up=w(f, d), w_down=w(d, f))
              for _ in range(config.n_layers)]
    embed = w(vocab, d)
    weights = DecoderWeights(embed=embed, final_norm=1 + w(d), layers=layers,
                             lm_head=embed if config.tie_word_embeddings else w(vocab, d))
    return config, pack(weights, config, spec, dtype)


def reference_forward(tokens, start, model, config, k_cache, v_cache, rot, window):
    """A Forward pass written with the twins; returns the final hidden states and updates the caches."""
    d, f, hd, vocab = config.hidden_size, config.intermediate_size, config.head_dim, config.vocab_size
    q_width, kv_width = config.n_heads * hd, config.n_kv_heads * hd
    w, eps, T = model.layers, config.rms_norm_eps, len(tokens)
    x = ref.embed_rows(tokens, model.embed, model.embed_scale, vocab, d)
    for l in range(config.n_layers):
        h = ref.rmsnorm(x, w.attn_norm[l], eps)
        qkv = ref.tiled_matmul(h, w.wqkv[l], w.sqkv[l], q_width + 2 * kv_width) + w.bqkv[l]
        q, key, value = np.split(qkv, [q_width, q_width + kv_width], axis=1)
        q, key = ref.rope(q, hd, rot.cos, rot.sin, start), ref.rope(key, hd, rot.cos, rot.sin, start)
        ref.store_kv(key, value, k_cache[l], v_cache[l], start)
        att = ref.causal_attention(q, k_cache[l], v_cache[l], start, window)
        x = x + ref.tiled_matmul(att, w.wo[l], w.so[l], d)
        h = ref.rmsnorm(x, w.mlp_norm[l], eps)
        gate = ref.swiglu(ref.tiled_matmul(h, w.w_gate_up[l], w.s_gate_up[l], 2 * f))
        x = x + ref.tiled_matmul(gate, w.w_down[l], w.s_down[l], d)
    return ref.rmsnorm(x, model.final_norm, eps)


def check_forward(rng, family, dtype, prompt, steps, window=0, kv="fp32", **sizes):
    """A prompt in one call, then `steps` single-token calls through the cache: hidden states, caches and logits."""
    config, model = tiny_decoder(rng, family, dtype, **sizes)
    context = prompt + steps
    rot = fw.rotary(config, context)
    ours_k, ours_v = fw.kv_cache(config, context, kv)
    twin_k, twin_v = fw.kv_cache(config, context, kv)
    # three workers on two cores (or one): the lead and two helper threads, that join when the OS runs them;
    # without numba, the lead alone
    workers = 1 if numba.config.DISABLE_JIT else 3
    s = fw.scratch(config, prompt, context, workers)
    eps = np.float32(config.rms_norm_eps)
    forward = fw.Forward(fw.Resident(model, ours_k, ours_v, rot, eps, window, config.head_dim, s), config.vocab_size)
    tokens = rng.integers(0, config.vocab_size, context)
    calls = [(0, tokens[:prompt])] + [(prompt + i, tokens[prompt + i : prompt + i + 1]) for i in range(steps)]
    # An fp16 cache rounds a key here and there to the other neighbouring half than the twin's (their fp32 inputs
    # differ in the last bits), and that one-ulp step (~5e-4) carries through the later layers.
    rtol = 2e-4 if kv == "fp32" else 3e-3
    for start, ids in calls:
        at = np.arange(len(ids))[::-1].copy()  # every row, in an order of their own
        logits = nan(len(ids), config.vocab_size)
        forward.helpers.start(workers)
        forward(ids, start, at, logits, workers)
        expected = reference_forward(ids, start, model, config, twin_k, twin_v, rot, window)
        assert_close(s.h[: len(ids)], expected, rtol=rtol)
        assert_close(logits, ref.tiled_matmul(expected[at], model.lm_head, model.lm_head_scale, config.vocab_size),
                     rtol=rtol)
    for l in range(config.n_layers):  # an fp16 cache may round a number to the neighbouring half
        for cache, twin in zip(ref.by_position(ours_k[l], ours_v[l]), ref.by_position(twin_k[l], twin_v[l])):
            assert_close(cache, twin, rtol=rtol)


# -- pytest ------------------------------------------------------------------------------------------------------

TESTED = {"quantize_slices", "quantized", "interleave_blocks", "tiled_matmul", "prepare_input", "interleave_input",
          "matmul_units", "matmul_rows", "unit_rows", "embed_rows", "rmsnorm", "add_bias",
          "add_into", "rope", "store_kv", "causal_attention", "attend_head", "swiglu"}


def test_every_kernel_is_tested():
    """A kernel added to kernels.py needs a check here (and a twin in reference.py where it computes); private
    helpers (a leading underscore, like _dot4) are tested through the kernel that uses them."""
    kernels = {name for name, obj in vars(k).items()
               if callable(obj) and getattr(obj, "__module__", None) == k.__name__ and not inspect.isclass(obj)
               and not name.startswith("_")}
    assert kernels == TESTED


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
@pytest.mark.parametrize("T, m, n, tm, tn", [
    (1, 37, 50, 8, 16),  # decode: ragged in both directions
    (5, 64, 48, 16, 16),  # exact multiples
    (3, 7, 20, 8, 32),  # one tile row, shorter than the tile; one ragged tile column
    (4, 130, 33, 40, 16),  # many columns of one wide padded tile each
    (1, 37, 300, 8, 64),  # int8 tile rows of whole 64-byte vectors: the vpdpbusd path where the host has VNNI
    (3, 100, 256, 24, 128),  # the same, exact multiples, several tokens
    (7, 37, 192, 8, 64),  # the same, a block of four tokens and three more, ragged rows
    (37, 50, 192, 16, 64),  # AMX where the host has it: two blocks of 16 tokens, then four, then one; ragged rows
    (16, 130, 256, 32, 128),  # one block of 16 tokens, two PE columns
    (20, 64, 300, 16, 64),  # a ragged last slice (zero padding read by the tiles)
])
def test_tiled_matmul(dtype, T, m, n, tm, tn):
    check_tiled_matmul(np.random.default_rng(T * m + n), T, m, n, tm, tn, dtype)


@pytest.mark.parametrize("T, n, tn", [(1, 50, 16), (3, 300, 64), (2, 64, 64)])
def test_quantize_slices(T, n, tn):
    check_quantize_slices(np.random.default_rng(n), T, n, tn)


@pytest.mark.parametrize("T, n, tn", [(16, 64, 64), (37, 300, 128)])
def test_interleave_blocks(T, n, tn):
    check_interleave_blocks(np.random.default_rng(T), T, n, tn)


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
@pytest.mark.parametrize("vocab, d, tm, tn", [(45, 50, 8, 16), (64, 32, 16, 32), (300, 24, 48, 16)])
def test_embed_rows(dtype, vocab, d, tm, tn):
    check_embed_rows(np.random.default_rng(vocab), vocab, d, tm, tn, dtype)


@pytest.mark.parametrize("T, d", [(1, 64), (6, 37)])
def test_rmsnorm(T, d):
    check_rmsnorm(np.random.default_rng(d), T, d)


def test_add_bias_and_residual():
    check_add(np.random.default_rng(0), 3, 29)


@pytest.mark.parametrize("T, heads, head_dim, start", [(1, 4, 16, 0), (5, 3, 8, 11), (2, 2, 64, 100)])
def test_rope(T, heads, head_dim, start):
    check_rope(np.random.default_rng(start), T, heads, head_dim, start)


@pytest.mark.parametrize("kv", ["fp32", "fp16"])
@pytest.mark.parametrize("T, kv_heads, head_dim, start", [(1, 2, 16, 9), (4, 1, 8, 0), (3, 3, 8, 5)])
def test_store_kv(T, kv_heads, head_dim, start, kv):
    check_store_kv(np.random.default_rng(start), T, kv_heads, head_dim, start, kv)


@pytest.mark.parametrize("T, heads, kv_heads, head_dim, start, window", [
    (6, 4, 4, 16, 0, 0),  # prefill, multi-head
    (5, 4, 2, 16, 7, 0),  # grouped query, a chunk after 7 cached positions
    (1, 6, 2, 8, 20, 0),  # decode, 3 query heads per kv head
    (4, 4, 1, 8, 9, 5),  # multi-query, sliding window shorter than the context
    (6, 4, 2, 16, 3, 4),  # window inside a prefill chunk
    (1, 4, 2, 16, 30, 1),  # a window of one: attend to yourself only
])
@pytest.mark.parametrize("kv", ["fp32", "fp16"])
def test_causal_attention(T, heads, kv_heads, head_dim, start, window, kv):
    check_causal_attention(np.random.default_rng(start + window), T, heads, kv_heads, head_dim, start, window, kv)


@pytest.mark.parametrize("T, f", [(1, 160), (4, 37)])
def test_swiglu(T, f):
    check_swiglu(np.random.default_rng(f), T, f)


@pytest.mark.parametrize("family, dtype, window, kv", [("qwen2", "int8", 0, "fp32"), ("llama", "fp32", 0, "fp32"),
                                                      ("mistral", "int8", 5, "fp32"), ("qwen2", "fp32", 0, "fp16"),
                                                      ("mistral", "fp32", 5, "fp16")])
def test_forward_matches_the_twins(family, dtype, window, kv):
    sizes = dict(hidden_size=48, intermediate_size=80, num_attention_heads=4, num_key_value_heads=2, vocab_size=200,
                 tie_word_embeddings=family == "qwen2", max_position_embeddings=64)
    check_forward(np.random.default_rng(1), family, dtype, prompt=9, steps=3, window=window, kv=kv, **sizes)


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
def test_forward_gives_the_same_bits_whoever_joins(dtype):
    """The lead alone, with a helper that never comes (its ticket open, its share left to the lead), with one and
    with two helpers on two cores: every split computes each number with the same operations in the same order."""
    rng = np.random.default_rng(5)
    config, model = tiny_decoder(rng, "qwen2", dtype, hidden_size=64, intermediate_size=160, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=300, max_position_embeddings=64)
    ids = rng.integers(0, config.vocab_size, 21)  # 16 tokens on AMX where the host has it, then 4, then decode
    eps = np.float32(config.rms_norm_eps)

    def logits_with(workers, helpers_run):
        forward = passing(3)
        out = []
        for start, chunk in ((0, ids[:20]), (20, ids[20:])):
            if helpers_run:
                forward.helpers.start(workers)
            logits = nan(len(chunk), config.vocab_size)
            forward(chunk, start, np.arange(len(chunk)), logits, workers)
            out.append(logits)
        return out

    def passing(workers):  # a forward pass with fresh caches, and a scratch for `workers` workers
        resident = fw.Resident(model, *fw.kv_cache(config, 32), fw.rotary(config, 32), eps, 0, config.head_dim,
                               fw.scratch(config, 20, 32, workers=workers))
        return fw.Forward(resident, config.vocab_size)

    alone = logits_with(1, False)
    assert np.isfinite(alone[0]).all() and np.isfinite(alone[1]).all()
    for workers, helpers_run in ((2, False), (2, True), (3, True)):
        for ours, theirs in zip(logits_with(workers, helpers_run), alone):
            np.testing.assert_array_equal(ours, theirs)
    forward = passing(2)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        forward(ids[:4:2], 0, np.zeros(2, np.int64), nan(2, config.vocab_size), 2)
    with pytest.raises(ValueError, match="tickets for 2 workers, not 3"):
        forward(ids[:1], 0, np.zeros(1, np.int64), nan(1, config.vocab_size), 3)


# Runs every check at tiny sizes: under NUMBA_DISABLE_JIT=1 each kernel is a Python loop over numpy scalars.
NO_JIT_SCRIPT = """
import numba
import numpy as np
from spark_nb.wafer import forward, kernels
import test_kernels as t

assert not hasattr(kernels.tiled_matmul, "py_func") and not hasattr(forward.run, "py_func"), "JIT is on"
rng = np.random.default_rng(0)
for dtype in ("fp32", "int8"):
    t.check_tiled_matmul(rng, 2, 13, 20, 8, 16, dtype)
    t.check_tiled_matmul(rng, 1, 9, 70, 8, 64, dtype)
    t.check_embed_rows(rng, 21, 20, 8, 16, dtype)
t.check_quantize_slices(rng, 2, 70, 64)
t.check_interleave_blocks(rng, 17, 70, 64)
t.check_rmsnorm(rng, 2, 13)
t.check_add(rng, 2, 5)
t.check_rope(rng, 2, 2, 8, 3)
for kv in ("fp32", "fp16"):
    t.check_store_kv(rng, 2, 2, 8, 3, kv)
    t.check_causal_attention(rng, 3, 4, 2, 8, 4, 3, kv)
t.check_swiglu(rng, 2, 9)
sizes = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
             vocab_size=40, max_position_embeddings=16)
t.check_forward(rng, "qwen2", "int8", prompt=3, steps=2, window=2, **sizes)
t.check_forward(rng, "qwen2", "fp32", prompt=3, steps=2, window=2, kv="fp16", **sizes)
print("no-jit ok")
"""


def test_every_kernel_runs_without_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    tests = Path(__file__).parent
    result = subprocess.run([sys.executable, "-c", NO_JIT_SCRIPT], cwd=tests, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no-jit ok" in result.stdout
