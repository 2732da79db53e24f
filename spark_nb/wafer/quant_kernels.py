"""Numba matrix products on GGUF block tiles (blocks.py) with int8 activations.

x reaches the PEs as the int8 kernels give it (kernels.quantize_slices: one scale per PE column slice of tn). A PE
row's tile row is the file's blocks; each group of weights sharing a scale gives an exact integer sum with the
slice's int8 values, and the floats follow in one fixed order:

    s = 0;   for each group g of the slice:  s = s + scale_g * sum(q x);  s = s - offset_g * sum(x)   (K-quants' min)
    acc = acc + s * x_scale            per PE column, in column order;   y = acc

(every product and sum rounded to float32 on its own: JIT's fast-math allows no contraction or reassociation), so
a token's outputs are the same bits alone (decode), among k (verification) or in a prompt (prefill), and the same
on every host: speculative decoding relies on it. A group's integers are formed in vector registers straight from
the file's bytes (_group_dot), for each token in flight (a row of blocks stays in L1). `matmul_reference` is the
NumPy twin (the same integer sums, the same float32 steps, vectorised over rows).
"""
from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T
from numba import config, njit, types
from numba.core.dispatcher import Dispatcher
from numba.core import cgutils
from numba.extending import intrinsic
import llvmlite.binding
from llvmlite import ir

from . import kernels
from .blocks import BLOCK_KINDS, FORMATS, unpack
from .jit_cache import keyed_by_sources
from .kernels import JIT, quantize_slices
from .reference import quantize_slices as quantize_slices_reference

# per Format.code: weights a block, bytes a block, weights a group
BLOCK = tuple(f.block for f in sorted(FORMATS.values()))
NBYTES = tuple(f.nbytes for f in sorted(FORMATS.values()))
GROUP = tuple(f.group for f in sorted(FORMATS.values()))
Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K = (FORMATS[k].code for k in (T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_K, T.Q5_K, T.Q6_K))
# per code: what makes a format's integers unsigned bytes (q + bias), as vpdpbusd takes them
BIAS = (128, 8, 16, 0, 0, 32)
# vpdpbusd on 128- and 256-bit vectors (AVX-512 VL), where kernels.py uses it (and SPARK_NB_NO_VNNI=1 does not)
HOST_VNNI_VL = kernels.HOST_VNNI and bool(llvmlite.binding.get_host_cpu_features().get("avx512vl"))


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
def _k_scale_min(b, at, j):
    """Sub-block j's six-bit scale and min from a Q4_K/Q5_K block's 12 scale bytes b[at:] (gguf's get_scale_min)."""
    if j < 4:
        return np.int32(b[at + j] & 63), np.int32(b[at + j + 4] & 63)
    return (np.int32((b[at + j + 4] & 15) | ((b[at + j - 4] >> 6) << 4)),
            np.int32((b[at + j + 4] >> 4) | ((b[at + j] >> 6) << 4)))


if config.DISABLE_JIT:

    def _group_dot(b, bo, g, x, xo, code):
        q = unpack(b[bo : bo + NBYTES[code]].reshape(1, -1), BLOCK_KINDS[code])[0][0]
        group = GROUP[code]
        return np.int32((q[g * group : (g + 1) * group].astype(np.int32) * x[xo : xo + group]).sum())

