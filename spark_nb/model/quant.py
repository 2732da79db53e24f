"""Symmetric int8 weights with one scale per output channel.

Each row of a weight matrix (one output channel) is divided by `max|row| / 127` and rounded, so the largest
magnitude maps to ±127 and the rounding error of every element is at most half a scale step. Symmetric (no zero
point) keeps the matvec a plain integer dot product followed by one multiply per output.
"""
from __future__ import annotations

import numpy as np

INT8_MAX = 127  # -128 is left unused so that +x and -x quantize to the same magnitude


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w [out, in] float32 -> (q [out, in] int8, scale [out] float32) with w ≈ q * scale[:, None]."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"quantize_int8 expects a 2-D weight [out, in], got shape {w.shape}")
    peak = np.abs(w).max(axis=1)
    # An all-zero row quantizes to zeros with any scale; 1 avoids dividing by zero.
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(q [out, in] int8, scale [out]) -> float32 [out, in]."""
    return q.astype(np.float32) * scale.astype(np.float32)[:, None]
