"""Cutting a weight matrix into PE tiles.

A matrix W[rows, cols] becomes a grid of gr x gc tiles, one per PE, each tm x tn and contiguous in memory:
`tiles[r, c]` is the block W[r*tm:(r+1)*tm, c*tn:(c+1)*tn], zero-padded at the ragged edges. The kernels walk
exactly this layout: x[c*tn:(c+1)*tn] is broadcast down PE column c, and the partial sums of tile row r are
reduced along PE row r.
"""
from __future__ import annotations

import math

import numpy as np

from .spec import DTYPE_BYTES, WaferSpec

SIMD = 16  # tile widths are multiples of this so a tile row is whole vectors on the host
ROW_ALIGN = 8


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def tile_shape(spec: WaferSpec, rows: int, cols: int, dtype: str) -> tuple[int, int]:
    """The (tm, tn) tile of a rows x cols matrix: the largest that fits one PE's weight budget together with its
    working buffers (an fp32 x slice of tn and fp32 partial sums of tm), then shrunk so the ragged edge is small.
    """
    nbytes = DTYPE_BYTES[dtype]
    budget = spec.weight_budget_per_pe
    best = None
    for log_m in range(3, 12):
        for log_n in range(4, 13):
            tm, tn = 1 << log_m, 1 << log_n
            if tm * tn * nbytes + 4 * (tm + tn) > budget:
                continue
            # largest area; then rows about half as long as they are wide (long rows vectorise, short columns
            # keep the reduction along the PE row short)
            key = (tm * tn, -abs(log_n - log_m - 1))
            if best is None or key > best[0]:
                best = (key, tm, tn)
    if best is None:
        raise ValueError(f"a PE of {spec.sram_per_pe} bytes cannot hold even an 8 x 16 {dtype} tile")
    _, tm, tn = best
    tm = min(tm, _round_up(rows, ROW_ALIGN))
    tn = min(tn, _round_up(cols, SIMD))
    # Same number of tiles, spread evenly, so a 896-wide matrix gets 4 tiles of 224 rather than 4 of 256.
    gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
    return _round_up(math.ceil(rows / gr), ROW_ALIGN), _round_up(math.ceil(cols / gc), SIMD)


def to_tiles(w: np.ndarray, tm: int, tn: int) -> np.ndarray:
    """W[rows, cols] -> tiles[gr, gc, tm, tn], zero-padded, C-contiguous."""
    rows, cols = w.shape
    gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
    padded = np.zeros((gr * tm, gc * tn), dtype=w.dtype)
    padded[:rows, :cols] = w
    return np.ascontiguousarray(padded.reshape(gr, tm, gc, tn).transpose(0, 2, 1, 3))


def from_tiles(tiles: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The inverse of to_tiles."""
    gr, gc, tm, tn = tiles.shape
    return tiles.transpose(0, 2, 1, 3).reshape(gr * tm, gc * tn)[:rows, :cols]
