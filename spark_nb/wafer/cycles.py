"""A cycle model of decode and prefill on a placed model, from the WaferSpec and the Placement alone.

Notation: a matrix sits on a gr x gc grid of tm x tn tiles (placement.py); `span` is the hop distance from its
origin down a PE column (band_rows, plus the hops across the bands of a folded grid). The spec gives h
(hop_cycles), a (relay_cycles: a PE adding its value to a passing wavelet), T (task_overhead_cycles),
W (wavelet_bytes), R (sram_read_bytes_per_cycle), m (MACs per cycle for the weight dtype), m32 (fp32 MACs per
cycle, the rate of elementwise work on fp32 activations), b (weight bytes) and X (fp32 MACs per exp/sigmoid/rsqrt).
Activations travel as WIRE_BYTES[dtype] bytes, v = W / WIRE_BYTES values per wavelet (fp16: two), partial sums as
fp32, one per wavelet. B tokens go through together (B = 1 in decode; a micro-batch in prefill): latency terms are
paid once, volume terms B times.

How the wafer runs each step is a `Design`, one option per published mechanism (each option's docstring names its
source); `DESIGN` is the default, the best-documented choice for each:
    reduction  "tree" (WaferLLM's two-level tree) or "chain" (csl-examples' checkerboard, west -> east)
    streaming  True: the FMACs of a matvec start as its x wavelets arrive, one task per matvec (csl-examples
               checkerboard); False: broadcast, MAC and reduce one after another, a task each
    spread     PEs per tile side on the wafer: None chooses the fastest that fits the wafer (WaferLLM and Cerebras
               spread a model over the PEs they have); 1 keeps placement.py's fewest-PE tiles
    pipeline   True: prefill runs the layers as a pipeline (Cerebras' layer pipelining); False: one micro-batch
               through every layer before the next enters

Reductions of L fp32 values held by each of n PEs in a line (`reduce_cycles`; every PE holds its partials at 0,
a source emits one wavelet per cycle, each relay adds its own value and forwards after a cycles, the end adds its
own too; tests/test_cycles_sim.py runs the same schedule wavelet by wavelet):
    chain      (n - 1)(h + a) + L - 1
    tree       groups of g = ceil(sqrt(n)) PEs; in each, the PEs above and below the group's middle PE chain
               towards it and it sums both streams, one wavelet per cycle; then the group roots do the same
               towards the middle group's root, g hops apart (`_star`). Exact when g divides n, an upper bound
               otherwise. The result is wanted at one PE (the next block's input), so WaferLLM's third phase, the
               broadcast back to every PE of the line, is not charged.

Matrix-vector product (the csl-examples checkerboard GEMV):
    broadcast  span h                             the x slice enters the top row, forwarded down each column; its
                                                  first wavelet reaches the farthest PE row after span hops
    mac        sum over the slice's wavelets of max(ceil(n tm / m), ceil(n tm b / R)), n values in the wavelet:
               each arriving wavelet triggers the FMACs over the tile's n columns, or the SRAM reads feeding them,
               whichever is slower (a PE is never starved: wavelets arrive one per cycle, each takes >= 1 cycle)
    reduce     reduce_cycles(gc, B tm)            fp32 partials of each tile row along its PE row
    overhead   T                                  one task, triggered by the data
Without streaming (and for B > 1): broadcast = span h + B ceil(tn / v), mac = max(B tm tn / m, tm tn b / R) after
it, and 3 T.

Attention over c cached positions, on the KV grid (one PE column per KV head, positions striped round-robin
down it, p = ceil(c / gr) per PE, g = n_heads / n_kv query heads per KV head, hd = head_dim):
    q in       span h + ceil((g + 2) hd / v) - 1  the group's q heads, plus the new k and v to store, reach the
                                                  farthest PE
    scores     max(ceil(B p g hd / m), ceil(p hd b / R))  q.k for the PE's positions; K read once for the group
    softmax    ceil(B p g (X + 1) / m32)          exp and running sum, local to the PE
    values     max(ceil(B p g hd / m), ceil(p hd b / R))  weighted sum of V
    reduce     reduce_cycles(gr, B g (hd + 2))    partial outputs with their max and sum (flash-decoding rescale),
                                                  fp32, once every PE of the column holds its partials
    overhead   2 T (streaming: the local work, the reduce) or 5 T
The local phases fall as 1 / gr and the reduce grows with gr, so spreading the cache helps only so far:
placement.py gives each layer's cache the gr (per KV head) at which this is no slower than the layer's slowest
matvec, computed with `attention_phases` and `matvec_phases` below, when the wafer has the PEs to spare.

Spread (WaferLLM: every GEMV over a P x P mesh; Cerebras: a model laid out over the whole wafer). placement.py
cuts each matrix into the fewest tiles that fit a PE (the tiles the host computes and the heatmap shows); with a
spread (r, c) each such tile is run by r x c PEs holding ceil(tm / r) x ceil(tn / c) of it, and every block,
each KV head on r times the rows and c columns (reduced down the columns, then across), is packed afresh with
compact folds first (`placement.spread_layout`): the geometry the cycle model then reads is that of the packed
blocks. `wafer_layout` ranks the spreads whose PEs fit each wafer by a quick estimate (the fewest-PE layout with
its distances scaled), packs the best three and keeps whichever of them, or the fewest-PE layout, makes a decode
step at the placement's context fastest.

Elementwise ops work on the PEs that hold the vector: RMSNorm on the top row of the matrix it feeds (tn values
per PE): B (2 tn + X) / m32 + reduce_cycles(gc, B) + gc h (sum of squares reduced along the row, the scale sent
back); RoPE on the outputs of wq and wk (tm per PE): B tm ROPE_FMACS / m32; SwiGLU on w_gate's outputs:
B tm (X + 2) / m32; residual adds B tm / m32. Each is one task (T).
Moving a vector of n values from block A to block B: manhattan(A.origin, B.origin) h + B ceil(n / v / lanes)
with lanes = min(A's output lanes, B's input lanes); between wafers: link latency + B n bytes / link bandwidth.

Decode (one token, context c): host in -> embedding lookup -> per layer, in dependency order
    norm -> {q, k, v} -> RoPE -> attention -> o -> residual -> norm -> {gate, up} -> SwiGLU -> down -> residual
({} run in parallel on different PEs: the slowest counts) -> final norm -> lm_head + argmax -> host out.
The layers run one after another: a token's layer l + 1 needs its layer l, so at batch 1 nothing pipelines.
Prefill of P tokens: the layers form a pipeline. A micro-batch of B tokens (as many x slices and partial-sum
sets as a PE's weight budget holds beside its tile) makes each matvec a small matrix product that reads its
weights once. time = fill (the first micro-batch through every stage) + (ceil(P / B) - 1) x the slowest stage,
a stage being the embedding, one layer, or a wafer link; attention uses the average context (P + 1) / 2.
"""
from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from ..model.config import ModelConfig
from .placement import PARTIAL_BYTES, KVPlacement, MatrixPlacement, Placement, spread_layout
from .spec import DTYPE_BYTES, WaferSpec

