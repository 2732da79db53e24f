"""Hardware constants of a wafer-scale engine, and the presets the emulator ships.

Every number the cycle model uses lives here; nothing else in spark-nb knows a clock rate or an SRAM size.
Facts come from ../shared/design/WAFER.md (public Cerebras material, SDK docs, WaferLLM). Where the public
record is silent or inconsistent the value is an *assumption*: it is named in the field's comment and in the
preset's docstring, and every field can be overridden (`spec.replace(clock_hz=0.85e9)`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

DTYPE_BYTES = {"int8": 1, "fp16": 2, "bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class WaferSpec:
    """One wafer: a 2D mesh of processing elements (PEs), each with private SRAM and a router."""

    name: str
    mesh_rows: int  # PEs along the fabric's height
    mesh_cols: int  # PEs along the fabric's width
    sram_per_pe: int  # bytes of SRAM in one PE
    clock_hz: float
    # MACs one PE retires per cycle, per weight dtype. WSE-2 has a 4-way fp16 SIMD FMAC; WSE-3's SIMD is "wider"
    # with no published width, so the wse3 values are assumptions (see the preset).
    macs_per_cycle_fp16: int
    macs_per_cycle_fp32: int
    macs_per_cycle_int8: int
    wavelet_bytes: int = 4  # one 32-bit wavelet per link per cycle (SDK docs)
    hop_cycles: int = 1  # router latency per mesh hop; assumption (the SDK describes single-cycle forwarding)
    # Fraction of a PE's SRAM that may hold a weight tile with its fp32 x slice and partial sums (tiles.py); the
    # rest is code, stacks and queues. Assumption, set by a public fact: Llama 3.1 70B was served on 4 CS-3 with
    # its weights in SRAM (WAFER.md). 141 GB of fp16 weights in 4 x 893,064 PEs x 48 KiB = 175.6 GB needs >= 80%
    # of SRAM for the weights alone; with tile buffers, ragged tiles and this placer's packing, 0.92 is the
    # fraction at which that deployment fits (tests/test_wafer_placement.py checks both bounds).
    weight_sram_fraction: float = 0.92
    task_overhead_cycles: int = 40  # cycles to activate a task on a PE per kernel phase; assumption
    # Cycles from a wavelet reaching a PE that adds its own value to it (a reduction's relay, CSL's
    # @faddh(fabout, fabin, mem)) to the sum leaving it: the router hands the wavelet to the core's input queue, the
    # FPU adds, the output queue hands it back. The SDK states one wavelet per link per cycle but no such latency;
    # 2 is an assumption. It is what separates a chain from a tree: a chain of n PEs pays it n - 1 times.
    relay_cycles: int = 2
    # Wafer-to-wafer link when a model spans several systems: CS-3 system I/O is 1.2 Tb/s over parallel 100 GbE.
    wafer_link_bytes_per_s: float = 1.2e12 / 8
    wafer_link_latency_s: float = 5e-6  # one Ethernet hop through a switch; assumption
    host_io_bytes_per_s: float = 1.2e12 / 8  # tokens in and logits out
    host_io_latency_s: float = 5e-6  # one host round over Ethernet, like wafer_link_latency_s; assumption
    # SRAM bytes a PE can read per cycle: two 32-bit reads from different banks (SDK docs, memory appendix).
    # The 21 PB/s aggregate of WSE-3 works out at ~21 B/cycle/PE, so wider ports are possible: uncertain.
    sram_read_bytes_per_cycle: int = 8
    # fp32 FMACs for one exp / sigmoid / rsqrt: there is no transcendental unit, the SDK's math library evaluates
    # a polynomial after range reduction; ~10 is an assumption.
    transcendental_fmacs: int = 10

    @property
    def pes(self) -> int:
        return self.mesh_rows * self.mesh_cols

    @property
    def sram_bytes(self) -> int:
        return self.pes * self.sram_per_pe

    @property
    def weight_budget_per_pe(self) -> int:
        return int(self.sram_per_pe * self.weight_sram_fraction)

    def macs_per_cycle(self, dtype: str) -> int:
        if dtype in ("fp16", "bf16"):
            return self.macs_per_cycle_fp16
        if dtype == "fp32":
            return self.macs_per_cycle_fp32
        if dtype == "int8":
            return self.macs_per_cycle_int8
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")

    def replace(self, **changes) -> "WaferSpec":
        return dataclasses.replace(self, **changes)


# CS-3's WSE-3. Assumed: the SIMD widths, hop latency, task overhead, link latency and the 1.1 GHz clock.
WSE3 = WaferSpec(
    name="wse3",
    mesh_rows=762,
    mesh_cols=1172,  # the fabric rectangle compilers use (WaferLLM --fabric-dims=762,1172)
    sram_per_pe=48 * 1024,  # 8 banks x 6 KiB
    clock_hz=1.1e9,  # WaferLLM's launch scripts; SDK examples convert at 850 MHz: uncertain
    macs_per_cycle_fp16=8,  # assumption: twice WSE-2's 4-way SIMD ("wider SIMD", width unpublished)
    macs_per_cycle_fp32=2,  # assumption
    macs_per_cycle_int8=16,  # assumption
)

# CS-2's WSE-2. Assumed: fp32/int8 SIMD widths, hop latency, task overhead, link latency.
WSE2 = WaferSpec(
    name="wse2",
    mesh_rows=750,
    mesh_cols=994,  # program rectangle on a real CS-2 (csl-examples single-tile-matvec README)
    sram_per_pe=48 * 1024,
    clock_hz=0.85e9,  # SDK examples convert cycles at 850 MHz
    macs_per_cycle_fp16=4,  # 4-way fp16 SIMD FMAC (Hot Chips)
    macs_per_cycle_fp32=1,  # assumption
    macs_per_cycle_int8=8,  # assumption
)

# A teaching wafer: WSE-3 PEs on a 24 x 32 mesh (36 MiB of SRAM), so a heatmap shows every PE.
MINI = WaferSpec(
    name="mini",
    mesh_rows=24,
    mesh_cols=32,  # small enough that a placement heatmap shows every PE; a ~10M int8 model fills a third
    sram_per_pe=48 * 1024,
    clock_hz=1.1e9,
    macs_per_cycle_fp16=8,
    macs_per_cycle_fp32=2,
    macs_per_cycle_int8=16,
)

PRESETS = {spec.name: spec for spec in (WSE3, WSE2, MINI)}


def get_spec(wafer: "str | WaferSpec") -> WaferSpec:
    """A preset by name, or the spec itself."""
    if isinstance(wafer, WaferSpec):
        return wafer
    try:
        return PRESETS[wafer]
    except KeyError:
        raise ValueError(f"unknown wafer preset {wafer!r}; choose one of {sorted(PRESETS)} or pass a WaferSpec") from None

# Where each constant the cycle model reads comes from (`spark-nb project --explain` prints these).
SOURCES = {
    "mesh_rows": "fabric rectangle: WaferLLM compile.py --fabric-dims (WSE-3), csl-examples README (WSE-2)",
    "mesh_cols": "as mesh_rows",
    "sram_per_pe": "Cerebras SDK docs, memory appendix: 48 KiB (8 banks x 6 KiB)",
    "clock_hz": "WaferLLM launch_wse3.py uses 1.1 GHz; SDK examples convert at 850 MHz: uncertain",
    "macs_per_cycle_fp16": "WSE-2: 4-way fp16 SIMD (Hot Chips 34); WSE-3: assumption (2x, width unpublished)",
    "macs_per_cycle_fp32": "assumption",
    "macs_per_cycle_int8": "assumption",
    "wavelet_bytes": "SDK docs: one 32-bit wavelet per link per cycle",
    "hop_cycles": "assumption (SDK docs describe single-cycle router forwarding)",
    "relay_cycles": "assumption: a PE adding its value to a passing wavelet (queue in, add, queue out)",
    "task_overhead_cycles": "assumption: activating a task on a PE",
    "sram_read_bytes_per_cycle": "SDK docs, memory appendix: two 32-bit reads per cycle",
    "transcendental_fmacs": "assumption: polynomial exp/rsqrt of the SDK math library",
    "host_io_latency_s": "assumption: one Ethernet round to the host",
    "host_io_bytes_per_s": "CS-3 material: 1.2 Tb/s system I/O",
    "wafer_link_latency_s": "assumption: one Ethernet hop through a switch",
    "wafer_link_bytes_per_s": "CS-3 material: 1.2 Tb/s system I/O",
    "weight_sram_fraction": "set so Llama 3.1 70B fits 4 CS-3 in SRAM (public deployment; WAFER.md)",
}
