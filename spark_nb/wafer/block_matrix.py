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
among others, as the block kernels' are.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from gguf import GGMLQuantizationType as T

from .blocks import FORMATS, block_tile_shape
from .kernels import JIT, quantize_slices
from .quant_kernels import ROWS, block_matmul_rows
from .tiles import VECTOR_BYTES
from numba import njit

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