WIRE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 2}  # activations on the fabric; int8 is weight-only
ROPE_FMACS = 4  # per element: 2 for the rotation, 2 for advancing cos/sin one position by angle addition
TOKEN_BYTES = 4  # a token id, int32
REDUCTIONS = ("best", "tree", "chain")
LAYOUTS = ("regions", "mesh")


@dataclass(frozen=True)
class Design:
    """How the wafer runs a step: one field per published mechanism, the defaults the best documented.

    reduction: how a matvec's partial sums (and attention's partial outputs) are added up along a line of PEs.
        "tree": WaferLLM (He et al., OSDI 2025, arXiv 2502.04563) MeshGEMV's two-level tree allreduce, as coded in
        MeshInfra/WaferLLM MeshGEMV/WSE-3/src/comm_lib/comm_pe.csl `two_tree_allreduce_y`: the line is cut into
        groups, each group's PEs chain towards its middle PE, then the group roots chain towards the middle
        group's root (the repository's decode configs use ~sqrt(P) PEs per group: P = 720, 24 groups of 30).
        "chain": csl-examples gemv-checkerboard-pattern: partial sums passed west -> east along the whole row.
        "best": for each line, whichever of the two is faster. The tree's roots add two streams one wavelet a
        cycle, so for few PEs and long vectors (L > (n / 2)(h + a)) the chain wins; WaferLLM itself makes the
        group count a parameter chosen per shape (its README: "a trade-off between routing resources and
        allreduce latency"), and a compiler would choose likewise.
    streaming: csl-examples gemv-checkerboard-pattern: each x wavelet arriving down a PE column triggers the FMACs
        over the tile's columns it carries, so the broadcast overlaps the MACs and a matvec is one data-triggered
        task. False: the three phases one after another, each a task activation (the model before issue 21).
    spread: (rows, cols) of PEs per tile. WaferLLM runs every GEMV on a P x P mesh of up to 720 x 720 PEs ("wafer-scale
        LLM parallelism" partitions each weight over both mesh axes); Cerebras describes a model laid out over
        the whole wafer with its weights stationary in SRAM (WAFER.md). None: the fastest s that fits
        (`spread_for`); (1, 1): placement.py's fewest-PE tiles (the model before issue 21).
    layout: "regions": every matrix (and each layer's KV cache) on a region of its own, as placement.py packs them,
        activations travelling from region to region (Cerebras describes layers laid out over the wafer and
        pipelined). "mesh": WaferLLM's "wafer-scale LLM parallelism", as in MeshInfra/WaferLLM
        Decode/WSE-3/src/decode.csl: every matrix of every layer, the KV cache included, cut over the same P x P
        PEs, so each GEMV uses all of them; x stays where the previous allreduce left it (consecutive GEMVs reduce
        along alternating axes), so nothing moves between regions, but every GEMV ends in an allreduce across P
        PEs (`allreduce_cycles`) and layers cannot pipeline. P is the fastest side that holds the model in each
        PE's weight budget (`mesh_side`); layers are split evenly across wafers, a link between each.
    pipeline: Cerebras' layer pipelining (each layer its own region of the wafer, activations streaming from
        region to region; across wafers over the system's links): prefill's micro-batches overlap, one per layer.
        False: each micro-batch goes through every layer before the next one starts.

    Not an option: the KV cache's layout. placement.py stripes a head's positions round-robin down its column, so
    every PE holds an even share and a new token's k and v ride down with q to PE (position mod rows). WaferLLM
    keeps its cache balanced by shifting entries between neighbouring PEs as tokens arrive (its "shift-based KV
    cache"; the paper's description of it was not reachable from here, only summaries of it, and the public decode
    code keeps a static cache tile). A shift moves one position's k and v per PE per step to a neighbour and can run
    while the following layers compute, so it would add capacity balance, which striping already has, and no
    cycles to a step's critical path; it is left out rather than charged.
    """

    reduction: str = "best"
    streaming: bool = True
    spread: tuple[int, int] | None = None
    layout: str = "regions"
    pipeline: bool = True

    def __post_init__(self):
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.spread is not None and min(self.spread) < 1:
            raise ValueError(f"spread must be None or (rows, cols) >= 1, got {self.spread}")


