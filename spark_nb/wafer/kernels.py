"""Numba kernels that compute on the PE-tile layout.

Each kernel fills a buffer the caller owns and allocates nothing, so a forward pass never touches the allocator.
Activations are 2D [T, width] (T tokens in flight); heads are addressed as column blocks of width head_dim.
`reference.py` holds a plain NumPy twin of every kernel; the tests hold them to each other. Every kernel runs as
plain Python under NUMBA_DISABLE_JIT=1.

int8 weights meet int8 activations, as on a PE that receives its x slice quantized: each slice of x (one per PE
column) gets its own scale, the products are summed exactly in integers, then scaled. On hosts with AVX-512 VNNI
the dot products run on `vpdpbusd` (64 multiply-adds per instruction); elsewhere the same integer sums are formed
in int32, so every host computes the same numbers. Where the host also has AMX (Sapphire Rapids and later),
prompts and verifications multiply 16 tokens by 16 rows per tile
instruction (`tdpbssd`, 16,384 multiply-adds): the same exact sums, ~3x faster per matmul than vpdpbusd here.

A token's numbers never depend on the tokens in flight beside it: matmuls take tokens sixteen (AMX) or four at a
time and attention queries four at a time (each weight, key and value vector loaded once for all of them), the
rest one by one as in decode, with the same operations in the same order. Speculative decoding relies on it: a
verified draft token is accepted exactly when decoding token by token would have chosen it. The hot loops are LLVM
vector IR written out (intrinsics); only vpdpbusd and the AMX tiles are x86-specific.
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
from typing import NamedTuple

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .tiles import aligned

# error_model numpy: x / 0 gives inf, as in NumPy, where numba would check and raise: that check keeps a loop from
# vectorising. Fast-math without reassociation, contraction, reciprocal or approximate functions: with them LLVM
# sums a reduction in as many running sums as the target's vectors have lanes, fuses a multiply into an add or not
# depending on what it inlined (a cold compile and cached code differed), and divides and square-roots by estimates
# whose precision differs between AVX2 and AVX-512: the same model gave different tokens on different CPUs.
# Reductions keep their speed by summing in sixteen running sums written out (_ordered_sum), the same on every
# target; a fused multiply-add is written where one is meant (_fma, llvm.fma: exact on any target).
JIT = dict(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz"}, error_model="numpy")


# vpdpbusd when the host has it and numba compiles (under NUMBA_DISABLE_JIT an intrinsic cannot run);
# SPARK_NB_NO_VNNI=1 takes the portable path anyway (tests compare the two)
HOST_VNNI = (bool(llvmlite.binding.get_host_cpu_features().get("avx512vnni")) and not config.DISABLE_JIT
             and os.environ.get("SPARK_NB_NO_VNNI") != "1")


def _amx_permitted() -> bool:
    """AMX tile registers (Intel Advanced Matrix Extensions) on this host, and Linux's leave to use them: a
    process asks once (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA), or its first tile instruction faults.
    SPARK_NB_NO_AMX=1 keeps to vpdpbusd (tests compare the two)."""
    features = llvmlite.binding.get_host_cpu_features()
    if not (HOST_VNNI and features.get("amx-int8") and features.get("amx-tile")) or sys.platform != "linux":
        return False
    if os.environ.get("SPARK_NB_NO_AMX") == "1":
        return False
    arch_prctl, req_xcomp_perm, xtiledata = 158, 0x1023, 18  # x86-64 syscall number, asm/prctl.h, the feature bit
    return ctypes.CDLL(None, use_errno=True).syscall(arch_prctl, req_xcomp_perm, xtiledata) == 0


HOST_AMX = _amx_permitted()
AMX_TOKENS = 16  # tokens per AMX tile product (the tile's 16 columns of int32)


class Quantized(NamedTuple):
    """x as the PEs of a tiled matrix receive it: cut into slices of tn and quantized to int8, one scale each."""

    values: np.ndarray  # int8 [T, slices * tn], zero past the matrix's width
    scales: np.ndarray  # float32 [T, slices]
    sums: np.ndarray  # int32 [T, slices]: sum of each slice's values (see _vnni_rows)
    # the same values as AMX reads them (interleave_blocks), AMX_TOKENS tokens a block: blocks[b, g, n] holds
    # values[16 b + n, 4 g : 4 g + 4] (four int8 in one int32), block_scales[b, c, n] = scales[16 b + n, c]
    blocks: np.ndarray  # int32 [T / 16, slices * tn / 4, 16]
    block_scales: np.ndarray  # float32 [T / 16, slices, 16]


def quantized(tokens: int, width: int) -> Quantized:
    """Buffers for quantizing up to `tokens` rows of x for any matrix at most `width` wide (tiles included)."""
    width = -(-width // 64) * 64  # every row starts a 64-byte vector
    slices = width  # at most one slice per element: generous and tiny
    blocks = tokens // AMX_TOKENS if HOST_AMX else 0
    return Quantized(aligned(np.zeros((tokens, width), np.int8)), np.zeros((tokens, slices), np.float32),
                     np.zeros((tokens, slices), np.int32),
                     aligned(np.zeros((blocks, width // 4, AMX_TOKENS), np.int32)),
                     aligned(np.zeros((blocks, slices, AMX_TOKENS), np.float32)))


if config.DISABLE_JIT:
    _fmax = max

    def _fma(a, b, c):
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))  # the product is exact in float64
else:

    @intrinsic
    def _fma(typingctx, a, b, c):
        """a * b + c of three float32 rounded once (llvm.fma): as the vector kernels' fused multiply-adds."""
        sig = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            f32 = ir.FloatType()
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32] * 3), "llvm.fma.f32")
            return builder.call(fma, args)

        return sig, codegen

    @intrinsic
    def _fmax(typingctx, a, b):
        """max(a, b) of two float32 as llvm.maxnum: unlike numba's max (NaN-aware branches), a loop over it
        vectorises."""
        sig = types.float32(types.float32, types.float32)

        def codegen(context, builder, signature, args):
            f32 = ir.FloatType()
            maxnum = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32, f32]),
                                                    "llvm.maxnum.f32")
            return builder.call(maxnum, args)

        return sig, codegen


