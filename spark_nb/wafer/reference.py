"""Plain NumPy twins of the kernels in kernels.py: the same contracts, written as array expressions.

The tests hold each kernel to its twin; nothing at run time calls these.
"""
from __future__ import annotations

import numpy as np

from .tiles import from_tiles


def quantize_slices(x, tn):
    """x[T, n] cut into slices of tn, each quantized to int8 with scale max|slice| / 127: (values [T, n] int8,
    scales [T, slices], sums [T, slices]), computed in float32 as the kernel does."""
    T, n = x.shape
    slices = -(-n // tn)
    values = np.zeros((T, n), np.int8)
    scales = np.zeros((T, slices), np.float32)
    for c in range(slices):
        part = x[:, c * tn : (c + 1) * tn].astype(np.float32)
        peak = np.abs(part).max(axis=1)
        scales[:, c] = np.where(peak > 0, peak / np.float32(127.0), np.float32(1.0))
        values[:, c * tn : (c + 1) * tn] = np.rint(part * (np.float32(1.0) / scales[:, c : c + 1]))
    sums = np.stack([values[:, c * tn : (c + 1) * tn].astype(np.int64).sum(1) for c in range(slices)], axis=1)
    return values, scales, sums


def tiled_matmul(x, tiles, scale, m):
    """x @ W.T * scale; for int8 tiles x is first quantized per PE column slice, as the int8 kernel does."""
    gr, gc, tm, tn = tiles.shape
    w = from_tiles(tiles, m, x.shape[1]).astype(np.float64)
    if tiles.dtype == np.int8:
        values, scales, _ = quantize_slices(x, tn)
        x = values * np.repeat(scales.astype(np.float64), tn, axis=1)[:, : x.shape[1]]
    return (x.astype(np.float64) @ w.T * scale[:m]).astype(np.float32)


def embed_rows(tokens, tiles, scale, vocab, d):
    return (from_tiles(tiles, vocab, d)[tokens] * scale[tokens, None]).astype(np.float32)


def rmsnorm(x, weight, eps):
    x64 = x.astype(np.float64)
    return (x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + eps) * weight).astype(np.float32)


def rope(x, head_dim, cos, sin, start):
    T = x.shape[0]
    heads = x.reshape(T, -1, head_dim)
    a, b = heads[..., : head_dim // 2], heads[..., head_dim // 2 :]
    c, s = cos[start : start + T, None, :], sin[start : start + T, None, :]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1).reshape(x.shape)


def _as_cached(x, cache):
    """x as a cache of cache's dtype holds it: float32, or float16 bits in uint16 (kernels.KV_DTYPES)."""
    return x.astype(np.float16).view(np.uint16) if cache.dtype == np.uint16 else x


def store_kv(k, v, k_cache, v_cache, start):
    """Into the caches' layout (kernels.store_kv): k_cache [kv_heads, context/lanes, head_dim, lanes], v_cache
    [kv_heads, head_dim/lanes, context, lanes]."""
    kv_heads, _, head_dim, lanes = k_cache.shape
    for t in range(k.shape[0]):
        p = start + t
        k_cache[:, p // lanes, :, p % lanes] = _as_cached(k[t].reshape(kv_heads, head_dim), k_cache)
        for e in range(head_dim):
            v_cache[:, e // lanes, p, e % lanes] = _as_cached(v[t].reshape(kv_heads, head_dim)[:, e], v_cache)


def by_position(k_cache, v_cache):
    """The caches as float32 [kv_heads, positions, head_dim] each."""
    if k_cache.dtype == np.uint16:
        k_cache, v_cache = k_cache.view(np.float16).astype(np.float32), v_cache.view(np.float16).astype(np.float32)
    kv_heads, blocks, head_dim, lanes = k_cache.shape
    keys = k_cache.transpose(0, 1, 3, 2).reshape(kv_heads, blocks * lanes, head_dim)
    values = v_cache.transpose(0, 2, 1, 3).reshape(kv_heads, v_cache.shape[2], -1)[:, :, :head_dim]
    return keys, values


def causal_attention(q, k_cache, v_cache, start, window):
    T = q.shape[0]
    keys, values = by_position(k_cache, v_cache)
    kv_heads, _, head_dim = keys.shape
    heads = q.shape[1] // head_dim
    out = np.zeros_like(q)
    for h in range(heads):
        kv = h // (heads // kv_heads)
        for t in range(T):
            pos = start + t
            lo = max(0, pos - window + 1) if window > 0 else 0
            qv = q[t, h * head_dim : (h + 1) * head_dim].astype(np.float64)
            s = keys[kv, lo : pos + 1] @ qv / np.sqrt(head_dim)
            p = np.exp(s - s.max())
            out[t, h * head_dim : (h + 1) * head_dim] = (p / p.sum()) @ values[kv, lo : pos + 1]
    return out


def swiglu(gate_up):
    gate, up = np.split(gate_up, 2, axis=1)
    g = gate.astype(np.float64)
    return (g / (1 + np.exp(-g)) * up).astype(np.float32)