DESIGN = Design()
BEFORE_ISSUE_21 = Design(reduction="chain", streaming=False, spread=(1, 1))  # for comparison (notebook 03)


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


# ---------------------------------------------------------------------------------------------- reductions

def _merge(first: list[float], start: float, L: int) -> float:
    """When a PE that starts at `start` has summed streams of L wavelets, one a cycle, whose first wavelets reach
    it at `first`: it takes one wavelet a cycle in arrival order (the last one done at max over the streams, latest
    first, of first + the wavelets from there on - 1)."""
    if not first:
        return start
    a = sorted(max(f, start) for f in first)
    last = max(a[j] + (len(a) - j) * L for j in range(len(a))) - 1
    return last


def _star(spec: WaferSpec, n: int, L: int, spacing: int, start: float) -> float:
    """n PEs in a line, `spacing` hops apart, each with L values from `start`: those before and after the middle one
    (n // 2) chain their sums towards it, which adds both streams. -> when its last sum is done."""
    h, a = spec.hop_cycles, spec.relay_cycles
    r = n // 2
    first = [start + k * spacing * h + (k - 1) * a for k in (r, n - 1 - r) if k > 0]
    return _merge(first, start, L) + a


def reduce_cycles(spec: WaferSpec, reduction: str, n: int, L: int) -> float:
    """Cycles from every one of n PEs in a line holding L fp32 partials to their sums done at one PE (module
    docstring): "chain" to the end of the line, "tree" (WaferLLM's two levels) to the middle group's root."""
    if n <= 1:
        return 0
    chain = (n - 1) * (spec.hop_cycles + spec.relay_cycles) + L - 1
    if reduction == "chain":
        return chain
    g = math.ceil(math.sqrt(n))  # PEs per group
    groups = math.ceil(n / g)
    first = _star(spec, g, L, 1, 0)
    tree = first if groups == 1 else _star(spec, groups, L, g, first)
    return tree if reduction == "tree" else min(chain, tree)