def _ordered_sum_python(a, b=None):
    """_ordered_sum as plain Python (NUMBA_DISABLE_JIT): the same order (a fused add rounded through float64 may
    differ from llvm.fma in the last bit)."""
    n = a.size - a.size % 16
    lanes = np.zeros(16, np.float32)
    for j in range(0, n, 16):
        if b is None:
            lanes = lanes + a[j : j + 16]
        else:  # fused: one rounding, as llvm.fma
            lanes = (lanes.astype(np.float64) + a[j : j + 16].astype(np.float64) * b[j : j + 16]).astype(np.float32)
    while lanes.size > 1:
        lanes = lanes[: lanes.size // 2] + lanes[lanes.size // 2 :]
    total = lanes[0]
    for j in range(n, a.size):
        total = np.float32(total + a[j]) if b is None else np.float32(np.float64(a[j]) * b[j] + total)
    return total


def _ordered_sums_ir(context, builder, rows, b, n):
    """The IR of _ordered_sum for several rows against one b (None: sums of the rows alone): rows and b are
    pointers to float32, n the length; returns one float32 value per row. The rows' running sums are independent
    (each row loads b's vector once for all of them)."""
    f32, intp = ir.FloatType(), context.get_value_type(types.intp)
    f16 = ir.VectorType(f32, 16)
    fma16 = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f16, [f16] * 3), "llvm.fma.v16f32")
    fma1 = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32] * 3), "llvm.fma.f32")

    def load(pointer, j, ty):
        return builder.load(builder.bitcast(builder.gep(pointer, [j]), ty.as_pointer()), align=4)

    def step(acc, x, y, fma):
        return builder.fadd(acc, x) if y is None else builder.call(fma, [x, y, acc])

    whole = builder.sub(n, builder.srem(n, ir.Constant(intp, 16)))
    lanes = [cgutils.alloca_once_value(builder, ir.Constant(f16, [0.0] * 16)) for _ in rows]
    with cgutils.for_range_slice(builder, ir.Constant(intp, 0), whole, ir.Constant(intp, 16)) as (j, _):
        vb = None if b is None else load(b, j, f16)
        for row, acc in zip(rows, lanes):
            builder.store(step(builder.load(acc), load(row, j, f16), vb, fma16), acc)
    totals = []
    for acc in lanes:
        v, width = builder.load(acc), 16
        while width > 1:  # halves: lanes k and k + width/2 added, a fixed tree
            half = width // 2
            lo, hi = (builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                               list(range(first, first + half))))
                      for first in (0, half))
            v, width = builder.fadd(lo, hi), half
        totals.append(cgutils.alloca_once_value(builder, builder.extract_element(v, ir.Constant(ir.IntType(32), 0))))
    with cgutils.for_range_slice(builder, whole, n, ir.Constant(intp, 1)) as (j, _):
        xb = None if b is None else load(b, j, f32)
        for row, total in zip(rows, totals):
            builder.store(step(builder.load(total), load(row, j, f32), xb, fma1), total)
    return [builder.load(total) for total in totals]


def _data(context, builder, ty, value):
    """A numba array's data pointer (inside an intrinsic's codegen)."""
    return context.make_array(ty)(context, builder, value).data


if config.DISABLE_JIT:
    _ordered_sum = _ordered_sum_python

    def _ordered_dot4(tile, i, x, cols):
        return tuple(_ordered_sum_python(tile[i + k, :cols], x[:cols]) for k in range(4))

else:

    @intrinsic
    def _ordered_sum(typingctx, a, b=types.none):
        """sum(a * b) (sum(a) where b is None) of contiguous float32 vectors, in one order on every CPU: sixteen
        running sums (lane k takes j = k, k + 16, ...; fused multiply-adds), halved pairwise into one, then the
        last a.size % 16 terms in turn. Written as <16 x float> IR, it is one 512-bit vector or two 256-bit ones,
        lane for lane the same arithmetic; JIT's fast-math lets LLVM reassociate nothing."""
        with_b = not isinstance(b, (types.NoneType, types.Omitted))

        def codegen(context, builder, signature, args):
            a_arr = context.make_array(signature.args[0])(context, builder, args[0])
            b_data = _data(context, builder, signature.args[1], args[1]) if with_b else None
            n = cgutils.unpack_tuple(builder, a_arr.shape, 1)[0]
            return _ordered_sums_ir(context, builder, [a_arr.data], b_data, n)[0]

        return types.float32(a, b), codegen

    @intrinsic
    def _ordered_dot4(typingctx, tile, i, x, cols):
        """Rows i..i+3 of a contiguous float32 tile against x[:cols], each in _ordered_sum's order (x's vectors
        loaded once for the four)."""

        def codegen(context, builder, signature, args):
            t = context.make_array(signature.args[0])(context, builder, args[0])
            row_stride = cgutils.unpack_tuple(builder, t.strides, 2)[0]
            rows = [_at(builder, t, builder.mul(builder.add(args[1], ir.Constant(args[1].type, k)), row_stride),
                        ir.FloatType()) for k in range(4)]
            x_data = _data(context, builder, signature.args[2], args[2])
            return context.make_tuple(builder, signature.return_type,
                                      _ordered_sums_ir(context, builder, rows, x_data, args[3]))

        return types.UniTuple(types.float32, 4)(tile, i, x, cols), codegen


