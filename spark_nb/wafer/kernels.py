"""Numba kernels that compute on the PE-tile layout.

Each kernel fills a buffer the caller owns and allocates nothing, so a forward pass never touches the allocator.
Activations are 2D [T, width] (T tokens in flight); heads are addressed as column blocks of width head_dim.
`reference.py` holds a plain NumPy twin of every kernel; the tests hold them to each other. Every kernel runs as
plain Python under NUMBA_DISABLE_JIT=1.

int8 weights meet int8 activations, as on a PE that receives its x slice quantized: each slice of x (one per PE
column) gets its own scale, the products are summed exactly in integers, then scaled. On hosts with AVX-512 VNNI
the dot products run on `vpdpbusd` (64 multiply-adds per instruction); elsewhere the same integer sums are formed
exactly in float32 (|sum| <= 512 * 127 * 127 < 2**24), so every host computes the same numbers.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import config, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

JIT = dict(cache=True, nogil=True, fastmath=True)


# vpdpbusd when the host has it and numba compiles (under NUMBA_DISABLE_JIT an intrinsic cannot run);
# SPARK_NB_NO_VNNI=1 takes the portable path anyway (tests compare the two)
HOST_VNNI = (bool(llvmlite.binding.get_host_cpu_features().get("avx512vnni")) and not config.DISABLE_JIT
             and os.environ.get("SPARK_NB_NO_VNNI") != "1")


class Quantized(NamedTuple):
    """x as the PEs of a tiled matrix receive it: cut into slices of tn and quantized to int8, one scale each."""

    values: np.ndarray  # int8 [T, slices * tn], zero past the matrix's width
    scales: np.ndarray  # float32 [T, slices]
    sums: np.ndarray  # int32 [T, slices]: sum of each slice's values (see _dot4_vnni)


def quantized(tokens: int, width: int) -> Quantized:
    """Buffers for quantizing up to `tokens` rows of x for any matrix at most `width` wide (tiles included)."""
    slices = width  # at most one slice per element: generous and tiny
    return Quantized(np.zeros((tokens, width), np.int8), np.zeros((tokens, slices), np.float32),
                     np.zeros((tokens, slices), np.int32))


@njit(**JIT)
def quantize_slices(x, tn, q):
    """q.values[t, c*tn + j] = round(x[t, c*tn + j] / q.scales[t, c]), scale = max|slice| / 127."""
    T, n = x.shape
    slices = -(-n // tn)
    for t in range(T):
        for c in range(slices):
            j0 = c * tn
            cols = min(tn, n - j0)
            peak = np.float32(0.0)
            for j in range(cols):
                peak = max(peak, abs(x[t, j0 + j]))
            scale = peak / np.float32(127.0) if peak > 0 else np.float32(1.0)
            inv = np.float32(1.0) / scale
            total = np.int32(0)
            for j in range(cols):
                v = np.int8(np.rint(x[t, j0 + j] * inv))
                q.values[t, j0 + j] = v
                total += np.int32(v)
            for j in range(cols, tn):
                q.values[t, j0 + j] = 0
            q.scales[t, c] = scale
            q.sums[t, c] = total


@intrinsic
def _vpdpbusd4(typingctx, w_addr, row_bytes, x_addr, n):
    """Four rows of int8 weights (row_bytes apart) against n int8 values of x, n a multiple of 64, as
    (sum (w + 128) * x) per row: vpdpbusd multiplies unsigned by signed bytes, so each weight's sign bit is
    flipped (w ^ 0x80 == w + 128 as an unsigned byte) and the caller subtracts 128 * sum(x)."""
    sig = types.UniTuple(types.int32, 4)(types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        w_base, stride, x_base, n = args
        i32, intp = ir.IntType(32), context.get_value_type(types.intp)
        v16 = ir.VectorType(i32, 16)  # 64 bytes
        module = builder.module
        dot = cgutils.get_or_insert_function(module, ir.FunctionType(v16, [v16, v16, v16]),
                                             "llvm.x86.avx512.vpdpbusd.512")
        total = cgutils.get_or_insert_function(module, ir.FunctionType(i32, [v16]), "llvm.vector.reduce.add.v16i32")
        i8p, i32t = ir.IntType(8).as_pointer(), ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), [i8p, i32t, i32t, i32t]),
                                                  "llvm.prefetch.p0i8")
        flip = ir.Constant(v16, [-0x7F7F7F80] * 16)  # 0x80808080
        accs = [cgutils.alloca_once_value(builder, ir.Constant(v16, [0] * 16)) for _ in range(4)]
        with cgutils.for_range(builder, builder.udiv(n, ir.Constant(intp, 64))) as loop:
            offset = builder.mul(loop.index, ir.Constant(intp, 64))
            xv = builder.load(builder.inttoptr(builder.add(x_base, offset), v16.as_pointer()), align=1)
            for row, acc in enumerate(accs):
                addr = builder.add(builder.add(w_base, builder.mul(stride, ir.Constant(intp, row))), offset)
                # the same bytes 16 rows on (four row groups ahead; 8 and 32 measured slower): a read hint for DRAM
                # latency, harmless
                # past the tile's end (a prefetch never faults)
                ahead = builder.add(addr, builder.mul(stride, ir.Constant(intp, 16)))
                builder.call(prefetch, [builder.inttoptr(ahead, i8p), ir.Constant(i32t, 0), ir.Constant(i32t, 3),
                                        ir.Constant(i32t, 1)])
                wv = builder.load(builder.inttoptr(addr, v16.as_pointer()), align=1)
                builder.store(builder.call(dot, [builder.load(acc), builder.xor(wv, flip), xv]), acc)
        sums = [builder.call(total, [builder.load(acc)]) for acc in accs]
        return context.make_tuple(builder, signature.return_type, sums)

    return sig, codegen


@njit(**JIT)
def _dot4_vnni(tile, i, xq, x_sum):
    """Exact integer dot products of tile rows i..i+3 with xq (a whole slice of tn values)."""
    tn = tile.shape[1]
    p0, p1, p2, p3 = _vpdpbusd4(tile[i].ctypes.data, tn, xq.ctypes.data, tn)
    bias = 128 * x_sum
    return np.float32(p0 - bias), np.float32(p1 - bias), np.float32(p2 - bias), np.float32(p3 - bias)


@njit(**JIT)
def _dot4_widened(tile, i, xq, x_sum):
    """The same sums as _dot4_vnni, formed in float32: exact, since |sum| < 2**24."""
    w0, w1, w2, w3 = tile[i], tile[i + 1], tile[i + 2], tile[i + 3]
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for j in range(tile.shape[1]):
        xj = np.float32(xq[j])
        a0 += np.float32(w0[j]) * xj
        a1 += np.float32(w1[j]) * xj
        a2 += np.float32(w2[j]) * xj
        a3 += np.float32(w3[j]) * xj
    return a0, a1, a2, a3


if HOST_VNNI:

    @njit(**JIT)
    def _dot4_int8(tile, i, xq, x_sum):
        if tile.shape[1] % 64 == 0:  # whole 64-byte vectors: tile_shape makes int8 tiles so
            return _dot4_vnni(tile, i, xq, x_sum)
        return _dot4_widened(tile, i, xq, x_sum)

else:
    _dot4_int8 = _dot4_widened


@njit(**JIT)
def _dot4(tile, i, x_slice, cols):
    """Rows i..i+3 of a tile against one x slice: four dot products that share every load of x (unit-stride
    slices let LLVM vectorise them)."""
    w0, w1, w2, w3 = tile[i, :cols], tile[i + 1, :cols], tile[i + 2, :cols], tile[i + 3, :cols]
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for j in range(cols):
        xj = x_slice[j]
        a0 += np.float32(w0[j]) * xj  # int8 widened to float32 (not float64) so the loop vectorises
        a1 += np.float32(w1[j]) * xj
        a2 += np.float32(w2[j]) * xj
        a3 += np.float32(w3[j]) * xj
    return a0, a1, a2, a3


@njit(parallel=True, **JIT)
def _matmul_float(x, tiles, scale, y):
    """y[T, m] = (x[T, n] @ W[m, n].T) * scale[m], with W held as PE tiles[gr, gc, tm, tn].

    PE (r, c) holds W[r*tm:(r+1)*tm, c*tn:(c+1)*tn]. Slice c of x is broadcast down PE column c, every PE forms
    its partial products, and the partial sums of PE row r are reduced along the row (the loop over c) into y's
    slice r. The host splits the work by groups of four rows, so a matrix one PE row tall still uses every core.
    Decode is the T = 1 case. Where the time goes: this loop.
    """
    T, n = x.shape
    m = y.shape[1]
    gr, gc, tm, tn = tiles.shape  # tm is a multiple of 8; rows past the matrix are zero padding
    groups = tm // 4
    for g in prange(gr * groups):
        r, i = g // groups, 4 * (g % groups)  # rows i..i+3 of PE row r
        row = r * tm + i
        if row >= m:
            continue
        for t in range(T):
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for c in range(gc):  # the reduction along PE row r
                j0 = c * tn
                cols = min(tn, n - j0)
                p0, p1, p2, p3 = _dot4(tiles[r, c], i, x[t, j0 : j0 + cols], cols)
                a0 += p0
                a1 += p1
                a2 += p2
                a3 += p3
            y[t, row] = a0 * scale[row]
            if row + 1 < m:
                y[t, row + 1] = a1 * scale[row + 1]
            if row + 2 < m:
                y[t, row + 2] = a2 * scale[row + 2]
            if row + 3 < m:
                y[t, row + 3] = a3 * scale[row + 3]


@njit(parallel=True, **JIT)
def _matmul_int8(x, tiles, scale, y, q):
    """_matmul_float for int8 tiles: x is quantized per PE column slice first, then the dot products are exact
    integer sums, scaled by the slice's scale and the output row's scale.

    The two kernels share their loop on purpose, not by accident: one loop with the per-dtype reduction behind a
    compile-time overload measured ~1.5x slower here (numba does not inline it into the parallel body).
    """
    T, n = x.shape
    m = y.shape[1]
    gr, gc, tm, tn = tiles.shape
    quantize_slices(x, tn, q)
    groups = tm // 4
    for g in prange(gr * groups):
        r, i = g // groups, 4 * (g % groups)
        row = r * tm + i
        if row >= m:
            continue
        for t in range(T):
            a0 = a1 = a2 = a3 = np.float32(0.0)
            for c in range(gc):  # the reduction along PE row r
                xq = q.values[t, c * tn : (c + 1) * tn]
                p0, p1, p2, p3 = _dot4_int8(tiles[r, c], i, xq, q.sums[t, c])
                x_scale = q.scales[t, c]
                a0 += p0 * x_scale
                a1 += p1 * x_scale
                a2 += p2 * x_scale
                a3 += p3 * x_scale
            y[t, row] = a0 * scale[row]
            if row + 1 < m:
                y[t, row + 1] = a1 * scale[row + 1]
            if row + 2 < m:
                y[t, row + 2] = a2 * scale[row + 2]
            if row + 3 < m:
                y[t, row + 3] = a3 * scale[row + 3]


def tiled_matmul(x, tiles, scale, y, q):
    """y[T, m] = (x[T, n] @ W[m, n].T) * scale[m], W held as PE tiles; q: Quantized buffers for int8 tiles.

    In numba code the choice between the int8 and the float kernel is made once, at compile time, by the tiles'
    dtype (see the overload below); this body is what runs under NUMBA_DISABLE_JIT.
    """
    if tiles.dtype == np.int8:
        _matmul_int8(x, tiles, scale, y, q)
    else:
        _matmul_float(x, tiles, scale, y)


@overload(tiled_matmul, jit_options=JIT)
def _tiled_matmul_by_dtype(x, tiles, scale, y, q):
    if tiles.dtype == types.int8:
        return lambda x, tiles, scale, y, q: _matmul_int8(x, tiles, scale, y, q)
    return lambda x, tiles, scale, y, q: _matmul_float(x, tiles, scale, y)


@njit(**JIT)
def embed_rows(tokens, tiles, scale, out):
    """out[t] = W[tokens[t]] * scale[tokens[t]]: rows of a [vocab, d] matrix held as PE tiles."""
    gr, gc, tm, tn = tiles.shape
    d = out.shape[1]
    for t in range(tokens.shape[0]):
        token = tokens[t]
        r, i = token // tm, token % tm
        for c in range(gc):
            j0 = c * tn
            for j in range(min(tn, d - j0)):
                out[t, j0 + j] = tiles[r, c, i, j] * scale[token]


@njit(**JIT)
def rmsnorm(x, weight, eps, out):
    """out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight."""
    T, d = x.shape
    for t in range(T):
        ss = np.float32(0.0)
        for j in range(d):
            ss += x[t, j] * x[t, j]
        inv = np.float32(1.0) / np.sqrt(ss / d + eps)
        for j in range(d):
            out[t, j] = x[t, j] * inv * weight[j]


@njit(**JIT)
def add_bias(y, bias):
    """y[t] += bias."""
    for t in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[t, j] += bias[j]


@njit(**JIT)
def add_into(x, y):
    """x += y (the residual connection)."""
    for t in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[t, j] += y[t, j]


@njit(**JIT)
def rope(x, head_dim, cos, sin, start):
    """Rotate every head of x[T, heads*head_dim] in place, token t at position start + t.

    Half-split convention (as Llama/Qwen/Mistral checkpoints): pairs (x[e], x[e + head_dim/2]).
    cos, sin: [context, head_dim/2].
    """
    T, width = x.shape
    half = head_dim // 2
    for t in range(T):
        pos = start + t
        for h0 in range(0, width, head_dim):
            for e in range(half):
                a = x[t, h0 + e]
                b = x[t, h0 + half + e]
                x[t, h0 + e] = a * cos[pos, e] - b * sin[pos, e]
                x[t, h0 + half + e] = b * cos[pos, e] + a * sin[pos, e]


@njit(**JIT)
def store_kv(k, v, k_cache, v_cache, start):
    """Write the new keys and values k, v[T, kv_heads*head_dim] at positions start.. of the caches
    [kv_heads, context, head_dim]."""
    T = k.shape[0]
    kv_heads, _, head_dim = k_cache.shape
    for t in range(T):
        for h in range(kv_heads):
            for e in range(head_dim):
                k_cache[h, start + t, e] = k[t, h * head_dim + e]
                v_cache[h, start + t, e] = v[t, h * head_dim + e]


@njit(parallel=True, **JIT)
def causal_attention(q, k_cache, v_cache, start, window, scores, out):
    """out[T, heads*head_dim]: each query head attends to positions [lo, start + t] of its kv head's cache.

    Grouped-query attention: query head h reads kv head h // (heads / kv_heads). window > 0 limits attention to
    the last `window` positions (Mistral's sliding window). scores: scratch [heads, context].
    """
    T = q.shape[0]
    kv_heads, _, head_dim = k_cache.shape
    heads = q.shape[1] // head_dim
    group = heads // kv_heads
    inv_sqrt = np.float32(1.0 / math.sqrt(head_dim))
    for h in prange(heads):
        kv = h // group
        q0 = h * head_dim
        for t in range(T):
            pos = start + t
            lo = max(0, pos - window + 1) if window > 0 else 0
            q_head = q[t, q0 : q0 + head_dim]
            best = -np.inf
            for p in range(lo, pos + 1):
                k_row = k_cache[kv, p]
                s = np.float32(0.0)
                for e in range(head_dim):
                    s += q_head[e] * k_row[e]
                s *= inv_sqrt
                scores[h, p] = s
                best = max(best, s)
            total = np.float32(0.0)
            for p in range(lo, pos + 1):
                w = np.exp(scores[h, p] - best)
                scores[h, p] = w
                total += w
            o_head = out[t, q0 : q0 + head_dim]
            o_head[:] = 0.0
            for p in range(lo, pos + 1):
                w = scores[h, p] / total
                v_row = v_cache[kv, p]
                for e in range(head_dim):
                    o_head[e] += w * v_row[e]


@njit(**JIT)
def swiglu(gate, up):
    """gate <- silu(gate) * up, in place."""
    for t in range(gate.shape[0]):
        for j in range(gate.shape[1]):
            g = gate[t, j]
            gate[t, j] = g / (np.float32(1.0) + np.exp(-g)) * up[t, j]