def allreduce_cycles(spec: WaferSpec, reduction: str, n: int, L: int) -> float:
    """reduce_cycles, then the sums multicast back to all n PEs from where they were summed: the middle group's root
    for the tree, the end of the line for the chain (WaferLLM's third phase); "best": the faster of the two."""
    if n <= 1:
        return 0
    if reduction == "best":
        return min(allreduce_cycles(spec, r, n, L) for r in ("chain", "tree"))
    if reduction == "chain":
        far = n - 1
    else:
        g = math.ceil(math.sqrt(n))
        root = (math.ceil(n / g) // 2) * g + g // 2  # the middle group's root
        far = max(root, n - 1 - root)
    return reduce_cycles(spec, reduction, n, L) + far * spec.hop_cycles + L - 1


# ---------------------------------------------------------------------------------------------- kernels

def _fmac_cycles(spec: WaferSpec, dtype: str, n: float, weight_bytes: float | None = None) -> int:
    """Whole cycles for n FMACs on weights of `dtype`: the SIMD rate or the SRAM reads feeding it, the slower; the
    weights take weight_bytes each where given (a GGUF block format's real share), else the dtype's."""
    b = DTYPE_BYTES[dtype] if weight_bytes is None else weight_bytes
    return max(math.ceil(n / spec.macs_per_cycle(dtype)), math.ceil(n * b / spec.sram_read_bytes_per_cycle))


def matvec_phases(spec: WaferSpec, dtype: str, tm: int, tn: int, gc: int, span: int, B: int,
                  design: Design = DESIGN, weight_bytes: float | None = None) -> dict[str, float]:
    """broadcast, mac and reduce cycles of one matvec on a grid of tm x tn tiles (module docstring); weight_bytes:
    what a weight takes in SRAM where not the dtype's (a GGUF block format: its integers are computed in `dtype`)."""
    m, h = spec.macs_per_cycle(dtype), spec.hop_cycles
    b = DTYPE_BYTES[dtype] if weight_bytes is None else weight_bytes
    reduce = reduce_cycles(spec, design.reduction, gc, B * tm)
    if design.streaming and B == 1:
        v = spec.wavelet_bytes // WIRE_BYTES[dtype]  # values per wavelet
        full, rest = divmod(tn, v)
        mac = (full * _fmac_cycles(spec, dtype, v * tm, b)
               + (_fmac_cycles(spec, dtype, rest * tm, b) if rest else 0))
        return {"broadcast": span * h, "mac": mac, "reduce": reduce}
    return {
        "broadcast": span * h + B * wavelets(spec, dtype, tn),
        "mac": max(B * tm * tn / m, tm * tn * b / spec.sram_read_bytes_per_cycle),
        "reduce": reduce,
    }


def attention_phases(spec: WaferSpec, config: ModelConfig, dtype: str, context: float, pes_per_head: int,
                     span: int, B: int, design: Design = DESIGN, cols_per_head: int = 1) -> dict[str, float]:
    """q_in, scores, softmax, values and reduce cycles of attention over `context` positions striped across
    `pes_per_head` PEs per KV head, in `cols_per_head` columns (module docstring). The local phases shrink as
    1 / pes_per_head; the reduce of the partial outputs grows with the column: placement.py spreads the cache to
    balance the two."""
    m32 = spec.macs_per_cycle("fp32")
    g, hd = config.n_heads / config.n_kv_heads, config.head_dim
    p = math.ceil(context / pes_per_head)  # positions per PE
    rows = math.ceil(pes_per_head / cols_per_head)
    q = wavelets(spec, dtype, (g + 2) * hd)  # q of the group, new k and v
    L = math.ceil(B * g * (hd + 2))  # partial outputs, max and sum, fp32
    if design.streaming and B == 1:
        q_in = span * spec.hop_cycles + q - 1
    else:
        q_in = span * spec.hop_cycles + B * q
    dot = max(math.ceil(B * p * g * hd / spec.macs_per_cycle(dtype)), _fmac_cycles(spec, dtype, p * hd))
    reduce = reduce_cycles(spec, design.reduction, rows, L)
    if cols_per_head > 1:
        reduce += reduce_cycles(spec, design.reduction, cols_per_head, L)
    return {
        "q_in": q_in,
        "scores": dot,  # q.k; K read once for the group
        "softmax": math.ceil(B * p * g * (spec.transcendental_fmacs + 1) / m32),  # exp and running sum
        "values": dot,  # weighted sum of V
        "reduce": reduce,
    }


# ---------------------------------------------------------------------------------------------- the model

class _Model:
    """The per-op costs for one placement and design; every method returns a Counter of op -> cycles for B tokens.
    Geometry goes through `spread` (s): tiles s times smaller a side, grids and distances s times larger."""

    def __init__(self, p: Placement, design: Design, spread: tuple[int, int] = (1, 1)):
        self.p, self.s, self.cfg, self.d = p, p.spec, p.config, design
        self.sr, self.sc = spread
        self.m32 = self.s.macs_per_cycle("fp32")
        self.a = WIRE_BYTES[p.dtype]
        self.tasks = (1, 2) if design.streaming else (3, 5)  # task activations per matvec, per attention

    def wavelets(self, n: float) -> int:
        return wavelets(self.s, self.p.dtype, n)

    def tile(self, m: MatrixPlacement) -> tuple[int, int, int, int]:
        """(tm, tn, gc, span) of a matrix as spread."""
        return math.ceil(m.tm / self.sr), math.ceil(m.tn / self.sc), m.gc * self.sc, m.span * self.sr

    def matvec(self, m: MatrixPlacement, B: int, lm_head: bool = False) -> Counter:
        s = self.s
        tm, tn, gc, span = self.tile(m)
        phases = matvec_phases(s, self.p.dtype, tm, tn, gc, span, B, self.d, m.weight_bytes)
        ops = Counter({"task_overhead": self.tasks[0] * s.task_overhead_cycles})
        for phase, cycles in phases.items():
            ops["lm_head" if lm_head else f"matvec.{phase}"] += cycles
        return ops

    def attention(self, kv: KVPlacement, context: float, B: int) -> Counter:
        rows, cols = kv.gr * self.sr, kv.cols_per_head * self.sc  # PEs of one head
        phases = attention_phases(self.s, self.cfg, self.p.dtype, context, rows * cols, kv.span * self.sr, B, self.d,
                                  cols_per_head=cols)
        return Counter({"attention.q_in": phases["q_in"], "attention.reduce": phases["reduce"],
                        "attention": phases["scores"] + phases["softmax"] + phases["values"],
                        "task_overhead": self.tasks[1] * self.s.task_overhead_cycles})

    def elementwise(self, op: str, per_pe: float, B: int, hops: float = 0) -> Counter:
        return Counter({op: B * per_pe / self.m32 + hops, "task_overhead": self.s.task_overhead_cycles})

    def norm(self, m: MatrixPlacement, B: int) -> Counter:
        """Sum of squares over the row's tn values, reduced along the row, the scale sent back along it."""
        _, tn, gc, _ = self.tile(m)
        hops = reduce_cycles(self.s, self.d.reduction, gc, B) + gc * self.s.hop_cycles
        return self.elementwise("norm", 2 * tn + self.s.transcendental_fmacs, B, hops=hops)

    def move(self, src, dst, n: int, B: int, streaming: bool = False) -> Counter:
        """A vector of n values from src's outputs to dst's inputs; `streaming` leaves out link latency (it
        overlaps with the micro-batches already on the wire)."""
        s, sr, sc = self.s, self.sr, self.sc
        if src.wafer != dst.wafer:
            latency = 0.0 if streaming else s.wafer_link_latency_s
            return Counter({"wafer_link": (latency + B * n * self.a / s.wafer_link_bytes_per_s) * s.clock_hz})
        out_lanes = src.gc * sc if isinstance(src, KVPlacement) else src.gr * sr
        hops = abs(src.origin[0] - dst.origin[0]) * sr + abs(src.origin[1] - dst.origin[1]) * sc
        return Counter({"region_hops": hops * s.hop_cycles
                        + B * math.ceil(self.wavelets(n) / min(out_lanes, dst.gc * sc))})

    def host(self, n_bytes: float) -> Counter:
        s = self.s
        return Counter({"host_io": (s.host_io_latency_s + n_bytes / s.host_io_bytes_per_s) * s.clock_hz})

    def embedding(self, B: int) -> Counter:
        """Look up B rows: each of the row's gc PEs reads its tn values."""
        embedding = self.p.matrix("embedding")
        _, tn, _, _ = self.tile(embedding)
        return Counter({"embedding": B * tn * embedding.weight_bytes / self.s.sram_read_bytes_per_cycle,
                        "task_overhead": self.s.task_overhead_cycles})

    def layer(self, l: int, context: float, B: int) -> Counter:
        """One layer for B tokens, from its input at wq's top row to its output at w_down's last column."""
        M = lambda name: self.p.matrix(name, l)  # noqa: E731
        cfg, kv = self.cfg, self.p.kv[l]
        d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        slowest = lambda *ops: max(ops, key=lambda c: sum(c.values()))  # noqa: E731
        tm = lambda name: self.tile(M(name))[0]  # noqa: E731
        ops = self.norm(M("wq"), B)
        ops += slowest(*(self.move(M("wq"), M(n), d, B) for n in ("wk", "wv")))  # normed x to k and v too
        ops += slowest(*(self.matvec(M(n), B) for n in ("wq", "wk", "wv")))
        ops += slowest(*(self.elementwise("rope", ROPE_FMACS * tm(n), B) for n in ("wq", "wk")))
        ops += slowest(*(self.move(M(n), kv, rows, B) for n, rows in (("wq", cfg.n_heads * hd),
                                                                      ("wk", cfg.n_kv_heads * hd),
                                                                      ("wv", cfg.n_kv_heads * hd))))
        ops += self.attention(kv, context, B)
        ops += self.move(kv, M("wo"), cfg.n_heads * hd, B)
        ops += self.matvec(M("wo"), B)
        ops += self.elementwise("residual", tm("wo"), B)
        ops += self.move(M("wo"), M("w_gate"), d, B)
        ops += self.norm(M("w_gate"), B)
        ops += self.move(M("w_gate"), M("w_up"), d, B)
        ops += slowest(*(self.matvec(M(n), B) for n in ("w_gate", "w_up")))
        ops += self.move(M("w_up"), M("w_gate"), f, B)  # up's outputs meet gate's
        ops += self.elementwise("swiglu", (self.s.transcendental_fmacs + 2) * tm("w_gate"), B)
        ops += self.move(M("w_gate"), M("w_down"), f, B)
        ops += self.matvec(M("w_down"), B)
        ops += self.elementwise("residual", tm("w_down"), B)
        return ops

    def inputs(self) -> list:
        """The block each layer's input comes from: the embedding, then the previous layer's w_down."""
        return [self.p.matrix("embedding")] + [self.p.matrix("w_down", l) for l in range(self.cfg.n_layers - 1)]

    def microbatch(self) -> int:
        """Tokens a PE can hold x slices and partial sums for beside its tile, within the weight budget."""
        budget = self.s.weight_budget_per_pe
        sizes = [(*self.tile(m)[:2], m.weight_bytes) for m in self.p.matrices]
        return max(1, min(int((budget - tm * tn * b) // (PARTIAL_BYTES * (tm + tn))) for tm, tn, b in sizes))


def spread_pes(placement: Placement, spread: tuple[int, int]) -> list[int]:
    """PEs each wafer would use with every tile run by rows x cols PEs (and its KV cache on as many times more)."""
    used = [0] * placement.n_wafers
    for block in (*placement.matrices, *placement.kv):
        used[block.wafer] += block.pes * spread[0] * spread[1]
    return used


def _candidates(placement: Placement, design: Design) -> list[tuple[int, int]]:
    """Spreads worth packing, best first by a quick estimate: (s, s), (s, s + 1), (s + 1, s) for s = 1, 2, ...
    whose PEs fit every wafer, ranked by a decode step on the fewest-PE layout with every distance scaled by the
    spread (the search stops once three s in a row improve on nothing)."""
    ranked, s, stale, best = [], 1, 0, math.inf
    while stale < 3:
        fits = [k for k in ((s, s), (s, s + 1), (s + 1, s)) if max(spread_pes(placement, k)) <= placement.spec.pes]
        if not fits:
            break
        stale += 1
        for k in fits:
            cycles = _decode(placement, placement.context, design, k).total_cycles
            ranked.append((cycles, k))
            if cycles < best:
                best, stale = cycles, 0
        s += 1
    return [k for _, k in sorted(ranked)]


_FOUND: dict = {}  # (placement, design) -> the layout an earlier search found for it (`remember_layout`)


def remember_layout(placement: Placement, layout: Placement, design: Design = DESIGN) -> None:
    """Have wafer_layout return `layout` for placement and design without searching: what the search found for the
    same placement before (an engine's tile cache keeps it; the search takes ~0.5 s for a 0.5B model)."""
    if len(_FOUND) >= 64:  # never asked for (wafer_layout had it memoised already)
        _FOUND.clear()
    _FOUND[placement, design] = layout


@lru_cache(maxsize=64)
def wafer_layout(placement: Placement, design: Design = DESIGN) -> Placement:
    """The layout a design runs `placement` on (placement.spread_layout): its own spread, or (None) of the three
    best candidates (`_candidates`) and the fewest-PE layout itself, the one that packs and makes a decode step at
    the placement's context fastest, its distances now those of the packed blocks."""
    if (placement, design) in _FOUND:
        return _FOUND.pop((placement, design))
    if design.spread is not None:
        layout = spread_layout(placement, design.spread)
        if layout is None:
            raise ValueError(f"spread {design.spread} does not pack onto {placement.n_wafers} x {placement.spec.name}")
        return layout
    layouts = [placement] + [x for x in (spread_layout(placement, k) for k in _candidates(placement, design)[:3])
                             if x is not None]
    return min(layouts, key=lambda x: _decode(x, placement.context, design, (1, 1)).total_cycles)


def spread_for(placement: Placement, design: Design = DESIGN) -> tuple[int, int]:
    """(rows, cols) of PEs that run each of placement's tiles in the design's layout."""
    layout = wafer_layout(placement, design)
    m, n = placement.matrices[0], layout.matrix(placement.matrices[0].name, placement.matrices[0].layer)
    return (round(m.tm / n.tm), round(m.tn / n.tn)) if layout is not placement else (1, 1)


def _decode(placement: Placement, context: int, design: Design, spread: tuple[int, int]) -> Breakdown:
    x = _Model(placement, design, spread)
    cfg, lm_head = placement.config, placement.matrix("lm_head")
    ops = x.host(TOKEN_BYTES) + x.embedding(1)
    for l, src in enumerate(x.inputs()):
        ops += x.move(src, placement.matrix("wq", l), cfg.hidden_size, 1) + x.layer(l, context, 1)
    ops += x.move(placement.matrix("w_down", cfg.n_layers - 1), lm_head, cfg.hidden_size, 1)
    ops += x.norm(lm_head, 1)
    ops += x.matvec(lm_head, 1, lm_head=True)
    # argmax: each PE of the output column takes its tm logits' max, then (value, index) pairs go down the column
    tm, _, _, span = x.tile(lm_head)
    ops += Counter({"lm_head": tm / x.m32 + span * placement.spec.hop_cycles + 2,
                    "task_overhead": placement.spec.task_overhead_cycles})
    ops += x.host(TOKEN_BYTES)
    return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz)


def decode_cycles(placement: Placement, context: int | None = None, design: Design = DESIGN) -> Breakdown:
    """One decode step with `context` positions in the KV cache (default: the placement's capacity)."""
    context = placement.context if context is None else context
    if not 1 <= context <= placement.context:
        raise ValueError(f"context {context} outside 1..{placement.context}, the KV capacity of this placement")
    if design.layout == "mesh":
        ops = _mesh_pass(placement, design, mesh_side(placement, design), context, 1)
        return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz)
    return _decode(wafer_layout(placement, design), context, design, (1, 1))


def prefill_cycles(placement: Placement, prompt: int, design: Design = DESIGN, start: int = 0) -> Breakdown:
    """Prefill of `prompt` tokens as a layer pipeline (see the module docstring), after `start` tokens already in
    the KV cache."""
    if not 1 <= start + prompt <= placement.context or prompt < 1 or start < 0:
        raise ValueError(f"tokens {start}..{start + prompt} outside 1..{placement.context}, the KV capacity of "
                         "this placement")
    if design.layout == "mesh":
        return _mesh_prefill(placement, prompt, design, start)
    placement = wafer_layout(placement, design)
    x = _Model(placement, design)
    cfg = placement.config
    B = min(prompt, x.microbatch())
    context = start + (prompt + 1) / 2  # average positions attended
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
    steps = math.ceil(prompt / B) - 1
    if design.pipeline:  # one micro-batch leaves the slowest stage per step
        slowest = max(stages, key=lambda c: sum(c.values()))
    else:  # every micro-batch goes through every stage before the next starts
        slowest = fill - x.host(TOKEN_BYTES * prompt)
    ops = fill + Counter({op: steps * cycles for op, cycles in slowest.items()})
    return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz, tokens=prompt)


def first_token_cycles(placement: Placement, prompt: int, design: Design = DESIGN) -> Breakdown:
    """Time to first token: the prompt's prefill (which runs every prompt token through every layer), then the
    lm_head and argmax of the last position and the token's trip to the host, as a decode step does them. The
    layers do not run again: the first token comes out of the prefill."""
    ops = Counter(prefill_cycles(placement, prompt, design).ops)
    step = decode_cycles(placement, prompt, design).ops
    for op in ("lm_head", "host_io"):
        ops[op] += step.get(op, 0)
    return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz, tokens=prompt)


