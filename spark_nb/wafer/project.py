"""project(): decode speed and time to first token of any model config on a wafer, without weights.

Place the model (placement.py), then run the cycle model (cycles.py) on that placement: every figure follows
from the WaferSpec constants and where the tiles landed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..model.config import ModelConfig
from .cycles import (DESIGN, Breakdown, Design, decode_cycles, first_token_cycles, prefill_cycles, spread_for,
                     wafer_layout)
from .placement import Placement, model_name, place
from .spec import SOURCES, WaferSpec, get_spec


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
    design: Design = DESIGN
    spread: tuple[int, int] = (1, 1)  # PEs (rows, cols) running each of placement.py's tiles
    layout: Placement | None = None  # the blocks as the design runs them (placement spread, packed afresh)

    @property
    def pes_active(self) -> int:
        """PEs the design runs the model on."""
        return (self.layout or self.placement).pes_used

    @property
    def prefill_tok_per_s(self) -> float:
        return self.prompt / self.prefill_breakdown.seconds

    def __str__(self) -> str:
        wafers = f"{self.n_wafers} x {self.wafer}" if self.n_wafers > 1 else self.wafer
        capacity = self.n_wafers * self.placement.spec.pes
        return (
            f"{self.model} in {self.dtype} on {wafers}: {self.decode_tok_per_s:,.0f} tok/s decode at context "
            f"{self.context}, time to first token {self.ttft_s * 1e3:,.2f} ms for a {self.prompt}-token prompt "
            f"(prefill {self.prefill_tok_per_s:,.0f} tok/s); {self.pes_used:,} of {capacity:,} PEs hold it "
            f"({self.sram_bytes_used / 1e9:.2f} GB SRAM), {self.pes_active:,} run it (each tile on "
            f"{self.spread[0]} x {self.spread[1]} PEs)\n"
            f"decode step: {self.breakdown}"
        )


    def explain(self) -> str:
        """The decode step op by op (cycles, share, per token), the design's mechanisms and every constant, each
        with its source."""
        b, d, spec = self.breakdown, self.design, self.placement.spec
        lines = [str(self).splitlines()[0], "", f"one decode step at context {self.context}, op by op:"]
        lines += [f"  {op:<18} {c:>12,.0f} cycles {c / spec.clock_hz * 1e6:>9.2f} us {100 * c / b.total_cycles:5.1f}%"
                  f"  {_OPS.get(op, '')}" for op, c in sorted(b.ops.items(), key=lambda kv: -kv[1])]
        lines += [f"  {'total':<18} {b.total_cycles:>12,.0f} cycles {b.seconds * 1e6:>9.2f} us", "",
                  "design (spark_nb.wafer.cycles.Design; sources in its docstring):",
                  f"  reduction  {d.reduction:<8} chain: csl-examples gemv-checkerboard-pattern; tree: WaferLLM "
                  "(arXiv 2502.04563) MeshGEMV two-level tree; best: the faster per line",
                  f"  streaming  {d.streaming!s:<8} csl-examples gemv-checkerboard-pattern: FMACs as x wavelets "
                  "arrive, one task per matvec",
                  f"  spread     {self.spread[0]} x {self.spread[1]}    PEs per placed tile "
                  f"({'chosen: fastest that fits' if d.spread is None else 'fixed'}); WaferLLM GEMV over a "
                  "P x P mesh, Cerebras: model over the whole wafer",
                  f"  layout     {d.layout:<8} regions: each matrix its own region (placement.py; Cerebras: layers "
                  "over the wafer); mesh: every matrix over one P x P mesh (WaferLLM decode.csl)",
                  f"             {self._other_layout()}",
                  f"  pipeline   {d.pipeline!s:<8} Cerebras layer pipelining (prefill only: at batch 1 a token's "
                  "layers run in order)", "",
                  f"constants ({spec.name}; spark_nb/wafer/spec.py):"]
        lines += [f"  {name:<26} {getattr(spec, name):<12g} {source}" for name, source in SOURCES.items()]
        lines += ["", "formulas: spark_nb/wafer/cycles.py module docstring; checked against a wavelet-level "
                  "simulation in tests/test_cycles_sim.py"]
        return "\n".join(lines)


    def _other_layout(self) -> str:
        """What the other layout gives this model: decode tok/s, or why it does not fit."""
        other = "mesh" if self.design.layout == "regions" else "regions"
        try:
            step = decode_cycles(self.placement, self.context, dataclasses.replace(self.design, layout=other))
        except ValueError as err:
            return f"{other}: {err}"
        return f"{other} would decode at {1 / step.seconds:,.0f} tok/s (Design(layout={other!r}))"


_OPS = {
    "matvec.mac": "GEMV compute: FMACs over each PE's tile (or the SRAM reads feeding them)",
    "matvec.broadcast": "x down the PE columns to the farthest row",
    "matvec.reduce": "partial sums along the PE rows (chain or tree)",
    "attention": "scores, softmax, weighted V on each KV PE",
    "attention.q_in": "q, new k and v down the KV columns",
    "attention.reduce": "partial outputs down the KV columns (chain or tree)",
    "region_hops": "vectors between blocks (layer to layer, matrix to matrix)",
    "task_overhead": "task activations, one per kernel phase",
    "host_io": "token in from the host and out to it",
    "norm": "RMSNorm: squares, row reduction, scale",
    "swiglu": "SiLU(gate) * up",
    "rope": "rotary embedding of q and k",
    "residual": "residual adds",
    "lm_head": "final matvec over the vocabulary and argmax",
    "embedding": "token row lookup",
    "wafer_link": "activations between wafers",
}


def project(config, wafer: str | WaferSpec = "wse3", n_wafers: int = 1, dtype: str = "fp16", context: int = 1024,
            prompt: int = 1024, design: Design = DESIGN, kinds: dict | None = None) -> Projection:
    """Project a model (ModelConfig, config.json dict, config.json path or model folder) onto `n_wafers` wafers.
    kinds: the GGUF block formats its matrices keep (blocks.gguf_kinds; placement.place). Raises PlacementError when
    it does not fit; the message says what it needs."""
    config, spec = ModelConfig.coerce(config), get_spec(wafer)
    placement = place(config, spec, dtype, max(context, prompt), n_wafers, kinds)
    decode = decode_cycles(placement, context, design)
    prefill = prefill_cycles(placement, prompt, design)
    first = first_token_cycles(placement, prompt, design)
    spread = spread_for(placement, design)
    return Projection(
        model=model_name(config), wafer=spec.name, n_wafers=n_wafers, dtype=dtype, context=context, prompt=prompt,
        decode_tok_per_s=1.0 / decode.seconds, ttft_s=first.seconds,
        pes_used=placement.pes_used, sram_bytes_used=placement.sram_bytes_used,
        breakdown=decode, prefill_breakdown=prefill, placement=placement, design=design, spread=spread,
        layout=wafer_layout(placement, design),
    )