else:

    @intrinsic
    def _group_dot(typingctx, b, bo, g, x, xo, code):
        """The exact integer sum of group g of the block at b[bo:] (a format's weights as small integers, see
        blocks.unpack) times x[xo : xo + group] (int8), `code` a compile-time format. The group's integers are formed
        in a vector register straight from the file's bytes (shifts and masks), as unsigned bytes q + BIAS; then
        vpdpbusd sums (q + bias) x and bias x where the host has AVX-512 VNNI, else q and x are widened to int32
        and multiplied; either way llvm.vector.reduce.add finishes an exact sum (integer sums agree in any order).
        Decoding in registers, again for each token in flight, costs less than writing the integers out: a row of
        blocks stays in L1."""
        if not isinstance(code, types.IntegerLiteral):
            return None
        kind = code.literal_value
        n = GROUP[kind]

        def codegen(context, builder, signature, args):
            i8, i32 = ir.IntType(8), ir.IntType(32)
            intp = context.get_value_type(types.intp)
            bo, g, xo = args[1], args[2], args[4]
            b_data = context.make_array(signature.args[0])(context, builder, args[0]).data
            x_data = context.make_array(signature.args[3])(context, builder, args[3]).data

            def const(k, ty=intp):
                return ir.Constant(ty, k)

            def bytes_at(data, offset, count):  # count bytes from data + offset, a <count x i8>
                ty = ir.VectorType(i8, count)
                return builder.load(builder.bitcast(builder.gep(data, [offset]), ty.as_pointer()), align=1)

            def splat(value, count):  # a constant in every lane of a <count x i8>
                return ir.Constant(ir.VectorType(i8, count), [value] * count)

            def spread(value, count):  # a runtime value in every lane
                one = builder.insert_element(ir.Constant(ir.VectorType(value.type, count), None), value, const(0, i32))
                return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, count), [0] * count))

            def shift_of(amount, count):  # a runtime shift (intp) as a <count x i8> of it
                return spread(builder.trunc(amount, i8), count)

            def at(*terms):
                total = terms[0]
                for term in terms[1:]:
                    total = builder.add(total, term if not isinstance(term, int) else const(term))
                return total

            # u: the group's integers plus BIAS[kind], as unsigned bytes (what vpdpbusd multiplies)
            if kind == Q8_0:
                u = builder.xor(bytes_at(b_data, at(bo, 2), 32), splat(0x80, 32))  # w + 128 as an unsigned byte
            elif kind in (Q4_0, Q5_0):
                nib = bytes_at(b_data, at(bo, 2 if kind == Q4_0 else 6), 16)
                low = builder.and_(nib, splat(15, 16))
                high = builder.lshr(nib, splat(4, 16))
                u = builder.shuffle_vector(low, high, ir.Constant(ir.VectorType(i32, 32), list(range(32))))
                if kind == Q5_0:  # bit e of the 32-bit qh is weight e's fifth bit
                    qh = builder.load(builder.bitcast(builder.gep(b_data, [at(bo, 2)]), i32.as_pointer()), align=1)
                    bits = builder.lshr(spread(qh, 32), ir.Constant(ir.VectorType(i32, 32), list(range(32))))
                    fifth = builder.trunc(builder.and_(bits, ir.Constant(ir.VectorType(i32, 32), [1] * 32)),
                                          ir.VectorType(i8, 32))
                    u = builder.or_(u, builder.shl(fifth, splat(4, 32)))
            elif kind in (Q4_K, Q5_K):  # group g: nibble g % 2 of the 32 bytes 32 (g // 2) into the nibbles
                nib = bytes_at(b_data, at(bo, 16 if kind == Q4_K else 48,
                                          builder.mul(builder.udiv(g, const(2)), const(32))), 32)
                u = builder.and_(builder.lshr(nib, shift_of(builder.mul(builder.urem(g, const(2)), const(4)), 32)),
                                 splat(15, 32))
                if kind == Q5_K:  # bit g of the 32 bytes after the scales
                    fifth = builder.and_(builder.lshr(bytes_at(b_data, at(bo, 16), 32), shift_of(g, 32)), splat(1, 32))
                    u = builder.or_(u, builder.shl(fifth, splat(4, 32)))
            else:  # Q6_K, group g of 16: half h = g // 8, k = (g % 8) // 2, e0 = 16 (g % 2) (module docstring)
                h, k = builder.udiv(g, const(8)), builder.udiv(builder.urem(g, const(8)), const(2))
                e0 = builder.mul(builder.urem(g, const(2)), const(16))
                low = bytes_at(b_data, at(bo, builder.mul(h, const(64)), builder.mul(builder.urem(k, const(2)),
                                                                                      const(32)), e0), 16)
                low = builder.and_(builder.lshr(low, shift_of(builder.mul(builder.udiv(k, const(2)), const(4)), 16)),
                                   splat(15, 16))
                high = bytes_at(b_data, at(bo, 128, builder.mul(h, const(32)), e0), 16)
                high = builder.and_(builder.lshr(high, shift_of(builder.mul(k, const(2)), 16)), splat(3, 16))
                u = builder.or_(low, builder.shl(high, splat(4, 16)))
            x = bytes_at(x_data, xo, n)
            bias = BIAS[kind]
            if HOST_VNNI_VL:  # sum(u x) - bias sum(x), each on vpdpbusd (4 products a lane): 1-2 instructions
                quads = ir.VectorType(i32, n // 4)
                dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(quads, [quads] * 3),
                                                     f"llvm.x86.avx512.vpdpbusd.{8 * n}")
                zero, xq = ir.Constant(quads, [0] * (n // 4)), builder.bitcast(x, quads)
                lanes = builder.call(dot, [zero, builder.bitcast(u, quads), xq])
                if bias:
                    sums = builder.call(dot, [zero, builder.bitcast(splat(1, n), quads), xq])
                    lanes = builder.sub(lanes, builder.mul(sums, ir.Constant(quads, [bias] * (n // 4))))
            else:  # the same integers: u - bias back in a signed byte, times x, in int32 lanes
                lanes = ir.VectorType(i32, n)
                lanes = builder.mul(builder.sext(builder.sub(u, splat(bias, n)), lanes), builder.sext(x, lanes))
            reduce = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [lanes.type]),
                                                    f"llvm.vector.reduce.add.v{lanes.type.count}i32")
            return builder.call(reduce, [lanes])

        return types.int32(b, bo, g, x, xo, code), codegen


@njit(inline="always", **JIT)
def _block_dot(code, b, bo, x, xo, xsums, s):
    """s after the block at b[bo:] against its int8 values x[xo:], the groups in order (module docstring); xsums:
    the token's group sums of x (the K-quants' min term)."""
    if code == Q8_0:
        return s + _f16(b, bo) * np.float32(_group_dot(b, bo, 0, x, xo, 0))
    if code == Q4_0:
        return s + _f16(b, bo) * np.float32(_group_dot(b, bo, 0, x, xo, 1))
    if code == Q5_0:
        return s + _f16(b, bo) * np.float32(_group_dot(b, bo, 0, x, xo, 2))
    if code == Q4_K or code == Q5_K:
        d, dmin = _f16(b, bo), _f16(b, bo + 2)
        for g in range(8):
            sc, mn = _k_scale_min(b, bo + 4, g)
            total = _group_dot(b, bo, g, x, xo + 32 * g, 3) if code == Q4_K else _group_dot(b, bo, g, x, xo + 32 * g, 4)
            s = s + (d * np.float32(sc)) * np.float32(total)
            s = s - (dmin * np.float32(mn)) * np.float32(xsums[(xo + 32 * g) // 32])
        return s
    d = _f16(b, bo + 208)  # Q6_K
    for g in range(16):
        s = s + (d * np.float32(np.int8(b[bo + 192 + g]))) * np.float32(_group_dot(b, bo, g, x, xo + 16 * g, 5))
    return s


def group_sums(tokens: int, width: int) -> np.ndarray:
    """The int32 [tokens, width / 32] buffer block_matmul keeps x's group sums in (Q4_K and Q5_K's min term)."""
    return np.zeros((tokens, -(-width // 32)), np.int32)


@njit(**JIT)
def prepare_blocks(tiles, code, q, xsums):
    """x's group sums for Q4_K and Q5_K tiles (their min term), from x already quantized into q; nothing for the
    other formats."""
    if code != Q4_K and code != Q5_K:
        return
    width = tiles.shape[1] * tiles.shape[3] // NBYTES[code] * BLOCK[code]
    for t in range(xsums.shape[0]):
        for g in range(width // 32):
            total = np.int32(0)
            for e in range(32):
                total += np.int32(q.values[t, 32 * g + e])
            xsums[t, g] = total


@njit(**JIT)
def block_matmul_rows(tiles, code, y, q, xsums, first, end):
    """y[T, first:end] for rows first..end-1 of the matrix in block tiles[gr, gc, tm, bytes], x prepared in q
    (quantize_slices with tn = the tiles' width in weights) and xsums (prepare_blocks)."""
    block, nbytes = BLOCK[code], NBYTES[code]
    gc, tm = tiles.shape[1], tiles.shape[2]
    blocks = tiles.shape[3] // nbytes
    tn = blocks * block
    for row in range(first, end):
        r, i = row // tm, row % tm
        for t in range(y.shape[0]):
            x, sums = q.values[t], xsums[t]
            acc = np.float32(0.0)
            for c in range(gc):
                w = tiles[r, c, i]
                s = np.float32(0.0)
                for k in range(blocks):
                    s = _block_dot(code, w, k * nbytes, x, c * tn + k * block, sums, s)
                acc = acc + s * q.scales[t, c]
            y[t, row] = acc


@njit(**JIT)
def block_matmul(x, tiles, code, y, q, xsums):
    """y[T, m] = x[T, n] W[m, n].T, W held as GGUF block tiles (blocks.to_block_tiles) of format `code`; q and
    xsums: Quantized (kernels.quantized) and group_sums buffers at least the tiles' padded width. Decode is T = 1;
    verification and prefill T > 1."""
    quantize_slices(x, tiles.shape[3] // NBYTES[code] * BLOCK[code], q)
    prepare_blocks(tiles, code, q, xsums)
    block_matmul_rows(tiles, code, y, q, xsums, 0, y.shape[1])


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