def feed_cycles(placement: Placement, start: int, tokens: int, logits: int = 1, design: Design = DESIGN) -> Breakdown:
    """`tokens` tokens fed at once after `start` in the cache, with next-token logits after `logits` of them: a
    speculative draft checked in one pass, or lines an edit copies from the cell. On the wafer they go through the
    layers as a prefill does (pipelined, `design.pipeline`), not as `tokens` decode steps one after another; each
    logits row then takes the lm_head and its argmax (charged one after another: an upper bound) and the result
    goes to the host once."""
    ops = Counter(prefill_cycles(placement, tokens, design, start).ops)
    step = decode_cycles(placement, start + tokens, design).ops
    ops["lm_head"] += logits * step.get("lm_head", 0)
    ops["host_io"] += step.get("host_io", 0) / 2  # the answer out; the tokens came in with the prefill
    return Breakdown(ops=dict(ops), clock_hz=placement.spec.clock_hz, tokens=tokens)


def _line(points: list[tuple[float, float]], c: float) -> float:
    """The line through two (c, y) points at c (their y when both have the same c)."""
    (c0, y0), (c1, y1) = points
    return y0 if c1 == c0 else y0 + (y1 - y0) * (c - c0) / (c1 - c0)


class FeedCost:
    """`feed_cycles(placement, start, tokens, logits).seconds`, fitted from eight evaluations: each takes
    milliseconds (3-18 ms from the built-in model to a 0.5B), and an engine asks once per verified draft, whose host
    forward takes a fraction of a millisecond for the built-in model. Regions layout only (what the engine runs).

    How prefill_cycles charges a feed says what to fit: up to m tokens (a micro-batch, the most a PE takes at once)
    go through the layers together, one token by the streaming matvec and 2 or more by the batched one, at a cost
    near-affine in the tokens from 2 to m and, through attention, in the mean context c = start + (tokens + 1) / 2;
    each further micro-batch adds one step of the slowest stage, near-affine in c too. So: lines in c at 1, 2 and
    m tokens, interpolated in the tokens from 2 to m; beyond m, the m-token line plus a step line in c per further
    micro-batch; logits rows beyond the first add the lm_head exactly. The ceilings make it approximate: against
    feed_cycles at ~1,500 (start, tokens, logits) points, within 1.2 % for the built-in model and 1.7 % for
    Qwen2.5-0.5B at context 2048 (tests/test_cycles.py checks a coarser grid)."""

    def __init__(self, placement: Placement, design: Design = DESIGN):
        if design.layout != "regions":
            raise ValueError("FeedCost fits the regions layout's pipelined prefill")
        context = placement.context
        self.m = min(_Model(wafer_layout(placement, design), design).microbatch(), context)

        def line(tokens: int) -> list[tuple[float, float]]:  # (c, seconds) at the first and the last start
            return [(start + (tokens + 1) / 2, feed_cycles(placement, start, tokens, design=design).seconds)
                    for start in (0, context - tokens)]

        self._knots = sorted({1, min(2, self.m), self.m})
        self._lines = [line(k) for k in self._knots]
        self._step = ([(c, s - _line(self._lines[-1], c)) for c, s in line(min(2 * self.m, context))]
                      if self.m < context else None)  # one micro-batch more: min(2m, context) > m tokens
        self._lm_head = decode_cycles(placement, 1, design).ops.get("lm_head", 0) / placement.spec.clock_hz

    def __call__(self, start: int, tokens: int, logits: int = 1) -> float:
        c, knots, lines = start + (tokens + 1) / 2, self._knots, self._lines
        extra = (logits - 1) * self._lm_head
        if tokens > self.m:
            return _line(lines[-1], c) + (math.ceil(tokens / self.m) - 1) * _line(self._step, c) + extra
        j = bisect.bisect_left(knots, tokens)
        if knots[j] == tokens:
            return _line(lines[j], c) + extra
        u = (tokens - knots[j - 1]) / (knots[j] - knots[j - 1])
        return (1 - u) * _line(lines[j - 1], c) + u * _line(lines[j], c) + extra