@njit(**JIT)
def quantize_slices(x, tn, q):
    """q.values[t, c*tn + j] = round(x[t, c*tn + j] / q.scales[t, c]), scale = max|slice| / 127."""
    T, n = x.shape
    for t in range(T):
        for c in range(-(-n // tn)):
            # views, so that every index counts from 0: numba then skips the negative-index wraparound that keeps
            # LLVM from vectorising
            xs = x[t, c * tn : (c + 1) * tn]  # the last slice may be short
            vs = q.values[t, c * tn : (c + 1) * tn]
            peak = np.float32(0.0)
            for j in range(xs.size):
                peak = _fmax(peak, abs(xs[j]))
            scale = peak / np.float32(127.0) if peak > 0 else np.float32(1.0)
            inv = np.float32(1.0) / scale
            total = np.int32(0)
            for j in range(xs.size):
                v = np.int8(np.rint(xs[j] * inv))
                vs[j] = v
                total += np.int32(v)
            vs[xs.size :] = 0
            q.scales[t, c] = scale
            q.sums[t, c] = total


def _at(builder, array, offset, ty):
    """Pointer to a `ty` `offset` bytes into a numba array's data (inside an intrinsic's codegen)."""
    i8p = ir.IntType(8).as_pointer()
    return builder.bitcast(builder.gep(builder.bitcast(array.data, i8p), [offset]), ty.as_pointer())


def _sum(builder, terms):
    """terms[0] + terms[1] + ... as integer adds (inside an intrinsic's codegen)."""
    total = terms[0]
    for term in terms[1:]:
        total = builder.add(total, term)
    return total


def _lane_sums(builder, vectors, width=16):
    """One <16 x i32> whose lane k is the sum of vectors[k]'s 16 lanes (at most 16 vectors, a power of two); with
    width 8, of the 8-lane halves of vectors[k // 2] (two sums a vector, at most 8 vectors).

    Pairs are halved together, two permutes and one add per pair and level, rather than a full horizontal
    reduction (a chain of about nine instructions) per vector: with tile rows of a few 64-byte vectors the sums
    are a large part of the work. Integer sums are exact in any order."""
    groups = [(v, 16 // width) for v in vectors]  # (vector, sums it holds): sum o spread over `width` lanes
    while width > 1:
        half, merged = width // 2, []
        for k in range(0, len(groups), 2):
            pair = groups[k : k + 2]  # a lone group is halved on its own
            lo = [s * 16 + o * width + lane for s, (_, held) in enumerate(pair) for o in range(held)
                  for lane in range(half)]
            hi = [i + half for i in lo]
            a, b = pair[0][0], pair[-1][0]
            mask = [ir.Constant(ir.VectorType(ir.IntType(32), 16), m + [0] * (16 - len(m))) for m in (lo, hi)]
            merged.append((builder.add(builder.shuffle_vector(a, b, mask[0]), builder.shuffle_vector(a, b, mask[1])),
                           sum(held for _, held in pair)))
        groups, width = merged, half
    return groups[0][0]


@intrinsic
def _vnni_rows(typingctx, y, tiles, scale, values, sums, scales, r, i, t, tokens, rows):
    """_rows_widened on vpdpbusd: rows i..i+rows-1 of PE row r for `tokens` tokens from t, written to y; `tokens`
    x `rows` is a compile-time 4 x 4 (four tokens in flight) or 1 x 8 (one token, as decode). Tile rows must be
    whole 64-byte vectors.

    vpdpbusd multiplies unsigned by signed bytes, so each weight's sign bit is flipped (w ^ 0x80 == w + 128 as an
    unsigned byte) and 128 * sum(x) is subtracted from the dot product. Each weight vector is loaded and flipped
    once for all the tokens, each x vector once for all the rows: 16 integer accumulators at most, of the 32 zmm
    registers. A lone token takes eight rows, so that eight independent accumulation chains hide vpdpbusd's
    latency (with four, a decode step's matmul waited on them). The float steps are _rows_widened's, lane by lane:
    acc = fma(sum, x_scale, acc) per slice in PE column order, then y = acc * scale, so every host and every
    token count gives the same bits.
    """
    if not (isinstance(tokens, types.IntegerLiteral) and isinstance(rows, types.IntegerLiteral)):
        return None
    count, height = tokens.literal_value, rows.literal_value
    sig = types.none(y, tiles, scale, values, sums, scales, r, i, t, tokens, rows)

    def codegen(context, builder, signature, args):
        y_arr, w_arr, scale_arr, x_arr, sums_arr, scales_arr = (
            context.make_array(ty)(context, builder, value) for ty, value in zip(signature.args[:6], args[:6]))
        r, i, t = args[6:9]
        intp, i32, f32 = context.get_value_type(types.intp), ir.IntType(32), ir.FloatType()
        i8p = ir.IntType(8).as_pointer()
        v16, f16 = ir.VectorType(i32, 16), ir.VectorType(f32, 16)  # 64 bytes
        module = builder.module
        dot = cgutils.get_or_insert_function(module, ir.FunctionType(v16, [v16, v16, v16]),
                                             "llvm.x86.avx512.vpdpbusd.512")
        fma = cgutils.get_or_insert_function(module, ir.FunctionType(f16, [f16, f16, f16]), "llvm.fma.v16f32")
        prefetch = cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                                  "llvm.prefetch.p0i8")
        fr, br = ir.VectorType(f32, height), ir.VectorType(ir.IntType(1), height)  # one token's rows
        masked_load = cgutils.get_or_insert_function(
            module, ir.FunctionType(fr, [fr.as_pointer(), i32, br, fr]), f"llvm.masked.load.v{height}f32.p0v{height}f32")
        masked_store = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [fr, fr.as_pointer(), i32, br]),
            f"llvm.masked.store.v{height}f32.p0v{height}f32")

        def const(k, ty=intp):
            return ir.Constant(ty, k)

        def add(*terms):
            return _sum(builder, terms)

        _, slices, tm, tn = cgutils.unpack_tuple(builder, w_arr.shape, 4)
        w_stride = cgutils.unpack_tuple(builder, w_arr.strides, 4)  # bytes per PE row, tile, tile row
        x_stride = cgutils.unpack_tuple(builder, x_arr.strides, 2)[0]
        meta_stride = cgutils.unpack_tuple(builder, sums_arr.strides, 2)[0]  # sums and scales: [T, slices]
        y_stride = cgutils.unpack_tuple(builder, y_arr.strides, 2)[0]
        row = builder.add(builder.mul(r, tm), i)
        left = builder.sub(cgutils.unpack_tuple(builder, y_arr.shape, 2)[1], row)  # rows the matrix has (>= 1)
        mask = ir.Constant(br, None)
        for k in range(height):
            mask = builder.insert_element(mask, builder.icmp_signed(">", left, const(k)), const(k, i32))
        flip = ir.Constant(v16, [-0x7F7F7F80] * 16)  # 0x80808080
        acc = cgutils.alloca_once_value(builder, ir.Constant(f16, [0.0] * 16))  # lane height j + k: token t+j, row k
        dots = [cgutils.alloca_once(builder, v16) for _ in range(height * count)]
        with cgutils.for_range(builder, slices) as slice_loop:  # the reduction along the PE row, in order
            c = slice_loop.index
            for d in dots:
                builder.store(ir.Constant(v16, [0] * 16), d)
            w_tile = add(builder.mul(r, w_stride[0]), builder.mul(c, w_stride[1]), builder.mul(i, w_stride[2]))
            x_slice = add(builder.mul(t, x_stride), builder.mul(c, tn))
            with cgutils.for_range(builder, builder.udiv(tn, const(64))) as loop:
                offset = builder.mul(loop.index, const(64))
                xs = [builder.load(_at(builder, x_arr, add(x_slice, builder.mul(x_stride, const(j)), offset), v16), align=1)
                      for j in range(count)]
                for k in range(height):
                    w_row = add(w_tile, builder.mul(w_stride[2], const(k)), offset)
                    # the same bytes 16 rows on: a read hint for DRAM latency (8 and 32 rows measured slower),
                    # harmless past the tile's end (a prefetch never faults)
                    ahead = builder.add(w_row, builder.mul(w_stride[2], const(16)))
                    builder.call(prefetch, [_at(builder, w_arr, ahead, ir.IntType(8)), const(0, i32), const(3, i32),
                                            const(1, i32)])
                    wv = builder.xor(builder.load(_at(builder, w_arr, w_row, v16), align=1), flip)
                    for j, xv in enumerate(xs):
                        d = dots[height * j + k]
                        builder.store(builder.call(dot, [builder.load(d), wv, xv]), d)
            total = _lane_sums(builder, [builder.load(d) for d in dots])
            # each token's 128 * sum(x) and x scale, spread over its rows' lanes: one shuffle, not a lane at a time
            x_sums, x_scales = ir.Constant(ir.VectorType(i32, count), None), ir.Constant(ir.VectorType(f32, count), None)
            for j in range(count):
                meta = add(builder.mul(builder.add(t, const(j)), meta_stride), builder.mul(c, const(4)))
                x_sums = builder.insert_element(x_sums, builder.load(_at(builder, sums_arr, meta, i32)), const(j, i32))
                x_scales = builder.insert_element(x_scales, builder.load(_at(builder, scales_arr, meta, f32)),
                                                  const(j, i32))
            spread = ir.Constant(v16, [min(lane // height, count - 1) for lane in range(16)])
            bias = builder.mul(builder.shuffle_vector(x_sums, x_sums, spread), ir.Constant(v16, [128] * 16))
            x_scale = builder.shuffle_vector(x_scales, x_scales, spread)
            exact = builder.sitofp(builder.sub(total, bias), f16)
            builder.store(builder.call(fma, [exact, x_scale, builder.load(acc)]), acc)
        row_scale = builder.call(masked_load, [_at(builder, scale_arr, builder.mul(row, const(4)), fr), const(4, i32),
                                               mask, ir.Constant(fr, None)])
        out = builder.load(acc)
        for j in range(count):
            part = builder.shuffle_vector(out, out, ir.Constant(ir.VectorType(i32, height),
                                                                [height * j + k for k in range(height)]))
            y_row = _at(builder, y_arr, add(builder.mul(builder.add(t, const(j)), y_stride), builder.mul(row, const(4))), fr)
            builder.call(masked_store, [builder.fmul(part, row_scale), y_row, const(4, i32), mask])
        return context.get_dummy_value()

    return sig, codegen


def _transpose16(builder, vectors):
    """The 16 x 16 matrix whose rows are `vectors` (16 lanes each), transposed: the off-diagonal h x h blocks of
    every 2h x 2h block swapped, h = 8, 4, 2, 1 (16 two-vector shuffles each)."""
    rows = list(vectors)
    i32 = ir.IntType(32)
    for h in (8, 4, 2, 1):
        first = [lane if lane % (2 * h) < h else 16 + lane - h for lane in range(16)]
        second = [lane + h if lane % (2 * h) < h else 16 + lane for lane in range(16)]
        masks = [ir.Constant(ir.VectorType(i32, 16), m) for m in (first, second)]
        for m in range(16):
            if (m // h) % 2 == 0:
                a, b = rows[m], rows[m + h]
                rows[m], rows[m + h] = (builder.shuffle_vector(a, b, masks[0]), builder.shuffle_vector(a, b, masks[1]))
    return rows


@intrinsic
def _amx_rows(typingctx, y, tiles, scale, blocks, block_scales, r, i, count):
    """Rows i..i+15 of PE row r for tokens 0 .. 16 count - 1, on AMX tiles: per token block and PE column slice,
    tdpbssd forms the exact integer dot products of 16 rows with 16 tokens (signed by signed bytes, 64 at a
    time), then each is scaled as in _vnni_rows, lane by lane: acc = fma(sum, x_scale, acc) per slice in PE column
    order, y = acc * scale; so a token gets the same bits here, in four, or alone. Needs tm a multiple of 16 and
    tile rows of whole 64-byte vectors. The tile registers are configured here (per thread) and released.

    The product tile holds [row][token]: the sums and the x scales are applied along tokens, and the 16 x 16 block
    is transposed once, before the rows of y are written."""
    sig = types.none(y, tiles, scale, blocks, block_scales, r, i, count)

    def codegen(context, builder, signature, args):
        y_arr, w_arr, scale_arr, xb_arr, xs_arr = (
            context.make_array(ty)(context, builder, value) for ty, value in zip(signature.args[:5], args[:5]))
        r, i, count = args[5:8]
        intp, i8, i32, i64, f32 = (context.get_value_type(types.intp), ir.IntType(8), ir.IntType(32), ir.IntType(64),
                                   ir.FloatType())
        i8p, void = i8.as_pointer(), ir.VoidType()
        v16, f16, b16 = ir.VectorType(i32, 16), ir.VectorType(f32, 16), ir.VectorType(ir.IntType(1), 16)
        module = builder.module

        def fn(name, ret, *params):
            return cgutils.get_or_insert_function(module, ir.FunctionType(ret, list(params)), name)

        ldtilecfg, tilerelease = fn("llvm.x86.ldtilecfg", void, i8p), fn("llvm.x86.tilerelease", void)
        tilezero = fn("llvm.x86.tilezero", void, i8)
        tileload, tilestore = fn("llvm.x86.tileloadd64", void, i8, i8p, i64), fn("llvm.x86.tilestored64", void, i8, i8p, i64)
        dot = fn("llvm.x86.tdpbssd", void, i8, i8, i8)
        fma = fn("llvm.fma.v16f32", f16, f16, f16, f16)
        masked_load = fn("llvm.masked.load.v16f32.p0v16f32", f16, f16.as_pointer(), i32, b16, f16)
        masked_store = fn("llvm.masked.store.v16f32.p0v16f32", void, f16, f16.as_pointer(), i32, b16)

        def const(k, ty=intp):
            return ir.Constant(ty, k)

        def add(*terms):
            return _sum(builder, terms)

        # palette 1; tile 0: the 16 x 16 int32 product, 1: 16 weight rows x 64 bytes, 2: 16 k-quads x 16 tokens
        config_bytes = [0] * 64
        config_bytes[0] = 1
        for t in range(3):
            config_bytes[16 + 2 * t] = 64  # bytes per row (little-endian uint16)
            config_bytes[48 + t] = 16  # rows
        tile_config = cgutils.alloca_once(builder, ir.ArrayType(i8, 64))
        builder.store(ir.Constant(ir.ArrayType(i8, 64), config_bytes), tile_config)
        product = cgutils.alloca_once(builder, ir.ArrayType(i32, 256))  # the product tile, stored
        builder.call(ldtilecfg, [builder.bitcast(tile_config, i8p)])

        _, slices, tm, tn = cgutils.unpack_tuple(builder, w_arr.shape, 4)
        w_stride = cgutils.unpack_tuple(builder, w_arr.strides, 4)
        xb_stride = cgutils.unpack_tuple(builder, xb_arr.strides, 3)
        xs_stride = cgutils.unpack_tuple(builder, xs_arr.strides, 3)
        y_stride = cgutils.unpack_tuple(builder, y_arr.strides, 2)[0]
        row = builder.add(builder.mul(r, tm), i)
        left = builder.sub(cgutils.unpack_tuple(builder, y_arr.shape, 2)[1], row)  # rows the matrix has from row
        lanes = ir.Constant(ir.VectorType(intp, 16), list(range(16)))
        splat_left = builder.shuffle_vector(builder.insert_element(ir.Constant(ir.VectorType(intp, 16), None), left,
                                                                   const(0, i32)),
                                            ir.Constant(ir.VectorType(intp, 16), None), ir.Constant(v16, [0] * 16))
        mask = builder.icmp_signed("<", lanes, splat_left)
        row_scale = builder.call(masked_load, [_at(builder, scale_arr, builder.mul(row, const(4)), f16), const(4, i32),
                                               mask, ir.Constant(f16, [0.0] * 16)])
        accs = [cgutils.alloca_once(builder, f16) for _ in range(16)]  # acc[m]: row m, lanes are tokens
        w_base = add(builder.mul(r, w_stride[0]), builder.mul(i, w_stride[2]))
        with cgutils.for_range(builder, count) as block_loop:
            b = block_loop.index
            for acc in accs:
                builder.store(ir.Constant(f16, [0.0] * 16), acc)
            with cgutils.for_range(builder, slices) as slice_loop:  # the reduction along the PE row, in order
                c = slice_loop.index
                builder.call(tilezero, [const(0, i8)])
                with cgutils.for_range(builder, builder.udiv(tn, const(64))) as k_loop:
                    offset = builder.mul(k_loop.index, const(64))
                    weights = add(w_base, builder.mul(c, w_stride[1]), offset)
                    builder.call(tileload, [const(1, i8), _at(builder, w_arr, weights, i8), w_stride[2]])
                    quads = builder.udiv(add(builder.mul(c, tn), offset), const(4))
                    x_at = add(builder.mul(b, xb_stride[0]), builder.mul(quads, xb_stride[1]))
                    builder.call(tileload, [const(2, i8), _at(builder, xb_arr, x_at, i8), xb_stride[1]])
                    builder.call(dot, [const(0, i8), const(1, i8), const(2, i8)])
                builder.call(tilestore, [const(0, i8), builder.bitcast(product, i8p), const(64, i64)])
                x_scale = builder.load(_at(builder, xs_arr, add(builder.mul(b, xs_stride[0]),
                                                                builder.mul(c, xs_stride[1])), f16), align=4)
                for m, acc in enumerate(accs):
                    sums = builder.load(builder.bitcast(builder.gep(product, [const(0, i32), const(16 * m, i32)]),
                                                        v16.as_pointer()), align=4)
                    builder.store(builder.call(fma, [builder.sitofp(sums, f16), x_scale, builder.load(acc)]), acc)
            by_token = _transpose16(builder, [builder.load(acc) for acc in accs])
            for n, values in enumerate(by_token):
                token = builder.add(builder.mul(b, const(16)), const(n))
                y_row = _at(builder, y_arr, add(builder.mul(token, y_stride), builder.mul(row, const(4))), f16)
                builder.call(masked_store, [builder.fmul(values, row_scale), y_row, const(4, i32), mask])
        builder.call(tilerelease, [])
        return context.get_dummy_value()

    return sig, codegen


@njit(**JIT)
def interleave_blocks(q, first, end, slices, tn):
    """q.blocks and q.block_scales for blocks first..end-1 (tokens 16 first .. 16 end - 1) of q, quantized in
    `slices` slices of tn: AMX multiplies 16 tokens at a time and reads each token's bytes in fours, token beside
    token."""
    quads = q.values.view(np.int32)
    for b in range(first, end):
        for n in range(AMX_TOKENS):
            t = AMX_TOKENS * b + n
            for g in range(slices * tn // 4):
                q.blocks[b, g, n] = quads[t, g]
            for c in range(slices):
                q.block_scales[b, c, n] = q.scales[t, c]


@njit(inline="always", **JIT)
def _dot4_widened(tile, i, xq):
    """Exact integer dot products of tile rows i..i+3 with the int8 slice xq: summed in int32 (integer sums
    vectorise in any order, and are exact), returned as float32 (|sum| <= 512 * 127 * 127 < 2**24, exact too)."""
    w0, w1, w2, w3 = tile[i], tile[i + 1], tile[i + 2], tile[i + 3]
    a0 = a1 = a2 = a3 = np.int32(0)
    for j in range(tile.shape[1]):
        xj = np.int32(xq[j])
        a0 += np.int32(w0[j]) * xj
        a1 += np.int32(w1[j]) * xj
        a2 += np.int32(w2[j]) * xj
        a3 += np.int32(w3[j]) * xj
    return np.float32(a0), np.float32(a1), np.float32(a2), np.float32(a3)


@njit(inline="always", **JIT)
def _rows_widened(y, tiles, scale, q, r, i, t, tokens):
    """y[t..t+tokens-1, row..row+3] for rows i..i+3 of PE row r (row = r*tm + i): per token, the exact integer
    dot products of each PE column's tile with its slice, times the slice's scale, summed along the PE row in
    column order, times the row's scale. Portable; _vnni_rows computes the same."""
    tm, tn = tiles.shape[2], tiles.shape[3]
    row = r * tm + i
    for j in range(t, t + tokens):
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for c in range(tiles.shape[1]):
            p0, p1, p2, p3 = _dot4_widened(tiles[r, c], i, q.values[j, c * tn : (c + 1) * tn])
            x_scale = q.scales[j, c]
            a0 = _fma(p0, x_scale, a0)  # fused, as _vnni_rows and _amx_rows scale a slice's sum
            a1 = _fma(p1, x_scale, a1)
            a2 = _fma(p2, x_scale, a2)
            a3 = _fma(p3, x_scale, a3)
        _store4(y, j, row, a0, a1, a2, a3, scale)


@njit(inline="always", **JIT)
def _store4(y, t, row, a0, a1, a2, a3, scale):
    """y[t, row..row+3] = (a0..a3) * scale[row..], for the rows the matrix has."""
    m = y.shape[1]
    y[t, row] = a0 * scale[row]
    if row + 1 < m:
        y[t, row + 1] = a1 * scale[row + 1]
    if row + 2 < m:
        y[t, row + 2] = a2 * scale[row + 2]
    if row + 3 < m:
        y[t, row + 3] = a3 * scale[row + 3]


if HOST_AMX:

    @njit(inline="always", **JIT)
    def _amx_ready(T, tiles):
        """Whether a matmul of T tokens runs its blocks of 16 tokens on AMX tiles."""
        return T >= AMX_TOKENS and tiles.shape[2] % 16 == 0 and tiles.shape[3] % 64 == 0

    @njit(inline="always", **JIT)
    def _amx_block_rows(y, tiles, scale, q, r, i, blocks):
        _amx_rows(y, tiles, scale, q.blocks, q.block_scales, r, i, blocks)

else:  # the tile instructions are not even compiled where the host lacks them

    @njit(inline="always", **JIT)
    def _amx_ready(T, tiles):
        return False

    @njit(inline="always", **JIT)
    def _amx_block_rows(y, tiles, scale, q, r, i, blocks):
        pass


if HOST_VNNI:

    @njit(inline="always", **JIT)
    def _four_tokens(y, tiles, scale, q, r, i, t):
        """y for rows i..i+3 of PE row r and tokens t..t+3."""
        if tiles.shape[3] % 64 == 0:  # whole 64-byte vectors: tile_shape makes int8 tiles so
            _vnni_rows(y, tiles, scale, q.values, q.sums, q.scales, r, i, t, 4, 4)
        else:
            _rows_widened(y, tiles, scale, q, r, i, t, 4)

    @njit(inline="always", **JIT)
    def _one_token(y, tiles, scale, q, r, i, t):
        """y for rows i..i+7 of PE row r (those the matrix has) and token t."""
        if tiles.shape[3] % 64 == 0:
            _vnni_rows(y, tiles, scale, q.values, q.sums, q.scales, r, i, t, 1, 8)
        else:
            _one_token_widened(y, tiles, scale, q, r, i, t)

else:

    @njit(inline="always", **JIT)
    def _four_tokens(y, tiles, scale, q, r, i, t):
        _rows_widened(y, tiles, scale, q, r, i, t, 4)

    @njit(inline="always", **JIT)
    def _one_token(y, tiles, scale, q, r, i, t):
        _one_token_widened(y, tiles, scale, q, r, i, t)


@njit(inline="always", **JIT)
def _one_token_widened(y, tiles, scale, q, r, i, t):
    _rows_widened(y, tiles, scale, q, r, i, t, 1)
    if r * tiles.shape[2] + i + 4 < y.shape[1]:
        _rows_widened(y, tiles, scale, q, r, i + 4, t, 1)


@njit(inline="always", **JIT)
def _rows_float(y, tiles, scale, x, r, i, t):
    """y[t, row..row+3] for rows i..i+3 of PE row r (row = r*tm + i) of float tiles: each PE column's partial
    products with its slice of x, summed along the PE row in column order, times the row's scale."""
    n = x.shape[1]
    gc, tm, tn = tiles.shape[1], tiles.shape[2], tiles.shape[3]
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for c in range(gc):  # the reduction along PE row r
        j0 = c * tn
        cols = min(tn, n - j0)
        p0, p1, p2, p3 = _ordered_dot4(tiles[r, c], i, x[t, j0 : j0 + cols], cols)
        a0 += p0
        a1 += p1
        a2 += p2
        a3 += p3
    _store4(y, t, r * tm + i, a0, a1, a2, a3, scale)


@njit(inline="always", **JIT)
def _float_units(x, tiles, scale, y, first, end):
    """matmul_rows for float tiles: units of eight rows, token by token."""
    T, m = x.shape[0], y.shape[1]
    tm = tiles.shape[2]
    per_row = tm // 8  # units per PE row
    for g in range(first, end):
        r, i0 = g // per_row, 8 * (g % per_row)
        for i in range(i0, i0 + 8, 4):
            if r * tm + i < m:
                for t in range(T):
                    _rows_float(y, tiles, scale, x, r, i, t)


@njit(inline="always", **JIT)
def _int8_units(tiles, scale, y, q, T, first, end):
    """matmul_rows for int8 tiles (x already quantized into q, and interleaved where AMX runs): where the host
    has AMX, tokens go sixteen at a time through tile products of 16 rows (prefill, verification); the rest four
    at a time, so each weight vector is loaded once for four tokens, and the last one at a time, as decode, eight
    rows at once. Every way, a token's exact integer sums are scaled and reduced along the PE row in the same
    order, with the same operations: its outputs are bit for bit the same whether it came alone or with others
    (speculative decoding compares a verified draft with what decode would have chosen)."""
    m = y.shape[1]
    tm = tiles.shape[2]
    amx = _amx_ready(T, tiles)
    on_amx = T - T % AMX_TOKENS if amx else 0  # tokens that go sixteen at a time, on AMX tiles
    blocked = T - (T - on_amx) % 4  # and up to here, four at a time
    rows = 16 if amx else 8
    per_row = tm // rows
    for g in range(first, end):
        r, i0 = g // per_row, rows * (g % per_row)
        if r * tm + i0 >= m:
            continue
        if amx:
            _amx_block_rows(y, tiles, scale, q, r, i0, on_amx // AMX_TOKENS)
        for i in range(i0, i0 + rows, 4):
            if r * tm + i < m:
                for t in range(on_amx, blocked, 4):
                    _four_tokens(y, tiles, scale, q, r, i, t)
        for i in range(i0, i0 + rows, 8):
            if r * tm + i < m:
                for t in range(blocked, T):
                    _one_token(y, tiles, scale, q, r, i, t)


# A matmul in three steps, so that a caller can split each among threads its own way (forward.py claims units
# of rows): prepare_input (per token), interleave_input (per block of 16 tokens), matmul_rows (per unit of rows).
# Each dispatches on the tiles' dtype (int8, fp32, or uint8: a matrix of GGUF block tiles, block_matrix.py): in
# numba code once, at compile time (the overloads); the bodies are what runs under NUMBA_DISABLE_JIT. unit_rows says
# which output rows a span of units forms.


def prepare_input(x, tiles, q):
    """x[T, n] as int8 tiles' PEs receive it: quantized per PE column slice into q (nothing for float tiles)."""
    if tiles.dtype == np.int8:
        quantize_slices(x, tiles.shape[3], q)
    elif tiles.dtype == np.uint8:
        _blocks().prepare(x, tiles, q)


def interleave_input(T, tiles, q, first, end):
    """Blocks first..end-1 of 16 tokens of the prepared input, interleaved for AMX where a matmul of T tokens
    runs on it (nothing otherwise)."""
    if tiles.dtype == np.int8 and _amx_ready(T, tiles):
        interleave_blocks(q, first, end, tiles.shape[1], tiles.shape[3])


def matmul_units(T, tiles) -> int:
    """Units of rows a matmul of T tokens is split into: 16 rows where AMX runs (tm is then a multiple of 16),
    else 8 (tm always is a multiple of 8). Unit g holds rows 16 g .. or 8 g .. of the matrix."""
    if tiles.dtype == np.uint8:
        return _blocks().units(tiles)
    if tiles.dtype == np.int8 and _amx_ready(T, tiles):
        return tiles.shape[0] * (tiles.shape[2] // 16)
    return tiles.shape[0] * (tiles.shape[2] // 8)


def unit_rows(T, tiles, first, end, m):
    """Rows [lo, hi) of the m the matrix has that units first..end-1 of a matmul of T tokens form."""
    if tiles.dtype == np.uint8:
        return _blocks().unit_rows(tiles, first, end)
    per_unit = tiles.shape[0] * tiles.shape[2] // matmul_units(T, tiles)
    return first * per_unit, min(end * per_unit, m)


def matmul_rows(x, tiles, scale, y, q, first, end):
    """y[T, rows of units first..end-1] = (x W.T) * scale for those rows, x prepared (and interleaved) in q."""
    if tiles.dtype == np.int8:
        _int8_units(tiles, scale, y, q, x.shape[0], first, end)
    elif tiles.dtype == np.uint8:
        _blocks().matmul_rows(tiles, y, q, first, end)
    else:
        _float_units(x, tiles, scale, y, first, end)


def _blocks():
    """block_matrix.py: a uint8 matrix is GGUF block tiles (dtype "auto"); imported when first asked for (it
    imports this module)."""
    from . import block_matrix

    return block_matrix


@overload(prepare_input, jit_options=JIT)
def _prepare_input_by_dtype(x, tiles, q):
    if tiles.dtype == types.int8:
        return lambda x, tiles, q: quantize_slices(x, tiles.shape[3], q)
    if tiles.dtype == types.uint8:
        prepare = _blocks().prepare
        return lambda x, tiles, q: prepare(x, tiles, q)
    return lambda x, tiles, q: None


@overload(interleave_input, jit_options=JIT)
def _interleave_input_by_dtype(T, tiles, q, first, end):
    if tiles.dtype == types.int8:
        def interleave(T, tiles, q, first, end):
            if _amx_ready(T, tiles):
                interleave_blocks(q, first, end, tiles.shape[1], tiles.shape[3])
        return interleave
    return lambda T, tiles, q, first, end: None


@overload(matmul_units, jit_options=JIT)
def _matmul_units_by_dtype(T, tiles):
    if tiles.dtype == types.uint8:
        units = _blocks().units
        return lambda T, tiles: units(tiles)
    if tiles.dtype == types.int8:
        return lambda T, tiles: tiles.shape[0] * (tiles.shape[2] // (16 if _amx_ready(T, tiles) else 8))
    return lambda T, tiles: tiles.shape[0] * (tiles.shape[2] // 8)


@overload(matmul_rows, jit_options=JIT)
def _matmul_rows_by_dtype(x, tiles, scale, y, q, first, end):
    if tiles.dtype == types.int8:
        return lambda x, tiles, scale, y, q, first, end: _int8_units(tiles, scale, y, q, x.shape[0], first, end)
    if tiles.dtype == types.uint8:
        rows = _blocks().matmul_rows
        return lambda x, tiles, scale, y, q, first, end: rows(tiles, y, q, first, end)
    return lambda x, tiles, scale, y, q, first, end: _float_units(x, tiles, scale, y, first, end)


@overload(unit_rows, jit_options=JIT)
def _unit_rows_by_dtype(T, tiles, first, end, m):
    if tiles.dtype == types.uint8:
        rows = _blocks().unit_rows
        return lambda T, tiles, first, end, m: rows(tiles, first, end)

    def rows_of(T, tiles, first, end, m):
        per_unit = tiles.shape[0] * tiles.shape[2] // matmul_units(T, tiles)
        return first * per_unit, min(end * per_unit, m)
    return rows_of


@njit(**JIT)
def tiled_matmul(x, tiles, scale, y, q):
    """y[T, m] = (x[T, n] @ W[m, n].T) * scale[m], with W held as PE tiles[gr, gc, tm, tn]; q: Quantized buffers
    for int8 tiles.

    PE (r, c) holds W[r*tm:(r+1)*tm, c*tn:(c+1)*tn]. Slice c of x is broadcast down PE column c, every PE forms
    its partial products, and the partial sums of PE row r are reduced along the row into y's slice r. int8 tiles
    meet x quantized per PE column slice: exact integer sums, scaled by the slice's scale and the output row's
    scale. Decode is the T = 1 case. Where the time goes: matmul_rows. The whole product on one thread: the
    forward pass splits the same three steps among its workers (forward.py).
    """
    T = x.shape[0]
    prepare_input(x, tiles, q)
    interleave_input(T, tiles, q, 0, T // AMX_TOKENS)
    matmul_rows(x, tiles, scale, y, q, 0, matmul_units(T, tiles))


def embed_rows(tokens, tiles, scale, out):
    """out[t] = W[tokens[t]] * scale[tokens[t]]: rows of a [vocab, d] matrix held as PE tiles; of a block matrix
    (uint8, block_matrix.py: its scales in its blocks, `scale` unused), the rows gguf.quants.dequantize gives."""
    if tiles.dtype == np.uint8:
        _blocks().embed_rows(tokens, tiles, out)
    else:
        _embed_tile_rows(tokens, tiles, scale, out)


@overload(embed_rows, jit_options=JIT)
def _embed_rows_by_dtype(tokens, tiles, scale, out):
    if tiles.dtype == types.uint8:
        rows = _blocks().embed_rows
        return lambda tokens, tiles, scale, out: rows(tokens, tiles, out)
    return lambda tokens, tiles, scale, out: _embed_tile_rows(tokens, tiles, scale, out)


@njit(**JIT)
def _embed_tile_rows(tokens, tiles, scale, out):
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
        ss = _ordered_sum(x[t], x[t])
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


LANES = 16  # float32 in a 64-byte vector: the caches are cut into blocks of 16 positions or dimensions


# The KV cache holds fp32 or fp16 numbers. Numba has no float16 on the CPU, so an fp16 cache is a uint16 array of
# IEEE half-precision bit patterns: store_kv rounds each number to nearest even (vcvtps2ph), attention widens the
# vectors it loads back to fp32 (vcvtph2ps) and computes in fp32. Late in a long prompt a decode step reads as many
# bytes of cache as of weights; fp16 halves them.
KV_DTYPES = {"fp32": np.float32, "fp16": np.uint16}


if config.DISABLE_JIT:

    def _to_cache(value, cache):
        return np.float32(value).astype(np.float16).view(np.uint16) if cache.dtype == np.uint16 else value

else:

    @intrinsic
    def _to_cache(typingctx, value, cache):
        """A float32 as the cache's dtype holds it: itself, or its fp16 bit pattern in a uint16."""
        half = cache.dtype == types.uint16

        def codegen(context, builder, signature, args):
            if not half:
                return args[0]
            return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

        return (types.uint16 if half else types.float32)(value, cache), codegen


@njit(**JIT)
def store_kv(k, v, k_cache, v_cache, start):
    """Write the new keys and values k, v[T, kv_heads*head_dim] at positions start.. of the caches, laid out
    for causal_attention: keys in blocks of LANES positions, each block dimension-major, k_cache [kv_heads,
    context/LANES, head_dim, LANES]; values in blocks of LANES dimensions, v_cache [kv_heads, head_dim/LANES
    (rounded up), context, LANES]. fp32 or fp16 caches (KV_DTYPES)."""
    T = k.shape[0]
    kv_heads, _, head_dim, _ = k_cache.shape
    for t in range(T):
        p = start + t
        for h in range(kv_heads):
            for e in range(head_dim):
                k_cache[h, p // LANES, e, p % LANES] = _to_cache(k[t, h * head_dim + e], k_cache)
                v_cache[h, e // LANES, p, e % LANES] = _to_cache(v[t, h * head_dim + e], v_cache)


if config.DISABLE_JIT:
    _exp = np.exp
else:

    @intrinsic
    def _exp(typingctx, x):
        """e**x of a float32 (Cephes' expf: 2**n * a degree-7 polynomial, within 2 ulp), for x clamped to
        [-87, 88.7]: the result is never subnormal (arithmetic on subnormals costs ~100 cycles on x86). Plain
        arithmetic, so a loop over it vectorises, where np.exp calls libm once per element."""
        sig = types.float32(types.float32)

        def codegen(context, builder, signature, args):
            f32, i32 = ir.FloatType(), ir.IntType(32)
            module = builder.module

            def intrinsic_call(name, *operands):
                fn = cgutils.get_or_insert_function(module, ir.FunctionType(f32, [f32] * len(operands)), name)
                return builder.call(fn, list(operands))

            def const(value):
                return ir.Constant(f32, value)

            x = intrinsic_call("llvm.maxnum.f32", intrinsic_call("llvm.minnum.f32", args[0], const(88.72283)),
                               const(-87.0))
            n = intrinsic_call("llvm.rint.f32", builder.fmul(x, const(1.442695040888963)))  # x / ln 2
            r = intrinsic_call("llvm.fma.f32", n, const(-0.693359375), x)  # x - n ln 2, ln 2 in two parts
            r = intrinsic_call("llvm.fma.f32", n, const(2.12194440e-4), r)
            p = const(1.9875691500e-4)
            for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
                p = intrinsic_call("llvm.fma.f32", p, r, const(c))
            y = builder.fadd(intrinsic_call("llvm.fma.f32", p, builder.fmul(r, r), r), const(1.0))
            exponent = builder.shl(builder.add(builder.fptosi(n, i32), ir.Constant(i32, 127)), ir.Constant(i32, 23))
            return builder.fmul(y, builder.bitcast(exponent, f32))  # y * 2**n

        return sig, codegen


if config.DISABLE_JIT:

    def _weighted_rows(a, b, c, scale, rows):  # the intrinsic below, as plain Python
        for j in range(rows):
            c[j] = 0.0
            for k in range(b.shape[1]):
                row = b[:, k].reshape(-1)[: c.shape[1]]
                if row.dtype == np.uint16:  # an fp16 cache
                    row = row.view(np.float16).astype(np.float32)
                c[j] += (a[j, k] * scale) * row

else:

    @intrinsic
    def _weighted_rows(typingctx, a, b, c, scale, rows):
        """c[j, :] = sum over k of (a[j, k] * scale) * row k of b, k in order, for j < rows (a compile-time
        constant, 1 or 4); b [blocks, K, LANES] holds row k's columns LANES at a time (column LANES i + l is
        b[i, k, l]), c [rows, width] gets the first `width` of them. b is float32, or fp16 bits (uint16) that each
        load widens to float32.

        Accumulated by fma in zmm registers (8 blocks of columns for one row, 4 for each of four): each vector of
        b is loaded once for all the rows. What is left after the widest passes goes in passes half as wide, and
        so on down to one block, so that only a last, partial block is masked: attention's 64-wide output as one
        pass of 8 masked blocks, half of them empty, took ~22 cycles a position; as a pass of 4, ~6. Every
        c[j, col] gets the same operations in the same order whatever `rows` is and however passes are cut."""
        if not isinstance(rows, types.IntegerLiteral):
            return None
        count = rows.literal_value
        sig = types.none(a, b, c, scale, rows)

        def codegen(context, builder, signature, args):
            a_arr, b_arr, c_arr = (context.make_array(ty)(context, builder, value)
                                   for ty, value in zip(signature.args[:3], args[:3]))
            scale = args[3]
            intp, i32, f32 = context.get_value_type(types.intp), ir.IntType(32), ir.FloatType()
            f16, m16, n16 = ir.VectorType(f32, 16), ir.VectorType(ir.IntType(1), 16), ir.VectorType(intp, 16)
            module = builder.module
            fma = cgutils.get_or_insert_function(module, ir.FunctionType(f16, [f16, f16, f16]), "llvm.fma.v16f32")
            masked_load = cgutils.get_or_insert_function(
                module, ir.FunctionType(f16, [f16.as_pointer(), i32, m16, f16]), "llvm.masked.load.v16f32.p0v16f32")
            masked_store = cgutils.get_or_insert_function(
                module, ir.FunctionType(ir.VoidType(), [f16, f16.as_pointer(), i32, m16]),
                "llvm.masked.store.v16f32.p0v16f32")
            zero = ir.Constant(f16, [0.0] * 16)
            half = signature.args[1].dtype == types.uint16  # b holds fp16 bits
            h16 = ir.VectorType(ir.IntType(16), 16)  # 32 bytes
            masked_load_half = cgutils.get_or_insert_function(
                module, ir.FunctionType(h16, [h16.as_pointer(), i32, m16, h16]), "llvm.masked.load.v16i16.p0v16i16")
            per_row = 8 if count == 1 else 4  # blocks of columns each row of a accumulates in one pass

            def const(k, ty=intp):
                return ir.Constant(ty, k)

            def splat(value, ty):
                one = builder.insert_element(ir.Constant(ty, None), value, const(0, i32))
                return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, 16), [0] * 16))

            depth = cgutils.unpack_tuple(builder, b_arr.shape, 3)[1]
            block_stride, k_stride, _ = cgutils.unpack_tuple(builder, b_arr.strides, 3)
            a_stride = cgutils.unpack_tuple(builder, a_arr.strides, 2)[0]
            c_stride = cgutils.unpack_tuple(builder, c_arr.strides, 2)[0]
            width = cgutils.unpack_tuple(builder, c_arr.shape, 2)[1]
            accs = [[cgutils.alloca_once(builder, f16) for _ in range(per_row)] for _ in range(count)]

            def one_pass(first_block, blocks, mask):
                """Columns 16 first_block.. of `blocks` blocks of every row; mask: the lanes inside c of a single
                last block, or None where all are."""

                def load(offset):  # 16 numbers of b from `offset` bytes in, as float32
                    if not half:
                        pointer = _at(builder, b_arr, offset, f16)
                        if mask is None:
                            return builder.load(pointer, align=4)
                        return builder.call(masked_load, [pointer, const(4, i32), mask, zero])
                    pointer = _at(builder, b_arr, offset, h16)
                    if mask is None:
                        bits = builder.load(pointer, align=2)
                    else:
                        bits = builder.call(masked_load_half, [pointer, const(2, i32), mask, ir.Constant(h16, [0] * 16)])
                    return builder.fpext(builder.bitcast(bits, ir.VectorType(ir.HalfType(), 16)), f16)

                def store(value, pointer):
                    if mask is None:
                        builder.store(value, pointer, align=4)
                    else:
                        builder.call(masked_store, [value, pointer, const(4, i32), mask])

                used = [row[:blocks] for row in accs]
                for row in used:
                    for acc in row:
                        builder.store(zero, acc)
                with cgutils.for_range(builder, depth) as step:
                    k = step.index
                    vectors = [load(builder.add(builder.mul(builder.add(first_block, const(i)), block_stride),
                                                builder.mul(k, k_stride))) for i in range(blocks)]
                    for j, row in enumerate(used):
                        weight = builder.load(_at(builder, a_arr, builder.add(builder.mul(const(j), a_stride),
                                                                    builder.mul(k, const(4))), f32))
                        weight = splat(builder.fmul(weight, scale), f16)
                        for vector, acc in zip(vectors, row):
                            builder.store(builder.call(fma, [weight, vector, builder.load(acc)]), acc)
                for j, row in enumerate(used):
                    for i, acc in enumerate(row):
                        offset = builder.add(builder.mul(const(j), c_stride),
                                             builder.mul(builder.add(first_block, const(i)), const(64)))
                        store(builder.load(acc), _at(builder, c_arr, offset, f16))

            whole = builder.udiv(width, const(16))  # blocks of columns all inside c
            done = const(0)
            blocks = per_row
            while blocks >= 1:  # passes of per_row blocks while they fit, then at most one of each half as wide
                passes = builder.udiv(builder.sub(whole, done), const(blocks))
                with cgutils.for_range(builder, passes) as pass_:
                    one_pass(builder.add(done, builder.mul(pass_.index, const(blocks))), blocks, None)
                done = builder.add(done, builder.mul(passes, const(blocks)))
                blocks //= 2
            left = builder.sub(width, builder.mul(done, const(16)))
            with builder.if_then(builder.icmp_signed(">", left, const(0))):
                one_pass(done, 1, builder.icmp_signed("<", ir.Constant(n16, list(range(16))), splat(left, n16)))
            return context.get_dummy_value()

        return sig, codegen


QUERY_BLOCK = 4  # queries that attend together, sharing each key and value vector loaded


@njit(**JIT)
def causal_attention(q, k_cache, v_cache, start, window, scores, out):
    """out[T, heads*head_dim]: each query head attends to positions [lo, start + t] of its kv head's cache.

    Grouped-query attention: query head h reads kv head h // (heads / kv_heads). window > 0 limits attention to
    the last `window` positions (Mistral's sliding window). The caches are laid out (store_kv) so that a query's
    scores and its output are both sums of rows weighted by a query's numbers (_weighted_rows), read as
    consecutive 64-byte vectors: scores over a block of positions, key dimension by key dimension; the output
    over dimensions, position by position. scores: scratch [heads, QUERY_BLOCK, context + LANES].

    Queries go QUERY_BLOCK at a time (the rest one at a time, as decode), so that each key and value vector
    loaded serves all of them. All heads on one thread: the forward pass gives its workers a kv head at a time.
    """
    for h in range(q.shape[1] // k_cache.shape[2]):
        attend_head(q, k_cache, v_cache, start, window, scores, out, h)


@njit(inline="always", **JIT)
def attend_head(q, k_cache, v_cache, start, window, scores, out, h):
    """causal_attention for query head h alone: its columns of out, from its columns of q."""
    T = q.shape[0]
    blocked = T - T % QUERY_BLOCK
    for t in range(0, blocked, QUERY_BLOCK):
        _attend(q, k_cache, v_cache, start, window, scores, out, h, t, QUERY_BLOCK)
    for t in range(blocked, T):
        _attend(q, k_cache, v_cache, start, window, scores, out, h, t, 1)


@njit(inline="always", **JIT)
def _attend(q, k_cache, v_cache, start, window, scores, out, h, t, count):
    """Queries t..t+count-1 of head h, over the positions any of them sees from a whole block of keys on: a
    query's weights are zero where it does not see, and each of its numbers is formed by the same operations in
    the same order whatever `count`, so decode and verification agree bit for bit."""
    kv_heads, _, head_dim, _ = k_cache.shape
    kv, q0 = h // (q.shape[1] // head_dim // kv_heads), h * head_dim
    lo = max(0, start + t - window + 1) if window > 0 else 0  # the first query sees the least
    lo -= lo % LANES
    hi = start + t + count  # one past the last query's position
    s = scores[h, :count, : hi - lo]
    _weighted_rows(q[t : t + count, q0 : q0 + head_dim], k_cache[kv, lo // LANES : -(-hi // LANES)], s,
                   np.float32(1.0 / math.sqrt(head_dim)), count)
    for j in range(count):
        pos = start + t + j
        first = max(0, pos - window + 1) if window > 0 else 0
        _softmax(scores[h, j, : hi - lo], first - lo, pos + 1 - lo)  # a C-contiguous view: it vectorises
    _weighted_rows(s, v_cache[kv, :, lo:hi], out[t : t + count, q0 : q0 + head_dim], np.float32(1.0), count)


@njit(inline="always", **JIT)
def _softmax(s, first, end):
    """s[first:end] <- softmax of itself; zero elsewhere. Weights below e**-64 of the largest are zero, so that
    none is subnormal after the division (multiplying by a subnormal costs ~100 cycles)."""
    seen = s[first:end]
    best = seen[0]
    for p in range(seen.size):
        best = _fmax(best, seen[p])
    for p in range(seen.size):
        x = seen[p] - best
        seen[p] = _exp(x) if x > np.float32(-64.0) else np.float32(0.0)
    total = _ordered_sum(seen)
    for p in range(seen.size):
        seen[p] /= total
    s[:first] = 0.0
    s[end:] = 0.0


@njit(**JIT)
def swiglu(gate_up, out):
    """out[T, f] = silu(gate) * up, gate and up side by side in gate_up[T, 2f] (_exp: the loop vectorises)."""
    f = out.shape[1]
    for t in range(out.shape[0]):
        gate, up = gate_up[t, :f], gate_up[t, f:]
        for j in range(f):
            g = gate[j]
            out[t, j] = g / (np.float32(1.0) + _exp(-g)) * up[j]
