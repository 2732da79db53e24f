"""project(): decode speed and time to first token of any model config on a wafer, without weights.

Place the model (placement.py), then run the cycle model (cycles.py) on that placement: every figure follows
from the WaferSpec constants and where the tiles landed.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model.config import ModelConfig
from .cycles import Breakdown, decode_cycles, first_token_cycles, prefill_cycles
from .placement import Placement, model_name, place
from .spec import WaferSpec, get_spec


@dataclass(frozen=True)
class Projection:
    model: str  # e.g. "Llama 8.0B"
    wafer: str
    n_wafers: int
    dtype: str
    context: int  # KV positions during the decode step measured
    prompt: int  # tokens prefilled before the first token
    decode_tok_per_s: float
    ttft_s: float  # prefill of the prompt (host upload included), then the last position's lm_head and output
    pes_used: int
    sram_bytes_used: int
    breakdown: Breakdown  # one decode step at `context`
    prefill_breakdown: Breakdown
    placement: Placement

    @property
    def prefill_tok_per_s(self) -> float:
        return self.prompt / self.prefill_breakdown.seconds

    def __str__(self) -> str:
        wafers = f"{self.n_wafers} x {self.wafer}" if self.n_wafers > 1 else self.wafer
        capacity = self.n_wafers * self.placement.spec.pes
        return (
            f"{self.model} in {self.dtype} on {wafers}: {self.decode_tok_per_s:,.0f} tok/s decode at context "
            f"{self.context}, time to first token {self.ttft_s * 1e3:,.2f} ms for a {self.prompt}-token prompt "
            f"(prefill {self.prefill_tok_per_s:,.0f} tok/s); {self.pes_used:,} of {capacity:,} PEs, "
            f"{self.sram_bytes_used / 1e9:.2f} GB SRAM\n"
            f"decode step: {self.breakdown}"
        )


def project(config, wafer: str | WaferSpec = "wse3", n_wafers: int = 1, dtype: str = "fp16", context: int = 1024,
            prompt: int = 1024) -> Projection:
    """Project a model (ModelConfig, config.json dict, config.json path or model folder) onto `n_wafers` wafers.
    Raises PlacementError when it does not fit; the message says what it needs."""
    config, spec = ModelConfig.coerce(config), get_spec(wafer)
    placement = place(config, spec, dtype, max(context, prompt), n_wafers)
    decode = decode_cycles(placement, context)
    prefill = prefill_cycles(placement, prompt)
    first = first_token_cycles(placement, prompt)
    return Projection(
        model=model_name(config), wafer=spec.name, n_wafers=n_wafers, dtype=dtype, context=context, prompt=prompt,
        decode_tok_per_s=1.0 / decode.seconds, ttft_s=first.seconds,
        pes_used=placement.pes_used, sram_bytes_used=placement.sram_bytes_used,
        breakdown=decode, prefill_breakdown=prefill, placement=placement,
    )