# ---------------------------------------------------------------------------------------------- the mesh layout

class _Mesh:
    """Design.layout == "mesh": every matrix over the same P x P PEs (WaferLLM); methods return Counters for B
    tokens through one wafer's layers. An input dimension n sits ceil(n / P) to a PE along one axis, an output
    dimension along the other; attention as WaferLLM's decode code computes it: scores a GEMV over the K cache
    (dimensions along one axis, positions along the other), softmax with allreduces of the max and the sum,
    values a GEMV over the V cache."""

    def __init__(self, p: Placement, design: Design, side: int):
        self.p, self.s, self.cfg, self.d, self.P = p, p.spec, p.config, design, side
        self.dtype, self.m32 = p.dtype, self.s.macs_per_cycle("fp32")

    def per(self, n: float) -> int:
        return math.ceil(n / self.P)

    def allreduce(self, op: str, L: float) -> Counter:
        return Counter({op: allreduce_cycles(self.s, self.d.reduction, self.P, math.ceil(L)),
                        "task_overhead": self.s.task_overhead_cycles})

    def gemv(self, op: str, shapes, B: int) -> Counter:
        """Local FMACs of one or more [out, in] matrices (one PE does them one after another), then one fused
        allreduce of their outputs (WaferLLM fuses q/k/v and up/gate so)."""
        s, macs = self.s, 0
        for out, inp in shapes:
            n = self.per(out) * self.per(inp)
            macs += max(math.ceil(B * n / s.macs_per_cycle(self.dtype)), _fmac_cycles(s, self.dtype, n))
        return (Counter({f"{op}.mac": macs, "task_overhead": s.task_overhead_cycles})
                + self.allreduce(f"{op}.reduce", B * sum(self.per(out) for out, _ in shapes)))

    def local(self, op: str, fmacs: float) -> Counter:
        return Counter({op: math.ceil(fmacs / self.m32), "task_overhead": self.s.task_overhead_cycles})

    def norm(self, B: int) -> Counter:
        d, X = self.cfg.hidden_size, self.s.transcendental_fmacs
        return self.local("norm", B * (2 * self.per(d) + X)) + self.allreduce("norm", B)

    def attention(self, context: float, B: int) -> Counter:
        cfg, s = self.cfg, self.s
        q_dims, kv_dims = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
        pos = self.per(context)
        dot = max(math.ceil(B * self.per(q_dims) * pos / s.macs_per_cycle(self.dtype)),
                  _fmac_cycles(s, self.dtype, self.per(kv_dims) * pos))  # K (or V) read once for the group
        ops = Counter({"attention": 2 * dot, "task_overhead": 2 * s.task_overhead_cycles})
        ops += self.allreduce("attention.reduce", B * pos * max(1, cfg.n_heads / self.P))  # scores
        ops += self.allreduce("attention.reduce", B) + self.allreduce("attention.reduce", B)  # max, sum
        ops += self.local("attention", B * pos * (s.transcendental_fmacs + 1))  # exp, scale
        ops += self.allreduce("attention.reduce", B * self.per(q_dims))  # weighted V
        return ops

    def layer(self, context: float, B: int) -> Counter:
        cfg = self.cfg
        d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        nq, nkv = cfg.n_heads * hd, cfg.n_kv_heads * hd
        ops = self.norm(B) + self.gemv("matvec", ((nq, d), (nkv, d), (nkv, d)), B)
        ops += self.local("rope", B * ROPE_FMACS * self.per(nq + nkv))
        ops += self.attention(context, B)
        ops += self.gemv("matvec", ((d, nq),), B) + self.local("residual", B * self.per(d))
        ops += self.norm(B) + self.gemv("matvec", ((f, d), (f, d)), B)
        ops += self.local("swiglu", B * (self.s.transcendental_fmacs + 2) * self.per(f))
        ops += self.gemv("matvec", ((d, f),), B) + self.local("residual", B * self.per(d))
        return ops

    def lm_head(self, B: int) -> Counter:
        """Final norm, the vocabulary GEMV with its partial sums reduced, argmax: each PE's max, then (value,
        index) pairs reduced along the other axis."""
        cfg = self.cfg
        ops = self.norm(B) + self.gemv("lm_head", ((cfg.vocab_size, cfg.hidden_size),), B)
        ops = Counter({("lm_head" if k.startswith("lm_head") else k): v for k, v in ops.items()})
        return ops + self.local("lm_head", B * self.per(cfg.vocab_size)) + self.allreduce("lm_head", 2 * B)


