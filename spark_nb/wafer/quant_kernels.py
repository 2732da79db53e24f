"""Numba matrix products on GGUF block tiles (blocks.py) with int8 activations.

x reaches the PEs as the int8 kernels give it (kernels.quantize_slices: one scale per PE column slice of tn). Each
block's weights are integers times the block's float scales (blocks.Ints: weight = (d sc) q - (dmin mn), sc and
mn small integers per group), so a row's product with a block of the slice's int8 values is two exact integers,

    isum = sum over the block's groups of sc * sum(q x),   msum = sum over its groups of mn * sum(x)

and the floats follow in one fixed order, each product and sum rounded to float32 on its own (JIT's fast-math
allows no contraction or reassociation):

    s = 0;   for each block of the slice:  s = s + d * isum;  s = s - dmin * msum   (the K-quants with a min)
    acc = acc + s * x_scale            per PE column, in column order;   y = acc

so a token's outputs are the same bits alone (decode), among k (verification) or in a prompt (prefill), and the
same on every host: speculative decoding relies on it. The integers are formed eight rows at a time (_block_rows):
each row's block is decoded in vector registers straight from the file's bytes (blocks of 32 as blocks.pack_units
interleaves a unit's eight rows: their scales one vector of halves, a row's fifth bits one 64-bit lane mask, its two
blocks' nibbles one 32-byte load, split by one GFNI bit-matrix move) and multiplied with x on vpdpbusd
(the K-quants: vpmaddubsw and vpdpwssd, the groups' scales applied in the same instruction; in int32 lanes where the
host lacks AVX-512 VNNI: the same integers either way), the eight rows' sums reduced together
into one vector, and the float steps run with the eight rows as lanes (blocks of 32 two at a time: a 64-byte
vector and one reduction for both). x's vectors for a block are loaded once for the eight rows, a row's blocks
decoded once for all the tokens in flight, and the eight rows' bytes stay in L1 for every token. `matmul_reference`
is the NumPy twin (the same integers, the same float32 steps, vectorised over rows and tokens).

Blocks of 32 carry eight or four tokens, unrolled. The K-quants with more than one token carry up to K_TOKENS in
a loop at run time over the super-block the eight rows decoded once (_quads: four rows a vector, each 16 bytes of
x broadcast to meet them, so a row's sums end in four lanes; a group's products summed on vpdpbusd, two groups'
sums packed to int16 and scaled on vpdpwssd): the decoded block stays in registers, else L1, where unrolled
tokens spilled it. A lone token keeps the row-a-vector layout (no transposes to pay for one token). The
msum is two vpdpwssd of the eight rows' mins against the token's group sums (_msums). All of these only regroup
exact integer sums: the floats are the steps above, in their order, so the bits are the same on every path.
"""
from __future__ import annotations

import os

import llvmlite.binding
import numpy as np
from gguf import GGMLQuantizationType as T
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.core.dispatcher import Dispatcher
from numba.extending import intrinsic

from . import kernels
from .blocks import BLOCK_KINDS, FORMATS, unpack_ints, unpack_units
from .jit_cache import keyed_by_sources
from .kernels import JIT, _lane_sums, quantize_slices
from .reference import quantize_slices as quantize_slices_reference

# per Format.code: weights a block, bytes a block
BLOCK = tuple(f.block for f in sorted(FORMATS.values()))
NBYTES = tuple(f.nbytes for f in sorted(FORMATS.values()))
Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K = (FORMATS[k].code for k in (T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_K, T.Q5_K, T.Q6_K))
ROWS = 8  # rows a _block_rows call forms: eight independent sums hide vpdpbusd's latency; tm is a multiple of 8
# a block's bytes are prefetched this many rows ahead (the same bytes of a later unit). Every layer's matrix in turn
# from DRAM, one thread (bench/block_kernels.py, load 2.3-3.3), against no prefetch: the 1.5B's Q4_K ffn_gate took
# 0.54x the time 8 rows ahead, 0.45x 16 ahead; the 0.5B's Q5_0 ffn_gate 0.96x and 0.80x, attn_q 0.57x and 0.53x
PREFETCH_ROWS = 2 * ROWS
# vpdpbusd on 256- and 512-bit vectors (AVX-512 VL), where kernels.py uses it (and SPARK_NB_NO_VNNI=1 does not)
HOST_VNNI_VL = kernels.HOST_VNNI and bool(llvmlite.binding.get_host_cpu_features().get("avx512vl"))
llvmlite.binding.initialize_native_asmparser()  # numba leaves it out: _Emit.words' inline assembly needs it
# vgf2p8affineqb (GFNI) on 512-bit vectors: a byte's bits moved by an 8x8 bit matrix, one matrix per 64-bit lane.
# Hosts with VNNI but no GFNI (Cascade Lake) shift and mask instead: SPARK_NB_NO_GFNI=1 takes that path (tests
# compare it)
HOST_GFNI = (HOST_VNNI_VL and bool(llvmlite.binding.get_host_cpu_features().get("gfni"))
             and os.environ.get("SPARK_NB_NO_GFNI") != "1")


def bit_matrix(moves):
    """The 64-bit matrix (a byte k of the lane is output bit 7 - k's row) that moves each input bit `source` of a
    byte to output bit `moves[source]`, clearing the others."""
    return sum(1 << source << 8 * (7 - target) for source, target in moves.items())


# the matrices that keep a byte's low nibble, and that move its high nibble down
LOW_NIBBLE, HIGH_NIBBLE = bit_matrix({k: k for k in range(4)}), bit_matrix({4 + k: k for k in range(4)})

I8, I16, I32 = ir.IntType(8), ir.IntType(16), ir.IntType(32)


