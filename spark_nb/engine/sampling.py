"""Choosing the next token from logits: greedy at temperature 0, else nucleus (top-p) sampling."""
from __future__ import annotations

import numpy as np


MIN_TEMPERATURE = 1e-3  # below it (but above 0) the logits divided by it overflow: NaN probabilities


def validate(temperature: float, top_p: float) -> None:
    if not (temperature == 0 or MIN_TEMPERATURE <= temperature):
        raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]  # smallest set with mass >= top_p
        p_kept = np.zeros_like(p)
        p_kept[keep] = p[keep]
        p = p_kept / p_kept.sum()
    return int(rng.choice(p.shape[0], p=p))