def _mesh_bytes(p: Placement) -> list[float]:
    """SRAM bytes each wafer's mesh holds: its layers' weights and KV cache; the vocabulary matrices on the first
    (embedding) and last (lm_head) wafer."""
    used = [0.0] * p.n_wafers
    layers = _mesh_layers(p)
    for w, ls in enumerate(layers):
        used[w] += sum(m.rows * m.cols * m.weight_bytes for m in p.matrices if m.layer in ls)
        used[w] += sum(k.bytes for k in p.kv if k.layer in ls)
    vocab = p.config.vocab_size * p.config.hidden_size
    used[-1] += vocab * p.matrix("lm_head").weight_bytes
    if not p.config.tie_word_embeddings:
        used[0] += vocab * p.matrix("embedding").weight_bytes
    return used


def _mesh_layers(p: Placement) -> list[range]:
    per = math.ceil(p.config.n_layers / p.n_wafers)
    return [range(w * per, min((w + 1) * per, p.config.n_layers)) for w in range(p.n_wafers)]


def _mesh_pass(p: Placement, design: Design, side: int, context: float, B: int) -> Counter:
    """B tokens through every layer and the lm_head, host I/O included (a decode step when B = 1)."""
    x, s = _Mesh(p, design, side), p.spec
    host = Counter({"host_io": (s.host_io_latency_s + B * TOKEN_BYTES / s.host_io_bytes_per_s) * s.clock_hz})
    ops = host + Counter({"embedding": B * x.per(p.config.hidden_size) * p.matrix("embedding").weight_bytes
                          / s.sram_read_bytes_per_cycle, "task_overhead": s.task_overhead_cycles})
    for w, layers in enumerate(_mesh_layers(p)):
        if w:
            ops["wafer_link"] += (s.wafer_link_latency_s + B * p.config.hidden_size * WIRE_BYTES[p.dtype]
                                  / s.wafer_link_bytes_per_s) * s.clock_hz
        for _ in layers:
            ops += x.layer(context, B)
    return ops + x.lm_head(B) + Counter({"host_io": s.host_io_latency_s * s.clock_hz})