class _Emit:
    """Vector IR for one block of eight rows, inside an intrinsic's codegen."""

    def __init__(self, context, builder):
        self.b, self.intp = builder, context.get_value_type(types.intp)

    def const(self, k, ty=None):
        return ir.Constant(ty or self.intp, k)

    def vec(self, values, ty=I8):  # a constant vector
        return ir.Constant(ir.VectorType(ty, len(values)), list(values))

    def load(self, base, offset, count, ty=I8):  # <count x ty> at byte offset of an i8* base
        vector = ir.VectorType(ty, count) if count > 1 else ty
        pointer = self.b.bitcast(self.b.gep(base, [offset]), vector.as_pointer())
        return self.b.load(pointer, align=1)

    def pick(self, a, b, lanes):  # lanes of a ++ b
        return self.b.shuffle_vector(a, b, self.vec(lanes, I32))

    def concat(self, a, b):
        return self.pick(a, b, range(2 * a.type.count))

    def dot(self, u, x, init):
        """init + the sums of four products u x (u unsigned bytes, x signed) per int32 lane: vpdpbusd, or the same
        integers from int32 products where the host lacks it."""
        return self._lane_dot("vpdpbusd", self.b.zext, u, x, init)

    def word_dot(self, a, x, acc):
        """acc + per int32 lane the sum of its two int16 lanes' products a x: vpdpwssd, or the same integers from
        int32 products where the host lacks it."""
        return self._lane_dot("vpdpwssd", self.b.sext, a, x, acc)

    def _lane_dot(self, name, widen, a, x, acc):  # acc + a x summed per int32 lane: `name`, or int32 products
        b, n, lanes = self.b, a.type.count, acc.type
        if HOST_VNNI_VL:
            f = cgutils.get_or_insert_function(b.module, ir.FunctionType(lanes, [lanes] * 3),
                                               f"llvm.x86.avx512.{name}.{32 * lanes.count}")
            return b.call(f, [acc, b.bitcast(a, lanes), b.bitcast(x, lanes)])
        products = b.mul(widen(a, ir.VectorType(I32, n)), b.sext(x, ir.VectorType(I32, n)))
        per = n // lanes.count
        for k in range(per):
            acc = b.add(acc, self.pick(products, products, range(k, n, per)))
        return acc

    def scaled_dot(self, u, x, scale, acc, bias):
        """acc + per int32 lane k the sum over the byte pairs 2k, 2k + 1 (4k .. 4k + 3) of each pair's products
        (u - bias) x times its int16 lane of scale: vpmaddubsw (less the same of bias x) then vpdpwssd (a pair's sum
        is at most 2 * 32 * 128 here: no saturation), or the same integers from int32 products where the host lacks
        them."""
        b, n = self.b, u.type.count
        pairs = ir.VectorType(I16, n // 2)
        if HOST_VNNI_VL:
            maddubs = cgutils.get_or_insert_function(b.module, ir.FunctionType(pairs, [u.type, x.type]),
                                                     f"llvm.x86.avx512.pmaddubs.w.{8 * n}")
            two = b.call(maddubs, [u, x])
            if bias:  # the same for every row: computed once
                two = b.sub(two, b.call(maddubs, [self.vec([bias] * n), x]))
        else:
            wide = ir.VectorType(I32, n)
            products = b.mul(b.sub(b.zext(u, wide), self.vec([bias] * n, I32)), b.sext(x, wide))
            two = b.trunc(b.add(self.pick(products, products, range(0, n, 2)),
                                self.pick(products, products, range(1, n, 2))), pairs)  # exact: see above
        return self.word_dot(two, scale, acc)

    def pack(self, a, b):
        """<32 x i16>: per 128 bits k, a's int32 lanes 4k .. 4k + 3 then b's, as int16 (they must fit: no
        saturation): vpackssdw, or truncation and a shuffle where the host lacks AVX-512 VNNI."""
        words = ir.VectorType(I16, 32)
        if HOST_VNNI_VL:
            packs = cgutils.get_or_insert_function(self.b.module, ir.FunctionType(words, [a.type, b.type]),
                                                   "llvm.x86.avx512.packssdw.512")
            return self.b.call(packs, [a, b])
        halves = ir.VectorType(I16, 16)
        return self.pick(self.b.trunc(a, halves), self.b.trunc(b, halves),
                         [16 * side + 4 * k + j for k in range(4) for side in (0, 1) for j in range(4)])

    def bias_init(self, x, bias):
        """The dot's init that subtracts bias * x: (u - bias) x for u holding a weight plus bias."""
        zero = self.vec([0] * (x.type.count // 4), I32)
        if not bias:
            return zero
        return self.b.sub(zero, self.dot(self.vec([bias] * x.type.count), x, zero))

    def affine(self, v, matrices):
        """vgf2p8affineqb: v's bytes moved by the bit matrices (bit_matrix), one a 64-bit lane in turn."""
        b = self.b
        f = cgutils.get_or_insert_function(b.module, ir.FunctionType(v.type, [v.type] * 2 + [I8]),
                                           f"llvm.x86.vgf2p8affineqb.{8 * v.type.count}")
        m = b.bitcast(self.vec(matrices, ir.IntType(64)), v.type)
        return b.call(f, [v, m, self.const(0, I8)])

    def words(self, v, lanes):
        """<32 x i16> of v's int16 lanes (v <16 x i16> or <32 x i16>): vpermw, one instruction (as inline assembly:
        LLVM turns the intrinsic with constant lanes back into a byte shuffle and a second widening); a shuffle where
        the host lacks AVX-512."""
        if not HOST_VNNI_VL:
            return self.pick(v, v, lanes)
        wide = ir.VectorType(I16, 32)
        if v.type.count == 16:  # the upper half undefined: no instruction
            v = self.concat(v, ir.Constant(v.type, None))
        permute = ir.InlineAsm(ir.FunctionType(wide, [wide] * 2), "vpermw $2, $1, $0", "=v,v,v")
        return self.b.call(permute, [self.vec(lanes, I16), v])

    def bit_set(self, byte_vector, bits, value):  # lanes whose byte has its bit set (a lane's own) -> value, else 0
        b = self.b
        hit = b.icmp_unsigned("!=", b.and_(byte_vector, self.vec(bits)), self.vec([0] * len(bits)))
        return b.select(hit, self.vec([value] * len(bits)), self.vec([0] * len(bits)))


def _x_vectors(e, kind, count, x, xsums):
    """A block's x (`count` blocks' of 32) as its rows' decoded weights meet it, and the dot inits that remove each
    format's bias (x: i8* at the block's first value; xsums: i32* at its first group's sum): shared by the eight
    rows."""
    if kind in (Q8_0, Q4_0, Q5_0):  # `count` blocks of 32 side by side
        X = e.load(x, e.const(0), 32 * count)
        return [X], [e.bias_init(X, {Q8_0: 128, Q4_0: 8, Q5_0: 16}[kind])], None
    if kind == Q6_K:  # weights in order, 64 a vector (the bias removed in _isum's scaled dots)
        return [e.load(x, e.const(64 * v), 64) for v in range(4)], None, None
    # Q4_K, Q5_K: 64 bytes of nibbles hold groups 4j and 4j + 2 (low), 4j + 1 and 4j + 3 (high)
    Xs = [e.concat(e.load(x, e.const(32 * g), 32), e.load(x, e.const(32 * (g + 2)), 32)) for g in (0, 1, 4, 5)]
    zero = e.vec([0] * 16, I32)
    sums = e.b.trunc(e.load(xsums, e.const(0), 8, I32), ir.VectorType(I16, 8))  # |a group's sum| <= 32 * 128
    # int16 pairs for _msums: lane 8 h + k of the first holds groups 2h, 2h + 1 (every row k), of the second
    # 4 + 2h, 5 + 2h
    return Xs, [zero] * 4, [e.pick(sums, sums, [base + 2 * h + o for h in (0, 1) for _ in range(ROWS) for o in (0, 1)])
                            for base in (0, 4)]


def _run_row(e, kind, count, run, row):
    """Row `row`'s `count` blocks of 32 in a unit's run at run (i8*; blocks.pack_units' layout), decoded: [(u, 0,
    None)], u its weights plus the format's bias as unsigned bytes, in order (the first block's 32, then the
    second's), to meet x's values in order."""
    b = e.b
    n = 32 * count
    qh_at = 2 * ROWS * count  # the run holds the eight rows' d, then Q5_0's qh, then the weights
    weights_at = qh_at + (4 * ROWS * count if kind == Q5_0 else 0)
    if kind == Q8_0:
        w = e.load(run, e.const(weights_at + n * row), n)
        return [(b.xor(w, e.vec([0x80] * n)), 0, None)]  # w + 128
    nib = e.load(run, e.const(weights_at + 16 * count * row), 16 * count)
    # a lone block as the file has it (weights 0..15 in the low nibbles, 16..31 in the high); a pair's byte j holds
    # weight j of each block (the first's low, the second's high): the low nibbles, then the high, are in order.
    # The nibbles twice side by side, each half's bytes moved by its own bit matrix (GFNI), else shifted by 0 and 4
    # as 16-bit lanes and masked
    twice = e.concat(nib, nib)
    if HOST_GFNI:
        u = e.affine(twice, [LOW_NIBBLE] * (count * 2) + [HIGH_NIBBLE] * (count * 2))
    else:
        words = b.bitcast(twice, ir.VectorType(I16, 16 * count))
        u = b.and_(b.bitcast(b.lshr(words, e.vec([0] * 8 * count + [4] * 8 * count, I16)), twice.type),
                   e.vec([15] * n))
    if kind == Q5_0:  # bit j of a row's 32 (64) bits is its weight j's fifth bit: they are a lane mask (adding 16
        # to a nibble sets its bit 4: a masked add)
        bits = e.load(run, e.const(qh_at + 4 * count * row), 1, ir.IntType(n))
        u = b.select(b.bitcast(bits, ir.VectorType(ir.IntType(1), n)), b.add(u, e.vec([16] * n)), u)
    return [(u, 0, None)]


def _row_block(e, kind, w):
    """One row's K-quant block at w (i8*), decoded for every token in flight: (pieces, scmn, [d's bits], [dmin's
    bits], the group scales as int16 lanes). A piece (u, i, scale) is weights plus bias as unsigned bytes that meet
    the x vector i of _x_vectors, and the integer scales of its lanes' groups; scmn: the scales and mins as bytes
    in lanes 0..7 and 8..15 (Q6_K: None)."""
    b = e.b
    low4 = e.vec([15] * 64)
    pieces = []
    if kind == Q6_K:
        # the group scales in int16 lanes 16..31 (the 16 bytes before them in 0..15: one load and widening that
        # stays inside the block)
        wide = b.sext(e.load(w, e.const(176), 32), ir.VectorType(I16, 32))
        sc = e.pick(wide, wide, range(16, 32))
        for h in range(2):
            ql = e.load(w, e.const(64 * h), 64)
            qh = e.load(w, e.const(128 + 32 * h), 32)
            twice = e.concat(qh, qh)  # weights 0..31 read bits 0-1 (u_a) and 4-5 (u_b), 32..63 bits 2-3 and 6-7
            if HOST_GFNI:  # each half's two bits moved to bits 4-5 by its own bit matrix
                high_a = e.affine(twice, [bit_matrix({0: 4, 1: 5})] * 4 + [bit_matrix({2: 4, 3: 5})] * 4)
                high_b = e.affine(twice, [bit_matrix({4: 4, 5: 5})] * 4 + [bit_matrix({6: 4, 7: 5})] * 4)
            else:
                twice = b.lshr(twice, e.vec([0] * 32 + [2] * 32))
                high_a = b.and_(b.shl(twice, e.vec([4] * 64)), e.vec([48] * 64))
                high_b = b.and_(twice, e.vec([48] * 64))
            u_a = b.or_(b.and_(ql, low4), high_a)
            u_b = b.or_(b.lshr(ql, e.vec([4] * 64)), high_b)
            for part, u in enumerate((u_a, u_b)):  # int16 lane k: 2 weights of group 8h + 4 part + k // 8
                pieces.append((u, 2 * h + part, e.words(wide, [16 + 8 * h + 4 * part + k // 8 for k in range(32)])))
        return pieces, None, [e.load(w, e.const(208), 1, I16)], None, sc
    # Q4_K, Q5_K: 12 bytes of six-bit scales and mins (gguf's get_scale_min), lanes 0..7 sc, 8..15 mn
    s = e.load(w, e.const(4), 16)
    a = e.pick(s, s, [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11])
    top = e.pick(s, s, [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7])
    low = b.and_(b.lshr(a, e.vec([0] * 12 + [4] * 4)), e.vec([63] * 4 + [15] * 4 + [63] * 4 + [15] * 4))
    high = b.and_(b.shl(b.lshr(top, e.vec([6] * 16)), e.vec([4] * 16)), e.vec(([0] * 4 + [48] * 4) * 2))
    scmn = b.or_(low, high)
    sc = b.zext(scmn, ir.VectorType(I16, 16))
    qs = 16 if kind == Q4_K else 48
    qh = None if kind == Q4_K else e.load(w, e.const(16), 32)
    for j in range(2):
        nib = e.load(w, e.const(qs + 64 * j), 64)
        for part, u in enumerate((b.and_(nib, low4), b.lshr(nib, e.vec([4] * 64)))):
            g = 4 * j + part  # lanes 0..7: group g, 8..15: group g + 2
            if qh is not None:  # bit g of qh's 32 bytes is group g's fifth bits
                u = b.or_(u, e.bit_set(e.concat(qh, qh), [1 << g] * 32 + [1 << (g + 2)] * 32, 16))
            pieces.append((u, 2 * j + part, e.words(sc, [g] * 16 + [g + 2] * 16)))  # int16 lanes: a pair each
    return pieces, scmn, [e.load(w, e.const(0), 1, I16)], [e.load(w, e.const(2), 1, I16)], sc


def _isum(e, kind, pieces, Xs, inits):
    """A row's isum lanes against one token's x vectors (8 lanes a block of 32): the blocks of 32's dot, or the sum
    of the K-quants' pieces' dots, each pair of products times its group's scale."""
    if pieces[0][2] is None:  # one block's scale: applied as d
        return e.dot(pieces[0][0], Xs[0], inits[0])
    total = e.vec([0] * (pieces[0][0].type.count // 4), I32)
    for u, at, scale in pieces:  # the K-quants: scaled in the dot, summed in place (Q6_K's weights biased by 32)
        total = e.scaled_dot(u, Xs[at], scale, total, 32 if kind == Q6_K else 0)
    return total


def _mins(e, scmns):
    """The eight rows' mins (scmns[k]: row k's _row_block scmn) as the two int16 pair vectors _msums takes."""
    halves = [e.concat(e.concat(*scmns[h : h + 2]), e.concat(*scmns[h + 2 : h + 4])) for h in (0, 4)]
    every = e.concat(*halves)  # row k's min of group g at byte 16 k + 8 + g
    return [e.b.zext(e.pick(every, every, [16 * k + 8 + base + 2 * h + o for h in (0, 1) for k in range(ROWS)
                                            for o in (0, 1)]), ir.VectorType(I16, 32)) for base in (0, 4)]


def _msums(e, mins, xs):
    """<8 x i32>, lane k row k's msum: the eight rows' mins (_mins) times one token's group sums (_x_vectors' pair
    vectors), two vpdpwssd (a product at most 63 * 32 * 128: exact) and one add of the halves, rather than a
    multiply and a sum of each row's lanes."""
    total = e.word_dot(mins[1], xs[1], e.word_dot(mins[0], xs[0], e.vec([0] * 16, I32)))
    return e.b.add(e.pick(total, total, range(ROWS)), e.pick(total, total, range(ROWS, 2 * ROWS)))


def _x_quarter(kind, at, m):
    """The offset in the block's x of the 16 values that quarter m (bytes 16 m .. 16 m + 15) of a K-quant piece
    meeting x vector `at` (_x_vectors) meets, and the group (_row_block's int16 scale lane) they all belong to."""
    if kind == Q6_K:
        return 64 * at + 16 * m, 8 * (at // 2) + 4 * (at % 2) + m
    g = (0, 1, 4, 5)[at] + 2 * (m // 2)
    return 32 * g + 16 * (m % 2), g


def _quads(e, kind, rows):
    """The eight rows' decoded K-quant block (_row_block) laid out four rows a vector, for rows 4 h .. 4 h + 3 a
    pair (u, scales): u[at, m] the four rows' quarter m (bytes 16 m .. 16 m + 15) of the piece meeting x vector at,
    side by side (16 bytes a row), and their groups' int16 scales: Q6_K's per (at, m) (a quarter is a group of 16),
    Q4_K's and Q5_K's per at, for _quad_isums' packed pairs of groups (a row's 8 lanes, 4 of group g of quarters 0
    and 1, 4 of g + 2 of quarters 2 and 3). A token's quarter of x, broadcast, meets both quads' vectors, and a
    row's sums end in 4 lanes, not 16 (fewer shuffles to sum rows), for 8 transposing shuffles a piece, once for
    all tokens in flight."""
    quads = []
    for h in range(2):
        four = rows[4 * h : 4 * h + 4]
        every = e.concat(e.concat(four[0][4], four[1][4]), e.concat(four[2][4], four[3][4]))  # row k's at 16 k
        u, scales = {}, {}
        for pieces in zip(*(pieces for pieces, *_ in four)):
            at = pieces[0][1]
            rows_u = [piece[0] for piece in pieces]

            def quarters(a, b, first, second):  # 16-byte quarters first of a, first of b, second of a, second of b
                return e.pick(a, b, [64 * side + 16 * q + j for q, side in ((first, 0), (first, 1), (second, 0),
                                                                             (second, 1)) for j in range(16)])
            low = [quarters(rows_u[0], rows_u[1], 0, 1), quarters(rows_u[2], rows_u[3], 0, 1)]
            high = [quarters(rows_u[0], rows_u[1], 2, 3), quarters(rows_u[2], rows_u[3], 2, 3)]
            for m in range(4):
                a, b = (low, high)[m // 2]
                u[at, m] = e.pick(a, b, [64 * side + 32 * (m % 2) + j for side in (0, 1) for j in range(32)])
            for pair in _quarter_pairs(kind):
                groups = [_x_quarter(kind, at, m)[1] for m in (pair[0], pair[len(pair) // 2])]
                lanes = [16 * k + groups[w // 4] for k in range(4) for w in range(8)]  # row k's 8 int16 lanes
                scales[at, pair[0]] = e.pick(every, every, lanes)
        quads.append((u, scales))
    return quads


def _quarter_pairs(kind):
    """The quarters (m) whose int32 sums _quad_isums packs together: Q4_K's and Q5_K's groups of 32 are two
    quarters, summed in one int32 vector first ((0, 1) then (2, 3), groups g and g + 2); Q6_K's groups of 16 one
    quarter each ((0,) with (1,), (2,) with (3,))."""
    return ((0, 1, 2, 3),) if kind != Q6_K else ((0, 1), (2, 3))


def _quad_isums(e, kind, quads, x):
    """<8 x i32>, lane k row k's isum, from the eight rows' _quads and one token's x (i8* at the block's first
    value), each quarter of x broadcast to a vector: a group's quarters on vpdpbusd into one int32 vector (a lane's
    sum at most 8 * 31 * 128 (Q4_K, Q5_K) or 4 * 32 * 128 (Q6_K, less its bias of 32) < 2**15), two groups packed
    into int16 lanes (vpackssdw: exact, a row's 128 bits each) and scaled on vpdpwssd: 1.25 multiplies a 64 bytes
    of weights (Q6_K 1.5, and its bias's vpdpbusd a piece shared by the eight rows) where vpmaddubsw and vpdpwssd
    took 2. Then the rows' four lanes summed."""
    b = e.b
    zero = e.vec([0] * 16, I32)
    xq, inits = {}, {}
    for at in range(4):
        # Q6_K's bias: -32 times the sums of x's fours, one vpdpbusd for a piece's quarters, each broadcast
        biases = e.bias_init(e.load(x, e.const(64 * at), 64), 32) if kind == Q6_K else zero
        for m in range(4):
            quarter = e.load(x, e.const(_x_quarter(kind, at, m)[0]), 16)
            xq[at, m] = e.concat(e.concat(quarter, quarter), e.concat(quarter, quarter))
            inits[at, m] = e.pick(biases, biases, [4 * m + j for _ in range(4) for j in range(4)])
    totals = []
    for u, scales in quads:
        sums = [zero] * 4
        for at in range(4):
            for pair in _quarter_pairs(kind):
                groups = []
                for half in (pair[: len(pair) // 2], pair[len(pair) // 2 :]):
                    total = inits[at, half[0]]
                    for m in half:
                        total = e.dot(u[at, m], xq[at, m], total)
                    groups.append(total)
                sums[pair[0] + at % 2] = e.word_dot(e.pack(*groups), scales[at, pair[0]], sums[pair[0] + at % 2])
        totals.append(b.add(b.add(sums[0], sums[1]), b.add(sums[2], sums[3])))  # lane 4 k + j: row k's
    pairs = [e.pick(*totals, [16 * h + 4 * k + j for h in (0, 1) for k in range(4) for j in half])
             for half in ((0, 1), (2, 3))]
    two = b.add(*pairs)  # lane 2 k + j: row k's
    return b.add(e.pick(two, two, range(0, 16, 2)), e.pick(two, two, range(1, 16, 2)))


def _halves(e, bits):
    """fp16 bit patterns (scalars, or one <n x i16> vector) -> a <n x float> of their values (exact)."""
    if isinstance(bits, list):
        v = ir.Constant(ir.VectorType(I16, len(bits)), None)
        for k, value in enumerate(bits):
            v = e.b.insert_element(v, value, e.const(k, I32))
        bits = v
    n = bits.type.count
    return e.b.fpext(e.b.bitcast(bits, ir.VectorType(ir.HalfType(), n)), ir.VectorType(ir.FloatType(), n))


def _row_sums(e, vectors, parts=1):
    """The sums of eight rows' lanes (vectors[k]: row k's): <8 x i32>, lane k row k's sum, from vectors of 8 or 16
    lanes; with parts=2, <16 x i32>, lane 2 k + h the sum of row k's lanes 8 h .. 8 h + 7 (two blocks of 32)."""
    if parts == 2:
        return _lane_sums(e.b, vectors, width=8)
    if vectors[0].type.count == 8:
        total = _lane_sums(e.b, [e.concat(a, b) for a, b in zip(vectors[::2], vectors[1::2])], width=8)
    else:
        total = _lane_sums(e.b, vectors)
    return e.pick(total, total, range(ROWS))


if config.DISABLE_JIT:

    def _block_rows(y, tiles, values, scales, xsums, r, i, t, code, capacity, tokens):
        """_block_rows in NumPy (each float step as the IR takes it)."""
        kind, tm = BLOCK_KINDS[code], tiles.shape[2]
        blocks = tiles.shape[3] // NBYTES[code]
        tn = blocks * BLOCK[code]
        acc = np.zeros((tokens, ROWS), np.float32)
        for c in range(tiles.shape[1]):
            x = values[t : t + tokens, c * tn : (c + 1) * tn]
            isum, msum, d, dmin = _block_sums(unpack_units(tiles[r, c, i : i + ROWS], kind), kind, x)
            s = np.zeros_like(acc)
            for k in range(blocks):
                s = s + d[None, :, k] * isum[:, :, k].astype(np.float32)
                s = s - dmin[None, :, k] * msum[:, :, k].astype(np.float32)
            acc = acc + s * scales[t : t + tokens, c : c + 1]
        rows = min(ROWS, y.shape[1] - (r * tm + i))
        y[t : t + tokens, r * tm + i : r * tm + i + rows] = acc[:, :rows]

else:

    @intrinsic
    def _block_rows(typingctx, y, tiles, values, scales, xsums, r, i, t, code, capacity, tokens):
        """y[t..t+tokens-1, row..row+7] for rows i..i+7 of PE row r (row = r tm + i, those the matrix has) of block
        tiles of format `code`, x in values/scales (kernels.quantize_slices, tn the tiles' width) and xsums
        (prepare_blocks): the module docstring's steps, the eight rows as lanes. `capacity`, a compile-time 1, 4 or
        8 (blocks of 32: as many tokens, unrolled) or K_TOKENS (the K-quants: up to that many, `tokens` of them, in
        a loop): each row's block is decoded once for them all, and each token's numbers formed as if it came
        alone."""
        if not isinstance(capacity, types.IntegerLiteral):
            return None
        count = capacity.literal_value
        sig = types.none(y, tiles, values, scales, xsums, r, i, t, code, capacity, tokens)

        def codegen(context, builder, signature, args):
            e = _Emit(context, builder)
            arrays = [context.make_array(ty)(context, builder, value) for ty, value in zip(signature.args[:5], args[:5])]
            done = builder.append_basic_block("rows_done")
            switch = builder.switch(args[8], done)
            for kind in range(len(BLOCK)):  # the format's own code
                if count > 1 and (count == K_TOKENS) != (BLOCK[kind] != 32):  # never called so
                    continue
                case = builder.append_basic_block(f"format_{kind}")
                switch.add_case(ir.Constant(args[8].type, kind), case)
                builder.position_at_end(case)
                _emit_rows(e, kind, count, *arrays, *args[5:8], args[10])
                builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen


def _emit_rows(e, kind, tokens, y_arr, w_arr, x_arr, xs_arr, sums_arr, r, i, t, n):
    """_block_rows' IR for one format."""
    b, const = e.b, e.const
    block, nbytes = BLOCK[kind], NBYTES[kind]
    f8 = ir.VectorType(ir.FloatType(), ROWS)
    i8p = I8.as_pointer()
    _, slices, tm, per_tile = cgutils.unpack_tuple(b, w_arr.shape, 4)
    w_stride = cgutils.unpack_tuple(b, w_arr.strides, 4)
    x_stride = cgutils.unpack_tuple(b, x_arr.strides, 2)[0]
    meta_stride = cgutils.unpack_tuple(b, xs_arr.strides, 2)[0]
    sums_stride = cgutils.unpack_tuple(b, sums_arr.strides, 2)[0]
    y_stride = cgutils.unpack_tuple(b, y_arr.strides, 2)[0]
    blocks = b.udiv(per_tile, const(nbytes))
    tn = b.mul(blocks, const(block))
    w_data, x_data = b.bitcast(w_arr.data, i8p), b.bitcast(x_arr.data, i8p)
    sums_data, meta_data = b.bitcast(sums_arr.data, i8p), b.bitcast(xs_arr.data, i8p)
    prefetch = cgutils.get_or_insert_function(b.module, ir.FunctionType(ir.VoidType(), [i8p, I32, I32, I32]),
                                              "llvm.prefetch.p0i8")
    looped = tokens > 1 and block != 32  # _quads, the tokens a loop at run time
    acc_all, s_all = (cgutils.alloca_once(b, ir.ArrayType(f8, tokens)) for _ in range(2))

    def each(body):  # body(token, its s, its acc) for the tokens in flight, unrolled or (looped) in a loop of n
        def one(j):
            body(b.add(t, j), *(b.gep(a, [const(0), j], inbounds=True) for a in (s_all, acc_all)))

        if looped:
            with cgutils.for_range(b, n) as token_loop:
                one(token_loop.index)
        else:
            for j in range(tokens):
                one(const(j))

    zero = ir.Constant(f8, [0.0] * ROWS)
    each(lambda tj, sj, aj: b.store(zero, aj))
    with cgutils.for_range(b, slices) as slice_loop:  # the reduction along the PE row, in order
        c = slice_loop.index
        each(lambda tj, sj, aj: b.store(zero, sj))
        tile = b.add(b.add(b.mul(r, w_stride[0]), b.mul(c, w_stride[1])), b.mul(i, w_stride[2]))

        def step(k, count):  # s after `count` blocks from block k, in order
            column = b.add(b.mul(c, tn), b.mul(k, const(block)))  # the block's first weight in the row
            if block == 32:  # the unit's run of blocks k .. k + count - 1 (blocks.pack_units), its bytes in a row
                run = b.add(tile, b.mul(k, const(ROWS * nbytes)))
                spans = [(run, ROWS * nbytes * count)]
            else:  # the file's rows: block k of each
                first = b.add(tile, b.mul(k, const(nbytes)))
                spans = [(b.add(first, b.mul(w_stride[2], const(row))), nbytes) for row in range(ROWS)]
            for at, size in spans:  # every 64-byte line they touch, PREFETCH_ROWS rows on
                ahead = b.add(at, b.mul(w_stride[2], const(PREFETCH_ROWS)))
                for offset in [*range(0, size, 64), size - 1]:
                    b.call(prefetch, [b.gep(w_data, [b.add(ahead, const(offset))]), const(0, I32), const(3, I32),
                                      const(1, I32)])
            if block == 32:
                w = b.gep(w_data, [run])
                rows = [(_run_row(e, kind, count, w, row),) for row in range(ROWS)]
                d = _halves(e, e.load(w, const(0), ROWS * count, I16))  # row by row, a row's blocks in order
                dmin = mins = quads = None
            else:
                rows = [_row_block(e, kind, b.gep(w_data, [at])) for at, _ in spans]
                d = _halves(e, [bits for _, _, d, _, _ in rows for bits in d])  # row by row
                dmin = None if rows[0][1] is None else _halves(e, [bits for _, _, _, dmin, _ in rows for bits in dmin])
                mins = None if rows[0][1] is None else _mins(e, [scmn for _, scmn, _, _, _ in rows])
                quads = _quads(e, kind, rows) if looped else None

            def one(tj, sj, aj):  # token tj's s (at sj) after the block
                x = b.gep(x_data, [b.add(b.mul(tj, x_stride), column)])
                xsums = b.gep(sums_data, [b.add(b.mul(tj, sums_stride), b.mul(b.udiv(column, const(32)), const(4)))])
                Xs, inits, xs = _x_vectors(e, kind, count, x, xsums)
                if quads is None:
                    isum = _row_sums(e, [_isum(e, kind, pieces, Xs, inits) for pieces, *_ in rows], count)
                else:
                    isum = _quad_isums(e, kind, quads, x)
                product = b.fmul(d, b.sitofp(isum, d.type))
                total = b.load(sj)
                for h in range(count):  # block k + h of every row
                    total = b.fadd(total, e.pick(product, product, range(h, ROWS * count, count)))
                if dmin is not None:
                    msum = _msums(e, mins, xs)
                    total = b.fsub(total, b.fmul(dmin, b.sitofp(msum, f8)))
                b.store(total, sj)

            each(one)  # looped: the decoded block stays where it is (registers, else L1) for every token

        pair = 2 if block == 32 else 1  # blocks of 32 two at a time: 64-byte vectors, half the reductions
        with cgutils.for_range(b, b.udiv(blocks, const(pair))) as block_loop:
            step(b.mul(block_loop.index, const(pair)), pair)
        if pair == 2:
            with b.if_then(b.icmp_unsigned("!=", b.urem(blocks, const(2)), const(0))):
                step(b.sub(blocks, const(1)), 1)

        def scaled(tj, sj, aj):
            x_scale = e.load(meta_data, b.add(b.mul(tj, meta_stride), b.mul(c, const(4))), 1, ir.FloatType())
            spread = b.shuffle_vector(b.insert_element(ir.Constant(f8, None), x_scale, const(0, I32)),
                                      ir.Constant(f8, None), e.vec([0] * ROWS, I32))
            b.store(b.fadd(b.load(aj), b.fmul(b.load(sj), spread)), aj)

        each(scaled)
    row = b.add(b.mul(r, tm), i)
    left = b.sub(cgutils.unpack_tuple(b, y_arr.shape, 2)[1], row)  # rows the matrix has from row
    mask = ir.Constant(ir.VectorType(ir.IntType(1), ROWS), None)
    for k in range(ROWS):
        mask = b.insert_element(mask, b.icmp_signed(">", left, const(k)), const(k, I32))
    store = cgutils.get_or_insert_function(b.module, ir.FunctionType(ir.VoidType(), [f8, f8.as_pointer(), I32, mask.type]),
                                           f"llvm.masked.store.v{ROWS}f32.p0v{ROWS}f32")

    def written(tj, sj, aj):
        y_row = b.gep(b.bitcast(y_arr.data, i8p), [b.add(b.mul(tj, y_stride), b.mul(row, const(4)))])
        b.call(store, [b.load(aj), b.bitcast(y_row, f8.as_pointer()), const(4, I32), mask])

    each(written)


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


def block_units(tiles) -> int:
    """Units of ROWS rows block_matmul_rows is called on: unit g holds rows 8 g .. 8 g + 7."""
    return tiles.shape[0] * (tiles.shape[2] // ROWS)


# tokens a _block_rows call carries: each row's block is decoded once for them all. Blocks of 32 weights (Q8_0, Q4_0,
# Q5_0) take eight, 1.14-1.27x the speed of four on 64 tokens (the 0.5B's Q5_0 attn_q and ffn_gate, random Q8_0 and
# Q4_0 of those shapes; one thread, load 0.7-1.2), unrolled. The K-quants, unrolled, ran eight tokens at 0.84-0.95x
# and sixteen at 0.64-0.85x four's speed (the decoded super-blocks and the tokens' sums spilled from the vector
# registers, reloaded token by token); in _quads' loop at run time they take up to K_TOKENS: on 64 tokens, the
# 1.5B's layer-0 attn_q, ffn_gate (Q4_K) and ffn_down (Q6_K), block_matmul_rows over the whole matrix on one thread,
# both kernels in turns (min of 3 a round, median of 9-11 rounds), load 1.6-2.6, 16 a call ran at 1.35x/1.46x/1.45x
# the speed of the unrolled four, 32 at 1.44x/1.55x/1.55x, 64 at 1.50x/1.63x/1.65x (all before _quad_isums' packed
# sums, which took 64 to 1.85x/1.91x/1.82x). With those, 128 ran no faster on 256 tokens (0.97-1.01x), and two
# tokens a pass of the loop (each decoded vector met by both in turn, to load it once) at 0.90x/0.90x/0.69x one's
# speed: the pair's sums and x vectors spilled the decoded block again
WIDE_TOKENS, TOKENS = 8, 4
K_TOKENS = 64


@njit(**JIT)
def block_matmul_rows(tiles, code, y, q, xsums, first, end):
    """y[T, rows of units first..end-1] (block_units) for the matrix in block tiles[gr, gc, tm, bytes], x prepared
    in q (quantize_slices with tn = the tiles' width in weights) and xsums (prepare_blocks): blocks of 32 eight or
    four tokens at a time (WIDE_TOKENS, TOKENS: four took Q5_0 0.44-0.46x, Q8_0 0.39x the time of four tokens one by
    one on the 0.5B's attn_q, ffn_gate and output, load 1.6-2.4), the rest one by one; the K-quants up to K_TOKENS a
    call, a lone token (decode, or one left over) alone: each unit's bytes staying in L1 for all."""
    per_row = tiles.shape[2] // ROWS
    T = y.shape[0]
    wide = BLOCK[code] == 32
    for g in range(first, end):
        r, i = g // per_row, ROWS * (g % per_row)
        if r * tiles.shape[2] + i >= y.shape[1]:
            continue
        t = 0
        if not wide:
            while t < T:
                n = min(K_TOKENS, T - t)
                if n > 1:
                    _block_rows(y, tiles, q.values, q.scales, xsums, r, i, t, code, K_TOKENS, n)
                else:
                    _block_rows(y, tiles, q.values, q.scales, xsums, r, i, t, code, 1, 1)
                t += n
            continue
        while t + WIDE_TOKENS <= T:
            _block_rows(y, tiles, q.values, q.scales, xsums, r, i, t, code, WIDE_TOKENS, WIDE_TOKENS)
            t += WIDE_TOKENS
        while t + TOKENS <= T:
            _block_rows(y, tiles, q.values, q.scales, xsums, r, i, t, code, TOKENS, TOKENS)
            t += TOKENS
        while t < T:
            _block_rows(y, tiles, q.values, q.scales, xsums, r, i, t, code, 1, 1)
            t += 1


@njit(**JIT)
def block_matmul(x, tiles, code, y, q, xsums):
    """y[T, m] = x[T, n] W[m, n].T, W held as GGUF block tiles (blocks.to_block_tiles) of format `code`; q and
    xsums: Quantized (kernels.quantized) and group_sums buffers at least the tiles' padded width. Decode is T = 1;
    verification and prefill T > 1. On one thread: the forward pass splits the rows' units among its workers."""
    quantize_slices(x, tiles.shape[3] // NBYTES[code] * BLOCK[code], q)
    prepare_blocks(tiles, code, q, xsums)
    block_matmul_rows(tiles, code, y, q, xsums, 0, tiles.shape[0] * (tiles.shape[2] // ROWS))


def _block_sums(raw: np.ndarray, kind: T, values: np.ndarray):
    """Each block's exact integers for rows raw[m, bytes] and int8 x values[T, cols] (cols a whole number of
    blocks, at most the rows' width): isum and msum [T, m, blocks] (int64), and d, dmin [m, blocks]."""
    ints = unpack_ints(raw, kind)
    f = FORMATS[kind]
    blocks, per_block = values.shape[1] // f.block, f.block // f.group
    xv = values.astype(np.int64).reshape(values.shape[0], 1, -1, f.group)  # [T, 1, groups, group]
    q = ints.q[:, : values.shape[1]].astype(np.int64).reshape(raw.shape[0], -1, f.group)  # [m, groups, group]
    dots = np.einsum("tge,mge->tmg", xv[:, 0], q)  # [T, m, groups]
    sc, mn = ints.sc[:, : blocks * per_block], ints.mn[:, : blocks * per_block]
    isum = (dots * sc).reshape(*dots.shape[:2], blocks, per_block).sum(axis=3)
    msum = (xv.sum(axis=3) * mn).reshape(*dots.shape[:2], blocks, per_block).sum(axis=3)
    return isum, msum, ints.d[:, :blocks], ints.dmin[:, :blocks]


def matmul_reference(x: np.ndarray, raw: np.ndarray, kind: T, tn: int) -> np.ndarray:
    """block_matmul's NumPy twin on the file's bytes raw[m, bytes per row]: the same int8 x, integer sums and
    float32 steps (a row's blocks in order, PE column by column), vectorised over rows and tokens."""
    values, x_scales, _ = quantize_slices_reference(x, tn)
    T_, n = x.shape
    acc = np.zeros((T_, raw.shape[0]), np.float32)
    per_tile = tn // FORMATS[kind].block * FORMATS[kind].nbytes
    for c in range(-(-n // tn)):
        cols = slice(c * tn, min(n, (c + 1) * tn))
        isum, msum, d, dmin = _block_sums(raw[:, c * per_tile : (c + 1) * per_tile], kind, values[:, cols])
        s = np.zeros_like(acc)
        for k in range(isum.shape[2]):
            s = s + d[None, :, k] * isum[:, :, k].astype(np.float32)
            s = s - dmin[None, :, k] * msum[:, :, k].astype(np.float32)
        acc = acc + s * x_scales[:, c : c + 1]
    return acc


if not config.DISABLE_JIT:  # cached under the sources compiled into them (jit_cache.py)
    keyed_by_sources([f for f in globals().values() if isinstance(f, Dispatcher) and f.py_func.__module__ == __name__],
                     [__file__, kernels.__file__])
