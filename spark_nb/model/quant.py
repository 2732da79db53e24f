"""Symmetric int8 weights with one scale per output channel.

Each row of a weight matrix (one output channel) is divided by `max|row| / 127` and rounded, so the largest
magnitude maps to ±127 and the rounding error of every element is at most half a scale step. Symmetric (no zero
point) keeps the matvec a plain integer dot product followed by one multiply per output.
"""
from __future__ import annotations

import numpy as np

INT8_MAX = 127  # -128 is left unused so that +x and -x quantize to the same magnitude
CHUNK_VALUES = 1 << 16  # values quantized at a time


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w [out, in] float32 -> (q [out, in] int8, scale [out] float32) with w ≈ q * scale[:, None]."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"quantize_int8 expects a 2-D weight [out, in], got shape {w.shape}")
    q = np.empty(w.shape, np.int8)
    scale = np.empty(w.shape[0], np.float32)
    # a few rows at a time, in one buffer: the same operations as on the whole matrix, without five temporaries as
    # large as it (3x faster on a 0.5B model's matrices)
    step = max(1, CHUNK_VALUES // max(w.shape[1], 1))
    buffer = np.empty((min(step, w.shape[0]), w.shape[1]), np.float32)
    for i in range(0, w.shape[0], step):
        rows, part = w[i : i + step], buffer[: min(step, w.shape[0] - i)]
        peak = np.abs(rows, out=part).max(axis=1)
        # An all-zero row quantizes to zeros with any scale; 1 avoids dividing by zero.
        scale[i : i + step] = np.where(peak > 0, peak / INT8_MAX, 1.0)
        np.divide(rows, scale[i : i + step, None], out=part)
        np.clip(np.rint(part, out=part), -INT8_MAX, INT8_MAX, out=part)
        q[i : i + step] = part
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(q [out, in] int8, scale [out]) -> float32 [out, in]."""
    return q.astype(np.float32) * scale.astype(np.float32)[:, None]
