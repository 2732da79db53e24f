"""Cutting a weight matrix into PE tiles.

A matrix W[rows, cols] becomes a grid of gr x gc tiles, one per PE, each tm x tn and contiguous in memory:
`tiles[r, c]` is the block W[r*tm:(r+1)*tm, c*tn:(c+1)*tn], zero-padded at the ragged edges. The kernels walk
exactly this layout: x[c*tn:(c+1)*tn] is broadcast down PE column c, and the partial sums of tile row r are
reduced along PE row r.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .spec import DTYPE_BYTES, WaferSpec

VECTOR_BYTES = 64  # tile rows are whole 64-byte vectors on the host (16 fp32, 32 fp16, 64 int8: vpdpbusd's width)
ROW_ALIGN = 8
MAX_SIDE = 512  # longest tile side searched (tm and tn)
# Narrowest tile (unless the matrix is narrower): the host runs the same tiles, and a tile row is the dot product
# it vectorises; rows of 32 floats waste most of each step on loop overhead.
MIN_WIDTH = 128
BUFFER_BYTES = 4  # per tile row and column: an fp32 x slice (tn) and fp32 partial sums (tm) beside the tile


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def tile_bytes(tm: int, tn: int, dtype: str) -> int:
    """SRAM one PE spends on a tm x tn tile: the weights and their working buffers."""
    return tm * tn * DTYPE_BYTES[dtype] + BUFFER_BYTES * (tm + tn)


@lru_cache(maxsize=4096)
def tile_shape(spec: WaferSpec, rows: int, cols: int, dtype: str) -> tuple[int, int]:
    """The (tm, tn) tile of a rows x cols matrix, tm a multiple of 8 and tn of 64 bytes, that fits one PE's weight
    budget with its working buffers (`tile_bytes`) in the fewest PEs.

    Every candidate tm in 8, 16 .. min(512, round_up(rows, 8)) and tn in v, 2v .. min(512, round_up(cols, v)),
    v = 64 bytes of elements,
    that fits (at least MIN_WIDTH wide where any such fits) is evened out: the same number of tiles, spread evenly (a 896-wide matrix gets 4 tiles of 224
    rather than 4 of 256, so ragged edges are small). The evened tile with the fewest tiles wins; on ties the one
    with rows closest to half as long as they are wide (long rows vectorise on the host, short columns keep the
    reduction along the PE row short), then the larger. For a large matrix this is the largest-area tile: it fills
    >= 90% of the budget (see tests/test_tiles.py).
    """
    nbytes = DTYPE_BYTES[dtype]
    simd = VECTOR_BYTES // nbytes
    budget = spec.weight_budget_per_pe
    tm = np.arange(ROW_ALIGN, min(MAX_SIDE, _round_up(rows, ROW_ALIGN)) + 1, ROW_ALIGN)[:, None]  # [M, 1]
    tn = np.arange(simd, min(MAX_SIDE, _round_up(cols, simd)) + 1, simd)[None, :]  # [1, N]
    fits = tm * tn * nbytes + BUFFER_BYTES * (tm + tn) <= budget  # [M, N]
    wide = fits & (tn >= min(MIN_WIDTH, tn.max()))
    if wide.any():  # a PE too small for wide tiles still gets narrow ones
        fits = wide
    if not fits.any():
        raise ValueError(f"a PE's weight budget of {budget} bytes cannot hold even an {ROW_ALIGN} x {simd} "
                         f"{dtype} tile with its buffers")
    tm, tn = np.broadcast_arrays(tm, tn)
    tm, tn = tm[fits], tn[fits]  # [K] candidates that fit
    gr, gc = -(-rows // tm), -(-cols // tn)  # tiles per candidate
    tm = -(-(-(-rows // gr)) // ROW_ALIGN) * ROW_ALIGN  # evened: round_up(ceil(rows / gr), 8) <= tm, so still fits
    tn = -(-(-(-cols // gc)) // simd) * simd
    count = -(-rows // tm) * -(-cols // tn)
    aspect = np.abs(np.log2(tn / tm) - 1.0)  # 0 when tn == 2 tm
    best = np.lexsort((-tm * tn, aspect, count))[0]  # fewest tiles, then aspect, then area
    return int(tm[best]), int(tn[best])


def aligned_empty(shape, dtype, zero: bool = False) -> np.ndarray:
    """An uninitialised (or, zero=True, zero-filled) C-contiguous array whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = (np.zeros if zero else np.empty)(nbytes + VECTOR_BYTES, np.uint8)  # zeros: pages the OS zeroes lazily
    skip = -raw.ctypes.data % VECTOR_BYTES
    return raw[skip : skip + nbytes].view(dtype).reshape(shape)


def aligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a whose data starts on a 64-byte boundary, so that every tile row (a whole number of
    64-byte vectors) and every cache block is one cache line per vector load. NumPy aligns large arrays to 16
    bytes only, and a load split across two lines costs up to twice as much: two copies of one model ran a
    decode step up to 2x apart by where their arrays happened to land."""
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def to_tiles(w: np.ndarray, tm: int, tn: int) -> np.ndarray:
    """W[rows, cols] -> tiles[gr, gc, tm, tn], zero-padded, C-contiguous and 64-byte aligned."""
    rows, cols = w.shape
    tiles = aligned_empty((math.ceil(rows / tm), math.ceil(cols / tn), tm, tn), w.dtype, zero=True)
    write_tiles(tiles, w)
    return tiles


def write_tiles(tiles: np.ndarray, w: np.ndarray, row0: int = 0) -> None:
    """Write rows row0.. of a matrix (w: [n, cols]) into its zero-filled tiles [gr, gc, tm, tn] as to_tiles lays
    them out, without a padded copy: a matrix packed a block of rows at a time (row0 a multiple of tm) never
    exists whole. The padding stays as it was (zero)."""
    gr, gc, tm, tn = tiles.shape
    n, cols = w.shape
    if row0 % tm or n and row0 + n > gr * tm or cols > gc * tn:
        raise ValueError(f"rows {row0}..{row0 + n} x {cols} do not start a tile row of tiles {tiles.shape}")
    whole, edge = divmod(cols, tn)  # whole tile columns, then the width of a ragged last one
    first, k = row0 // tm, n // tm  # first tile row; whole tile rows
    parts = [(w[: k * tm], tiles[first : first + k].transpose(0, 2, 1, 3))]  # [k, tm, gc, tn]
    if n > k * tm:  # a last, partial tile row: its first n - k tm rows
        parts.append((w[k * tm :], tiles[first + k, None].transpose(0, 2, 1, 3)[:, : n - k * tm]))
    for rows, dest in parts:
        k, r = dest.shape[:2]  # tile rows, matrix rows in each
        if whole:
            dest[:, :, :whole] = rows[:, : whole * tn].reshape(k, r, whole, tn)
        if edge:
            dest[:, :, whole, :edge] = rows[:, whole * tn :].reshape(k, r, edge)


def from_tiles(tiles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The inverse of to_tiles."""
    gr, gc, tm, tn = tiles.shape
    return tiles.transpose(0, 2, 1, 3).reshape(gr * tm, gc * tn)[:rows, :cols]