@lru_cache(maxsize=64)
def mesh_side(placement: Placement, design: Design = DESIGN) -> int:
    """P of the mesh layout: the fewest P x P PEs that hold each wafer's share within the weight budget, up to the
    mesh's shorter side, whichever makes a decode step at the placement's context fastest (tried at 16 sides
    spaced evenly in between). Raises ValueError when even the whole square does not hold it."""
    s = placement.spec
    least = math.ceil(math.sqrt(max(_mesh_bytes(placement)) / s.weight_budget_per_pe))
    most = min(s.mesh_rows, s.mesh_cols)
    if least > most:
        raise ValueError(f"the mesh layout needs {least} x {least} PEs per wafer, more than {most} x {most}: "
                         f"use more wafers or layout='regions'")
    sides = sorted({round(least + (most - least) * i / 15) for i in range(16)})
    return min(sides, key=lambda P: sum(_mesh_pass(placement, design, P, placement.context, 1).values()))


def _mesh_prefill(placement: Placement, prompt: int, design: Design, start: int) -> Breakdown:
    """Prefill in the mesh layout: passes of B prompt tokens, each through every layer (the same PEs hold them
    all, so nothing pipelines; WaferLLM's MeshGEMM is charged as B GEMVs that read the weights once), B as many
    tokens as each PE has room for beside its share of the model (fp32 inputs and outputs of the widest GEMV)."""
    side, cfg, s = mesh_side(placement, design), placement.config, placement.spec
    free = s.weight_budget_per_pe - max(_mesh_bytes(placement)) / side ** 2
    widest = math.ceil(cfg.hidden_size / side) + math.ceil(max(cfg.intermediate_size, cfg.vocab_size) / side)
    B = max(1, min(prompt, int(free // (PARTIAL_BYTES * widest))))
    passes, last = divmod(prompt, B)
    context = start + (prompt + 1) / 2
    ops = Counter()
    for n, count in ((B, passes), (last, 1 if last else 0)):
        if count:
            ops += Counter({op: count * c for op, c in _mesh_pass(placement, design, side, context, n).items()})
    return Breakdown(ops=dict(ops), clock_hz=s.clock_hz, tokens=prompt)
