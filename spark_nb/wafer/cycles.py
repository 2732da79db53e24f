"""A cycle model of decode and prefill on a placed model, from the WaferSpec and the Placement alone.

Notation: a matrix sits on a gr x gc grid of tm x tn tiles (placement.py); `span` is the hop distance from its
origin down a PE column (band_rows, plus the hops across the bands of a folded grid). The spec gives h
(hop_cycles), T (task_overhead_cycles), W (wavelet_bytes), R (sram_read_bytes_per_cycle), m (MACs per cycle for
the weight dtype), m32 (fp32 MACs per cycle, the rate of elementwise work on fp32 activations), b (weight bytes)
and X (fp32 MACs per exp/sigmoid/rsqrt). Activations travel as a = WIRE_BYTES[dtype] bytes, ceil(W / a) per
wavelet (fp16: two per wavelet), partial sums as fp32, one per wavelet. B tokens go through together (B = 1 in
decode; a micro-batch in prefill): latency terms are paid once, volume terms B times.

Matrix-vector product (the csl-examples checkerboard GEMV):
    broadcast = span h + B ceil(tn a / W)           x slice enters the top row, forwarded down each column
    mac       = max(B tm tn / m, tm tn b / R)       SIMD FMACs over the tile, or the SRAM reads feeding them,
                                                    whichever is slower: every weight is read once per pass and
                                                    a FMAC cannot retire before its weight arrives (the tm fp32
                                                    accumulators stay in registers/local cache; x is a scalar)
    reduce    = gc h + B tm                         fp32 partials summed west->east along each PE row, pipelined
    overhead  = 3 T                                 one task activation per phase

Attention over c cached positions, on the KV grid (one PE column per KV head, positions striped round-robin
down it, p = ceil(c / gr) per PE, g = n_heads / n_kv query heads per KV head, hd = head_dim):
    q in     = span h + B ceil((g + 2) hd a / W)    the group's q heads, plus the new k and v to store
    scores   = max(B p g hd / m, p hd b / R)        q.k for the PE's positions; K read once for the group
    softmax  = B p g (X + 1) / m32                  exp and running sum, local to the PE
    values   = max(B p g hd / m, p hd b / R)        weighted sum of V
    reduce   = span h + B g (hd + 2)                partial outputs with their max and sum (flash-decoding
                                                    rescale), fp32, pipelined down the column
    overhead = 5 T
The local phases fall as 1 / gr and the span terms grow with gr, so spreading the cache helps only so far:
placement.py gives each layer's cache the gr (per KV head) at which this is no slower than the layer's slowest
matvec, computed with `attention_phases` and `matvec_phases` below, when the wafer has the PEs to spare.

Elementwise ops work on the PEs that hold the vector: RMSNorm on the top row of the matrix it feeds (tn values
per PE): B (2 tn + X) / m32 + 2 gc h (sum of squares reduced along the row, the scale sent back); RoPE on the
outputs of wq and wk (tm per PE): B tm ROPE_FMACS / m32; SwiGLU on w_gate's outputs: B tm (X + 2) / m32;
residual adds B tm / m32. Each is one task (T).
Moving a vector of n values from block A to block B: manhattan(A.origin, B.origin) h + B ceil(n a / W / lanes)
with lanes = min(A's output lanes, B's input lanes); between wafers: link latency + B n a / link bandwidth.

Decode (one token, context c): host in -> embedding lookup -> per layer, in dependency order
    norm -> {q, k, v} -> RoPE -> attention -> o -> residual -> norm -> {gate, up} -> SwiGLU -> down -> residual
({} run in parallel on different PEs: the slowest counts) -> final norm -> lm_head + argmax -> host out.
Prefill of P tokens: the layers form a pipeline. A micro-batch of B tokens (as many x slices and partial-sum
sets as a PE's weight budget holds beside its tile) makes each matvec a small matrix product that reads its
weights once. time = fill (the first micro-batch through every stage) + (ceil(P / B) - 1) x the slowest stage,
a stage being the embedding, one layer, or a wafer link; attention uses the average context (P + 1) / 2.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..model.config import ModelConfig
from .placement import PARTIAL_BYTES, KVPlacement, MatrixPlacement, Placement
from .spec import DTYPE_BYTES, WaferSpec

WIRE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 2}  # activations on the fabric; int8 is weight-only
ROPE_FMACS = 4  # per element: 2 for the rotation, 2 for advancing cos/sin one position by angle addition
TOKEN_BYTES = 4  # a token id, int32


@dataclass(frozen=True)
class Breakdown:
    """Cycles of one decode step or one prefill, by op."""

    ops: dict[str, float] = field(hash=False)  # op name -> cycles
    clock_hz: float
    tokens: int = 1  # tokens this covers

    @property
    def total_cycles(self) -> float:
        return sum(self.ops.values())

    @property
    def seconds(self) -> float:
        return self.total_cycles / self.clock_hz

    def __str__(self) -> str:
        total = self.total_cycles
        lines = [f"{total:,.0f} cycles = {self.seconds * 1e6:,.1f} us for {self.tokens} token(s)"]
        for op, cycles in sorted(self.ops.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {op:<18} {cycles:>14,.0f}  {100 * cycles / total:5.1f}%")
        return "\n".join(lines)


def wavelets(spec: WaferSpec, dtype: str, n: float) -> int:
    """Wavelets that carry n activations of `dtype` (WIRE_BYTES each)."""
    return math.ceil(n * WIRE_BYTES[dtype] / spec.wavelet_bytes)


def matvec_phases(spec: WaferSpec, dtype: str, tm: int, tn: int, gc: int, span: int, B: int) -> dict[str, float]:
    """broadcast, mac and reduce cycles of one matvec on a grid of tm x tn tiles (module docstring)."""
    m, b = spec.macs_per_cycle(dtype), DTYPE_BYTES[dtype]
    return {
        "broadcast": span * spec.hop_cycles + B * wavelets(spec, dtype, tn),
        "mac": max(B * tm * tn / m, tm * tn * b / spec.sram_read_bytes_per_cycle),
        "reduce": gc * spec.hop_cycles + B * tm,
    }


def attention_phases(spec: WaferSpec, config: ModelConfig, dtype: str, context: float, pes_per_head: int,
                     span: int, B: int) -> dict[str, float]:
    """q_in, scores, softmax, values and reduce cycles of attention over `context` positions striped across
    `pes_per_head` PEs per KV head (module docstring). The local phases shrink as 1 / pes_per_head; the reduce of
    the partial outputs down the column grows with its span: placement.py spreads the cache to balance the two."""
    m, m32, b = spec.macs_per_cycle(dtype), spec.macs_per_cycle("fp32"), DTYPE_BYTES[dtype]
    g, hd = config.n_heads / config.n_kv_heads, config.head_dim
    p = math.ceil(context / pes_per_head)  # positions per PE
    kv_read = p * hd * b / spec.sram_read_bytes_per_cycle  # one head's K (or V) for p positions
    return {
        "q_in": span * spec.hop_cycles + B * wavelets(spec, dtype, (g + 2) * hd),  # q of the group, new k and v
        "scores": max(B * p * g * hd / m, kv_read),
        "softmax": B * p * g * (spec.transcendental_fmacs + 1) / m32,  # exp and running sum
        "values": max(B * p * g * hd / m, kv_read),  # weighted sum of V
        "reduce": span * spec.hop_cycles + B * g * (hd + 2),  # partial outputs, max and sum, down the column
    }


class _Model:
    """The per-op costs for one placement; every method returns a Counter of op -> cycles for B tokens."""

    def __init__(self, p: Placement):
        self.p, self.s, self.cfg = p, p.spec, p.config
        self.m32 = self.s.macs_per_cycle("fp32")
        self.a = WIRE_BYTES[p.dtype]
        self.b = self.p.matrices[0].dtype_bytes

    def wavelets(self, n: float) -> int:
        return wavelets(self.s, self.p.dtype, n)

    def matvec(self, m: MatrixPlacement, B: int, lm_head: bool = False) -> Counter:
        s = self.s
        phases = matvec_phases(s, self.p.dtype, m.tm, m.tn, m.gc, m.span, B)
        ops = Counter({"task_overhead": 3 * s.task_overhead_cycles})
        for phase, cycles in phases.items():
            ops["lm_head" if lm_head else f"matvec.{phase}"] += cycles
        return ops

    def attention(self, kv: KVPlacement, context: float, B: int) -> Counter:
        cycles = sum(attention_phases(self.s, self.cfg, self.p.dtype, context, kv.gr, kv.span, B).values())
        return Counter({"attention": cycles, "task_overhead": 5 * self.s.task_overhead_cycles})

    def elementwise(self, op: str, per_pe: float, B: int, hops: int = 0) -> Counter:
        return Counter({op: B * per_pe / self.m32 + hops * self.s.hop_cycles,
                        "task_overhead": self.s.task_overhead_cycles})

    def norm(self, m: MatrixPlacement, B: int) -> Counter:
        return self.elementwise("norm", 2 * m.tn + self.s.transcendental_fmacs, B, hops=2 * m.gc)

    def move(self, src, dst, n: int, B: int, streaming: bool = False) -> Counter:
        """A vector of n values from src's outputs to dst's inputs; `streaming` leaves out link latency (it
        overlaps with the micro-batches already on the wire)."""
        s = self.s
        if src.wafer != dst.wafer:
            latency = 0.0 if streaming else s.wafer_link_latency_s
            return Counter({"wafer_link": (latency + B * n * self.a / s.wafer_link_bytes_per_s) * s.clock_hz})
        out_lanes = src.gc if isinstance(src, KVPlacement) else src.gr
        hops = abs(src.origin[0] - dst.origin[0]) + abs(src.origin[1] - dst.origin[1])
        return Counter({"region_hops": hops * s.hop_cycles + B * math.ceil(self.wavelets(n) / min(out_lanes, dst.gc))})

    def host(self, n_bytes: float) -> Counter:
        s = self.s
        return Counter({"host_io": (s.host_io_latency_s + n_bytes / s.host_io_bytes_per_s) * s.clock_hz})

    def embedding(self, B: int) -> Counter:
        """Look up B rows: each of the row's gc PEs reads its tn values."""
        m = self.p.matrix("embedding")
        return Counter({"embedding": B * m.tn * self.b / self.s.sram_read_bytes_per_cycle,
                        "task_overhead": self.s.task_overhead_cycles})

    def layer(self, l: int, context: float, B: int) -> Counter:
        """One layer for B tokens, from its input at wq's top row to its output at w_down's last column."""
        M = lambda name: self.p.matrix(name, l)  # noqa: E731
        cfg, kv = self.cfg, self.p.kv[l]
        d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        slowest = lambda *ops: max(ops, key=lambda c: sum(c.values()))  # noqa: E731
        ops = self.norm(M("wq"), B)
        ops += slowest(*(self.move(M("wq"), M(n), d, B) for n in ("wk", "wv")))  # normed x to k and v too
        ops += slowest(*(self.matvec(M(n), B) for n in ("wq", "wk", "wv")))
        ops += slowest(*(self.elementwise("rope", ROPE_FMACS * M(n).tm, B) for n in ("wq", "wk")))
        ops += slowest(*(self.move(M(n), kv, rows, B) for n, rows in (("wq", cfg.n_heads * hd),
                                                                      ("wk", cfg.n_kv_heads * hd),
                                                                      ("wv", cfg.n_kv_heads * hd))))
        ops += self.attention(kv, context, B)
        ops += self.move(kv, M("wo"), cfg.n_heads * hd, B)
        ops += self.matvec(M("wo"), B)
        ops += self.elementwise("residual", M("wo").tm, B)
        ops += self.move(M("wo"), M("w_gate"), d, B)
        ops += self.norm(M("w_gate"), B)
        ops += self.move(M("w_gate"), M("w_up"), d, B)
        ops += slowest(*(self.matvec(M(n), B) for n in ("w_gate", "w_up")))
        ops += self.move(M("w_up"), M("w_gate"), f, B)  # up's outputs meet gate's
        ops += self.elementwise("swiglu", (self.s.transcendental_fmacs + 2) * M("w_gate").tm, B)
        ops += self.move(M("w_gate"), M("w_down"), f, B)
        ops += self.matvec(M("w_down"), B)
        ops += self.elementwise("residual", M("w_down").tm, B)
        return ops

    def inputs(self) -> list:
        """The block each layer's input comes from: the embedding, then the previous layer's w_down."""
        return [self.p.matrix("embedding")] + [self.p.matrix("w_down", l) for l in range(self.cfg.n_layers - 1)]

    def microbatch(self) -> int:
        """Tokens a PE can hold x slices and partial sums for beside its tile, within the weight budget."""
        budget = self.s.weight_budget_per_pe
        return max(1, min((budget - m.tile_bytes) // (PARTIAL_BYTES * (m.tm + m.tn)) for m in self.p.matrices))


def decode_cycles(placement: Placement, context: int | None = None) -> Breakdown:
    """One decode step with `context` positions in the KV cache (default: the placement's capacity)."""
    context = placement.context if context is None else context
    if not 1 <= context <= placement.context:
        raise ValueError(f"context {context} outside 1..{placement.context}, the KV capacity of this placement")
    x = _Model(placement)
    cfg, lm_head = placement.config, placement.matrix("lm_head")
    ops = x.host(TOKEN_BYTES) + x.embedding(1)
    for l, src in enumerate(x.inputs()):
        ops += x.move(src, placement.matrix("wq", l), cfg.hidden_size, 1) + x.layer(l, context, 1)
    ops += x.move(placement.matrix("w_down", cfg.n_layers - 1), lm_head, cfg.hidden_size, 1)
    ops += x.norm(lm_head, 1)
    ops += x.matvec(lm_head, 1, lm_head=True)
    # argmax: each PE of the output column takes its tm logits' max, then (value, index) pairs go down the column
    ops += Counter({"lm_head": lm_head.tm / x.m32 + lm_head.span * placement.spec.hop_cycles + 2,
                    "task_overhead": placement.spec.task_overhead_cycles})
    ops += x.host(TOKEN_BYTES)
    return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz)


def prefill_cycles(placement: Placement, prompt: int) -> Breakdown:
    """Prefill of `prompt` tokens as a layer pipeline (see the module docstring)."""
    if not 1 <= prompt <= placement.context:
        raise ValueError(f"prompt {prompt} outside 1..{placement.context}, the KV capacity of this placement")
    x = _Model(placement)
    cfg = placement.config
    B = min(prompt, x.microbatch())
    context = (prompt + 1) / 2  # average positions attended
    fill, stages = x.host(TOKEN_BYTES * prompt), [x.embedding(B)]
    fill += stages[0]
    for l, src in enumerate(x.inputs()):
        wq = placement.matrix("wq", l)
        stage = x.layer(l, context, B)
        if src.wafer != wq.wafer:
            stages.append(x.move(src, wq, cfg.hidden_size, B, streaming=True))
            fill += x.move(src, wq, cfg.hidden_size, B)
        else:
            stage += x.move(src, wq, cfg.hidden_size, B)
        stages.append(stage)
        fill += stage
    slowest = max(stages, key=lambda c: sum(c.values()))
    steps = math.ceil(prompt / B) - 1
    ops = fill + Counter({op: steps * cycles for op, cycles in slowest.items()})
    return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz, tokens=prompt)


def first_token_cycles(placement: Placement, prompt: int) -> Breakdown:
    """Time to first token: the prompt's prefill (which runs every prompt token through every layer), then the
    lm_head and argmax of the last position and the token's trip to the host, as a decode step does them. The
    layers do not run again: the first token comes out of the prefill."""
    ops = Counter(prefill_cycles(placement, prompt).ops)
    step = decode_cycles(placement, prompt).ops
    for op in ("lm_head", "host_io"):
        ops[op] += step.get(op, 0)
    return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz, tokens=prompt)
