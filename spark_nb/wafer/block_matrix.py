"""A weight matrix kept in its GGUF block formats, as the forward pass holds it (dtype "auto"): one uint8 array.

A layer's stacked matrix (Wqkv = [Wq; Wk; Wv], Wgu = [Wg; Wu]) may mix formats (a Q4_K_M file keeps some layers' Wv
in Q6_K, the rest in Q4_K), so a matrix is up to PARTS parts of consecutive output rows, each one format's block
tiles (blocks.to_block_tiles), all cut with the same tile width tn: one int8 x (kernels.quantize_slices per slice of
tn) serves every part, as one quantized input serves a stacked int8 matrix. The array is

    header  int64 words: parts, tn, cols, rows; then per part: format code, first row, rows, gr, gc, tm, bytes a
            tile row (tn / block * nbytes), byte offset of its tiles
    tiles   each part's [gr, gc, tm, bytes] uint8, 64-byte aligned

so a layer's matrix is a row of a [layers, bytes] array (rows padded to the largest layer) and the kernels read any
matrix through the same four steps as an int8 one (kernels.prepare_input, matmul_units, matmul_rows, unit_rows
dispatch here on uint8): x quantized per slice of tn and its sums per group of 32 (the K-quants' min term), then
units of eight rows, part by part, on quant_kernels.block_matmul_rows. A token's numbers are the same alone or
among others, as the block kernels' are. The token embedding is a block matrix too, read a row at a time
(`embed_rows` dequantizes the rows it looks up from their tiles, the values gguf.quants.dequantize gives): a tied
model's embedding is its lm_head, one array, as int8's tiles are.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from gguf import GGMLQuantizationType as T
from numba import config, njit
from numba.core.dispatcher import Dispatcher

from . import blocks, kernels, quant_kernels
from .blocks import FORMATS, block_tile_shape
from .jit_cache import keyed_by_sources
from .kernels import JIT, quantize_slices
from .quant_kernels import BLOCK, NBYTES, Q4_0, Q4_K, Q5_0, Q5_K, Q8_0, ROWS, block_matmul_rows
from .tiles import VECTOR_BYTES

HEADER = 256  # bytes of int64 words before the tiles
PARTS = 3  # at most: Wq, Wk, Wv each in its own format
PART, PART_WORDS = 4, 8  # a part's words start at PART + PART_WORDS * p


class Part(NamedTuple):
    kind: T
    rows: int
    tm: int
    gr: int
    gc: int
    per_tile: int  # bytes of a tile row: tn / block * nbytes
    offset: int  # of its tiles in the matrix's bytes


class Plan(NamedTuple):
    tn: int
    cols: int
    parts: tuple[Part, ...]
    nbytes: int  # the matrix's bytes, header included, a multiple of 64


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def plan(spec, kinds: list[T], rows: list[int], cols: int) -> Plan:
    """The layout of a matrix of parts kinds[p] x rows[p] (consecutive matrices of one format already joined):
    each part in the tile height block_tile_shape gives it, all in the first part's tile width rounded up to a
    whole number of every part's blocks."""
    tn = _round_up(block_tile_shape(spec, rows[0], cols, kinds[0])[1], max(FORMATS[k].block for k in kinds))
    parts, offset = [], HEADER
    for kind, n in zip(kinds, rows):
        tm = block_tile_shape(spec, n, cols, kind)[0]
        f = FORMATS[kind]
        part = Part(kind, n, tm, -(-n // tm), -(-cols // tn), tn // f.block * f.nbytes, offset)
        parts.append(part)
        offset = _round_up(offset + part.gr * part.gc * tm * part.per_tile, VECTOR_BYTES)
    return Plan(tn, cols, tuple(parts), offset)


def write(matrix: np.ndarray, plan: Plan, raws: list[np.ndarray]) -> None:
    """Fill matrix (uint8, plan.nbytes or more, zeroed) with the header and each part's bytes raws[p][rows, bytes a
    row] cut into tiles (zero bytes pad: blocks whose weights are all 0)."""
    header = matrix[:HEADER].view(np.int64)
    header[:PART] = len(plan.parts), plan.tn, plan.cols, sum(p.rows for p in plan.parts)
    row0 = 0
    for i, (p, raw) in enumerate(zip(plan.parts, raws)):
        header[PART + PART_WORDS * i : PART + PART_WORDS * (i + 1)] = (
            FORMATS[p.kind].code, row0, p.rows, p.gr, p.gc, p.tm, p.per_tile, p.offset)
        tiles = matrix[p.offset : p.offset + p.gr * p.gc * p.tm * p.per_tile].reshape(p.gr, p.gc, p.tm, p.per_tile)
        for r in range(p.gr):
            block_rows = raw[r * p.tm : (r + 1) * p.tm]
            for c in range(p.gc):
                part = block_rows[:, c * p.per_tile : (c + 1) * p.per_tile]
                tiles[r, c, : part.shape[0], : part.shape[1]] = part
                tiles[r, c] = blocks.pack_units(tiles[r, c], p.kind)  # a tile's copy at a time: no large temporaries
        row0 += p.rows


@njit(inline="always", **JIT)
def _part(matrix, p):
    """(format code, first row, rows, tiles [gr, gc, tm, bytes]) of part p."""
    w = matrix[:HEADER].view(np.int64)[PART + PART_WORDS * p : PART + PART_WORDS * (p + 1)]
    gr, gc, tm, per_tile, at = w[3], w[4], w[5], w[6], w[7]
    return w[0], w[1], w[2], matrix[at : at + gr * gc * tm * per_tile].reshape((gr, gc, tm, per_tile))


@njit(**JIT)
def prepare(x, matrix, q):
    """x[T, n] as the parts' PEs receive it: int8 per slice of tn in q (quantize_slices), and the sums of its
    groups of 32 in q.sums (prepare_blocks' xsums: a block matrix reads no slice sums)."""
    tn = matrix[:HEADER].view(np.int64)[1]
    quantize_slices(x, tn, q)
    groups = -(-x.shape[1] // tn) * tn // 32
    for t in range(x.shape[0]):
        for g in range(groups):
            total = np.int32(0)
            for e in range(32):
                total += np.int32(q.values[t, 32 * g + e])
            q.sums[t, g] = total


@njit(**JIT)
def units(matrix):
    """Units of ROWS rows over all parts (part by part, each part's as quant_kernels.block_units)."""
    total = 0
    for p in range(matrix[:HEADER].view(np.int64)[0]):
        _, _, _, tiles = _part(matrix, p)
        total += tiles.shape[0] * (tiles.shape[2] // ROWS)
    return total


@njit(**JIT)
def _row_at(matrix, u):
    """The first output row unit u forms (the matrix's rows for u = units)."""
    first = 0
    for p in range(matrix[:HEADER].view(np.int64)[0]):
        _, row0, rows, tiles = _part(matrix, p)
        n = tiles.shape[0] * (tiles.shape[2] // ROWS)
        if u < first + n:
            return row0 + min(ROWS * (u - first), rows)
        first += n
    return matrix[:HEADER].view(np.int64)[3]


@njit(**JIT)
def unit_rows(matrix, first, end):
    """Rows [lo, hi) that units first..end-1 form."""
    return _row_at(matrix, first), _row_at(matrix, end)


@njit(**JIT)
def matmul_rows(matrix, y, q, first, end):
    """y[T, rows of units first..end-1] for x prepared in q (prepare)."""
    start = 0
    for p in range(matrix[:HEADER].view(np.int64)[0]):
        code, row0, rows, tiles = _part(matrix, p)
        n = tiles.shape[0] * (tiles.shape[2] // ROWS)
        lo, hi = max(first, start), min(end, start + n)
        if lo < hi:
            block_matmul_rows(tiles, code, y[:, row0 : row0 + rows], q, q.sums, lo - start, hi - start)
        start += n


# -- rows of a block matrix (the token embedding) ---------------------------------------------------------------


@njit(inline="always", **JIT)
def _half(lo, hi):
    """The fp16 value of two little-endian bytes, as float32 (exact)."""
    bits = np.int32(lo) | (np.int32(hi) << 8)
    exponent, mantissa = (bits >> 10) & 0x1F, bits & 0x3FF
    if exponent == 0:  # zero and subnormals: mantissa * 2^-24
        value = np.float32(mantissa) * np.float32(2.0**-24)
    elif exponent == 31:
        value = np.float32(np.inf) if mantissa == 0 else np.float32(np.nan)
    else:
        value = np.float32(1024 + mantissa) * np.float32(2.0 ** (exponent - 25))
    return -value if bits & 0x8000 else value


@njit(inline="always", **JIT)
def _signed(byte):
    """A byte read as int8."""
    v = np.int32(byte)
    return v - ((v >> 7) << 8)


@njit(inline="always", **JIT)
def _k_scale_min(s, g):
    """Q4_K/Q5_K's six-bit scale and min of group g from the block's 12 bytes s (blocks._k_scales)."""
    if g < 4:
        return np.int32(s[g] & 63), np.int32(s[g + 4] & 63)
    return (np.int32((s[g + 4] & 0x0F) | ((s[g - 4] >> 6) << 4)),
            np.int32((s[g + 4] >> 4) | ((s[g] >> 6) << 4)))


@njit(**JIT)
def _dequantize_block(b, code, out):
    """out[:block] = the weights of one block b (its bytes), as gguf.quants.dequantize forms them in float32:
    (d sc) q - (dmin mn), each product and the difference rounded on its own (blocks.unpack_ints' integers)."""
    if code == Q8_0:
        d = _half(b[0], b[1])
        for j in range(32):
            out[j] = d * np.float32(_signed(b[2 + j]))
    elif code == Q4_0 or code == Q5_0:
        d = _half(b[0], b[1])
        high = np.int32(b[2]) | (np.int32(b[3]) << 8) | (np.int32(b[4]) << 16) | (np.int32(b[5]) << 24)
        nib, bias = (2, 8) if code == Q4_0 else (6, 16)
        for j in range(16):
            lo, hi = np.int32(b[nib + j] & 15), np.int32(b[nib + j] >> 4)
            if code == Q5_0:
                lo |= ((high >> j) & 1) << 4
                hi |= ((high >> (j + 16)) & 1) << 4
            out[j], out[j + 16] = d * np.float32(lo - bias), d * np.float32(hi - bias)
    elif code == Q4_K or code == Q5_K:
        d, dmin = _half(b[0], b[1]), _half(b[2], b[3])
        qs = 16 if code == Q4_K else 48
        for g in range(8):  # group 2i: low nibbles of bytes 32i.., group 2i + 1: their high nibbles
            sc, mn = _k_scale_min(b[4:16], g)
            scale, offset = d * np.float32(sc), dmin * np.float32(mn)
            for e in range(32):
                q = np.int32((b[qs + 32 * (g // 2) + e] >> (4 * (g % 2))) & 15)
                if code == Q5_K:
                    q |= np.int32((b[16 + e] >> g) & 1) << 4
                out[32 * g + e] = scale * np.float32(q) - offset
    else:  # Q6_K: weight 128 h + 64 s + e has ql[64 h + e] >> 4 s, qh[32 h + e % 32] >> 2 (2 s + e // 32)
        d = _half(b[208], b[209])
        for w in range(256):
            h, s, e = w // 128, (w % 128) // 64, w % 64
            low = (b[64 * h + e] >> (4 * s)) & 15
            high = (b[128 + 32 * h + e % 32] >> (2 * (2 * s + e // 32))) & 3
            out[w] = (d * np.float32(_signed(b[192 + w // 16]))) * np.float32(np.int32(low | (high << 4)) - 32)


@njit(**JIT)
def embed_rows(tokens, matrix, out):
    """out[t] = row tokens[t] of a block matrix (the token embedding, or a tied model's lm_head that is the same
    array), gathered from its tiles along the row, block by block dequantized into place: a lookup touches the
    tile rows that hold that row, nothing else."""
    buffer = np.empty(max(NBYTES), np.uint8)  # a block's bytes, gathered where its unit interleaves them
    for t in range(tokens.shape[0]):
        p = 0
        while True:  # the part holding the row
            code, row0, rows, tiles = _part(matrix, p)
            if tokens[t] < row0 + rows:
                break
            p += 1
        block, nbytes = BLOCK[code], NBYTES[code]
        row = tokens[t] - row0
        r, i = row // tiles.shape[2], row % tiles.shape[2]
        per_tile = tiles.shape[3] // nbytes  # blocks a tile row
        b = buffer[:nbytes]
        for k in range(out.shape[1] // block):  # the row's block k: tile column k // per_tile
            c, j = k // per_tile, k % per_tile
            if block == 32:  # interleaved with its unit's rows (blocks.pack_units)
                _gather_block(tiles[r, c], i, j, code, b)
            else:
                b[:] = tiles[r, c, i, j * nbytes : (j + 1) * nbytes]
            _dequantize_block(b, code, out[t, k * block : (k + 1) * block])


@njit(**JIT)
def _gather_block(tile, i, j, code, out):
    """out[:nbytes] = the file's bytes of row i's block j (a block of 32) in a tile of interleaved units."""
    nbytes = NBYTES[code]
    unit = tile[i - i % ROWS : i - i % ROWS + ROWS].reshape(-1)
    row, pair = i % ROWS, j - j % 2
    count = min(2, tile.shape[1] // nbytes - pair)
    h = j - pair
    run = unit[pair * ROWS * nbytes : (pair + count) * ROWS * nbytes]
    at = 2 * (count * row + h)
    out[0], out[1] = run[at], run[at + 1]
    weights = 2 * ROWS * count
    if code == Q5_0:
        at = weights + 4 * (count * row + h)
        out[2:6] = run[at : at + 4]
        weights += 4 * ROWS * count
    if code == Q8_0:
        at = weights + 32 * (count * row + h)
        out[2:34] = run[at : at + 32]
    elif count == 1:
        out[nbytes - 16 :] = run[weights + 16 * row : weights + 16 * row + 16]
    else:  # byte e of the row's 32 holds weight e of block `pair` (low nibble) and of `pair` + 1 (high)
        row_bytes = run[weights + 32 * row : weights + 32 * row + 32]
        for e in range(16):
            lo, hi = (row_bytes[e] >> (4 * h)) & 15, (row_bytes[e + 16] >> (4 * h)) & 15
            out[nbytes - 16 + e] = lo | (hi << 4)


if not config.DISABLE_JIT:  # cached under the sources compiled into them (jit_cache.py)
    keyed_by_sources([f for f in globals().values() if isinstance(f, Dispatcher) and f.py_func.__module__ == __name__],
                     [__file__, quant_kernels.__file__, kernels.__file__, blocks.__file__])
