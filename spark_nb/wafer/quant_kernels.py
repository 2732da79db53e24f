"""Numba matrix products on GGUF block tiles (blocks.py) with int8 activations.

x reaches the PEs as the int8 kernels give it (kernels.quantize_slices: one scale per PE column slice of tn). A PE
row's tile row is the file's blocks; each group of weights sharing a scale gives an exact integer sum with the
slice's int8 values, and the floats follow in one fixed order:

    s = 0;   for each group g of the slice:  s = s + scale_g * sum(q x);  s = s - offset_g * sum(x)   (K-quants' min)
    acc = acc + s * x_scale            per PE column, in column order;   y = acc

(every product and sum rounded to float32 on its own: JIT's fast-math allows no contraction or reassociation), so
a token's outputs are the same bits alone (decode), among k (verification) or in a prompt (prefill), and the same
on every host: speculative decoding relies on it. The tile row's bytes are decoded once for all the tokens in
flight. `matmul_reference` is the NumPy twin (the same integer sums, the same float32 steps, vectorised over rows).
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T
from numba import config, njit, types
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic
from llvmlite import ir

from . import kernels
from .blocks import FORMATS, unpack
from .jit_cache import keyed_by_sources
from .kernels import JIT, quantize_slices
from .reference import quantize_slices as quantize_slices_reference

# per Format.code: weights a block, bytes a block
BLOCK = tuple(f.block for f in sorted(FORMATS.values()))
NBYTES = tuple(f.nbytes for f in sorted(FORMATS.values()))
Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K = (FORMATS[k].code for k in (T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_K, T.Q5_K, T.Q6_K))


if config.DISABLE_JIT:

    def _half(bits):
        return np.array(bits, np.uint16).view(np.float16).astype(np.float32)[()]

else:

    @intrinsic
    def _half(typingctx, bits):
        """The fp16 number whose bits are `bits` (an integer), as float32: exact (vcvtph2ps)."""

        def codegen(context, builder, signature, args):
            value = builder.trunc(args[0], ir.IntType(16)) if args[0].type.width > 16 else args[0]
            return builder.fpext(builder.bitcast(value, ir.HalfType()), ir.FloatType())

        return types.float32(bits), codegen


@njit(inline="always", **JIT)
def _f16(b, at):
    return _half(np.uint16(b[at]) | (np.uint16(b[at + 1]) << np.uint16(8)))


@njit(inline="always", **JIT)
def _k_scale_min(s, j):
    """Sub-block j's six-bit scale and min from a Q4_K/Q5_K block's 12 scale bytes s (gguf's get_scale_min)."""
    if j < 4:
        return np.int32(s[j] & 63), np.int32(s[j + 4] & 63)
    return (np.int32((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4)),
            np.int32((s[j + 4] >> 4) | ((s[j] >> 6) << 4)))


@njit(inline="always", **JIT)
def _xsum(x, lo, n):
    total = np.int32(0)
    for e in range(n):
        total += np.int32(x[lo + e])
    return total


@njit(inline="always", **JIT)
def _block_dot(code, b, x, s):
    """s after one block b (its bytes) against x (the block's int8 values): the groups in order (module docstring)."""
    if code == Q8_0:
        total = np.int32(0)
        for e in range(32):
            total += np.int32(np.int8(b[2 + e])) * np.int32(x[e])
        return s + _f16(b, 0) * np.float32(total)
    if code == Q4_0 or code == Q5_0:
        high = np.uint32(0)
        nib = 2
        bias = np.int32(8)
        if code == Q5_0:
            high = np.uint32(b[2]) | (np.uint32(b[3]) << 8) | (np.uint32(b[4]) << 16) | (np.uint32(b[5]) << 24)
            nib, bias = 6, np.int32(16)
        total = np.int32(0)
        for e in range(16):
            lo = np.int32(b[nib + e] & 15) | np.int32(((high >> e) & 1) << 4)
            hi = np.int32(b[nib + e] >> 4) | np.int32(((high >> (e + 16)) & 1) << 4)
            total += (lo - bias) * np.int32(x[e]) + (hi - bias) * np.int32(x[e + 16])
        return s + _f16(b, 0) * np.float32(total)
    if code == Q4_K or code == Q5_K:
        d, dmin = _f16(b, 0), _f16(b, 2)
        nib = 48 if code == Q5_K else 16
        for g in range(8):
            sc, mn = _k_scale_min(b[4:16], g)
            shift = 4 * (g % 2)
            total = np.int32(0)
            for e in range(32):
                v = np.int32((b[nib + 32 * (g // 2) + e] >> shift) & 15)
                if code == Q5_K:
                    v |= np.int32(((b[16 + e] >> g) & 1) << 4)
                total += v * np.int32(x[32 * g + e])
            s = s + (d * np.float32(sc)) * np.float32(total)
            s = s - (dmin * np.float32(mn)) * np.float32(_xsum(x, 32 * g, 32))
        return s
    # Q6_K: weight u of half h (u < 128) is low nibble (u // 64) of ql[64 h + u % 64] with two bits of
    # qh[32 h + u % 32] above it, minus 32; sixteen groups of 16
    d = _f16(b, 208)
    for g in range(16):
        h, u0 = g // 8, 16 * (g % 8)
        total = np.int32(0)
        for e in range(16):
            u = u0 + e
            low = np.int32((b[64 * h + u % 64] >> (4 * (u // 64))) & 15)
            top = np.int32((b[128 + 32 * h + u % 32] >> (2 * (u // 32))) & 3)
            total += ((low | (top << 4)) - np.int32(32)) * np.int32(x[16 * g + e])
        s = s + (d * np.float32(np.int8(b[192 + g]))) * np.float32(total)
    return s


@njit(**JIT)
def block_matmul_rows(tiles, code, y, q, first, end):
    """y[T, first:end] for rows first..end-1 of the matrix in block tiles[gr, gc, tm, bytes], x prepared in q
    (quantize_slices with tn = the tiles' width in weights); each tile row's bytes are read once for all tokens."""
    block, nbytes = BLOCK[code], NBYTES[code]
    tm, per_tile = tiles.shape[2], tiles.shape[3]
    blocks = per_tile // nbytes
    tn = blocks * block
    for row in range(first, end):
        r, i = row // tm, row % tm
        for t in range(y.shape[0]):
            acc = np.float32(0.0)
            for c in range(tiles.shape[1]):
                s = np.float32(0.0)
                w = tiles[r, c, i]
                x = q.values[t, c * tn : (c + 1) * tn]
                for k in range(blocks):
                    s = _block_dot(code, w[k * nbytes : (k + 1) * nbytes], x[k * block : (k + 1) * block], s)
                acc = acc + s * q.scales[t, c]
            y[t, row] = acc


@njit(**JIT)
def block_matmul(x, tiles, code, y, q):
    """y[T, m] = x[T, n] W[m, n].T, W held as GGUF block tiles (blocks.to_block_tiles) of format `code`; q: Quantized
    buffers (kernels.quantized) at least the tiles' padded width. Decode is T = 1; verification and prefill T > 1."""
    quantize_slices(x, tiles.shape[3] // NBYTES[code] * BLOCK[code], q)
    block_matmul_rows(tiles, code, y, q, 0, y.shape[1])


def matmul_reference(x: np.ndarray, raw: np.ndarray, kind: T, tn: int) -> np.ndarray:
    """block_matmul's NumPy twin on the file's bytes raw[m, bytes per row]: the same int8 x, integer sums and
    float32 steps (a row's groups in order, PE column by column), vectorised over rows and tokens."""
    q, scale, offset = unpack(raw, kind)
    group = FORMATS[kind].group
    values, x_scales, _ = quantize_slices_reference(x, tn)
    T_, n = x.shape
    acc = np.zeros((T_, q.shape[0]), np.float32)
    for c in range(-(-n // tn)):
        s = np.zeros_like(acc)
        for g in range(c * tn // group, min(n, (c + 1) * tn) // group):
            cols = slice(g * group, (g + 1) * group)
            xv = values[:, cols].astype(np.int64)
            total = (xv @ q[:, cols].T.astype(np.int64)).astype(np.float32)  # [T, m], exact
            s = s + scale[None, :, g] * total
            if kind in (T.Q4_K, T.Q5_K):
                s = s - offset[None, :, g] * xv.sum(axis=1, keepdims=True).astype(np.float32)
        acc = acc + s * x_scales[:, c : c + 1]
    return acc


if not config.DISABLE_JIT:  # cached under the sources compiled into them (jit_cache.py)
    keyed_by_sources([f for f in globals().values() if isinstance(f, Dispatcher) and f.py_func.__module__ == __name__],
                     [__file__, kernels.__file__])
