"""The cycle model's closed forms against a step-by-step simulation of the same schedules on a few-PE mesh.

The simulator below knows nothing of spark_nb.wafer.cycles: wavelets are events; a link carries one wavelet per
cycle and delivers it `hop_cycles` later; a PE's core takes one arriving wavelet per cycle (FIFO) and, when it
adds its own value to it, the sum leaves `relay_cycles` after it started; FMACs over a wavelet's values take
whole cycles at the SIMD rate or the SRAM-read rate, whichever is slower. Where the schedule is deterministic and
the shapes even (group sizes dividing the line, positions dividing the PEs) the cycle counts must be equal;
elsewhere the closed form must not be below the simulation.
"""
from __future__ import annotations

import heapq
import itertools
import math

import pytest

from spark_nb.model.config import ModelConfig
from spark_nb.wafer.cycles import Design, allreduce_cycles, attention_phases, matvec_phases, reduce_cycles
from spark_nb.wafer.spec import WSE3

SPECS = [WSE3, WSE3.replace(hop_cycles=2, relay_cycles=3)]


# ---------------------------------------------------------------------------------------------- the simulator

class Mesh:
    """Links and PE cores with their busy-until times; `run` plays events in time order."""

    def __init__(self, spec):
        self.h, self.a = spec.hop_cycles, spec.relay_cycles
        self.link_free: dict = {}  # (from, to) -> first cycle the link is free
        self.core_free: dict = {}  # pe -> first cycle its core is free
        self.events: list = []
        self.seq = itertools.count()

    def at(self, t, action, *args):
        heapq.heappush(self.events, (t, next(self.seq), action, args))

    def send(self, t, src, dst, on_arrival, *args):
        """A wavelet leaves src for dst (one hop) no earlier than t; on_arrival(t_arrival, *args) at dst."""
        depart = max(t, self.link_free.get((src, dst), 0))
        self.link_free[(src, dst)] = depart + 1
        self.at(depart + self.h, on_arrival, *args)

    def route(self, t, path, on_arrival, *args):
        """Through the routers along path (a list of PEs), one hop at a time, no core involved."""
        if len(path) == 1:
            on_arrival(t, *args)
            return
        self.send(t, path[0], path[1], lambda t2, *a: self.route(t2, path[1:], on_arrival, *a), *args)

    def multicast(self, t, path, on_each):
        """Down path from path[0]: each router forwards the wavelet and hands it to its own core, on_each(t, pe)."""
        if len(path) > 1:
            self.send(t, path[0], path[1], lambda t2: (on_each(t2, path[1]), self.multicast(t2, path[1:], on_each)))

    def core(self, t, pe, cycles=1, not_before=0):
        """The PE's core takes a job arriving at t; -> the cycle it starts."""
        start = max(t, self.core_free.get(pe, 0), not_before)
        self.core_free[pe] = start + cycles
        return start

    def run(self):
        while self.events:
            t, _, action, args = heapq.heappop(self.events)
            action(t, *args)


def sim_star(spec, positions: list, L: int, ready: dict, mesh=None) -> float:
    """PEs at `positions` (indices along a line) hold L partials from ready[pe]; those before and after the middle
    one send their sums towards it, each relay adding its own; the middle one adds both streams. -> when its
    last sum is done."""
    mesh = mesh or Mesh(spec)
    n = len(positions)
    root = positions[n // 2]
    done = []

    def arrive(t, i, path_left):
        pe = path_left[0]
        if pe == root:
            start = mesh.core(t, pe, not_before=ready[pe])
            done.append(start + mesh.a)
            return
        start = mesh.core(t, pe, not_before=ready[pe])  # a relay adds its own value and forwards
        forward(start + mesh.a, i, path_left)

    def forward(t, i, path_left):
        here, nxt = path_left[0], path_left[1]
        hops = list(range(here, nxt, 1 if nxt > here else -1)) + [nxt]
        mesh.route(t, hops, arrive, i, path_left[1:])

    above, below = positions[: n // 2], positions[n // 2 + 1:][::-1]
    for side in (above, below):
        if side:
            path = side + [root] if side is above else side + [root]
            for i in range(L):  # the source emits one a cycle from when it is ready
                mesh.at(ready[path[0]] + i, lambda t, i, p: forward(t, i, p), i, path)
    mesh.run()
    return max(done) if done else ready[root]


def sim_reduce(spec, reduction: str, n: int, L: int, start: float = 0) -> float:
    """All n PEs of a line (0..n-1) hold L partials from `start`. -> when their sums are done at one PE."""
    ready = {pe: start for pe in range(n)}
    if n == 1:
        return start
    if reduction == "chain":  # 0 -> n - 1: every PE but the first adds and forwards, the last adds
        mesh, done = Mesh(spec), []

        def arrive(t, pe):
            begin = mesh.core(t, pe)
            if pe == n - 1:
                done.append(begin + mesh.a)
            else:
                mesh.send(begin + mesh.a, pe, pe + 1, arrive, pe + 1)

        for i in range(L):
            mesh.at(start + i, lambda t: mesh.send(t, 0, 1, arrive, 1))
        mesh.run()
        return max(done)
    if reduction == "tree":  # WaferLLM: groups of ceil(sqrt(n)), each to its middle PE, then the group roots
        g = math.ceil(math.sqrt(n))
        groups = [list(range(i, min(i + g, n))) for i in range(0, n, g)]
        roots = {}
        for group in groups:
            roots[group[len(group) // 2]] = sim_star(spec, group, L, ready)
        if len(groups) == 1:
            return next(iter(roots.values()))
        return sim_star(spec, sorted(roots), L, roots)
    return min(sim_reduce(spec, r, n, L, start) for r in ("chain", "tree"))


def sim_allreduce(spec, reduction: str, n: int, L: int) -> float:
    """The reduction, then its sums multicast from the PE that holds them to every PE of the line, one wavelet a
    cycle. -> when the last PE holds the last sum."""
    done = sim_reduce(spec, reduction, n, L)
    if reduction == "chain":
        root = n - 1
    else:  # the root of the middle group, as sim_reduce's tree sums there
        g = math.ceil(math.sqrt(n))
        roots = sorted(group[len(group) // 2] for group in (list(range(i, min(i + g, n))) for i in range(0, n, g)))
        root = roots[len(roots) // 2]
    mesh, last = Mesh(spec), {}
    for path in (list(range(root, -1, -1)), list(range(root, n))):
        for i in range(L):
            mesh.at(done + i, lambda t, path=path: mesh.multicast(t, path, lambda t2, pe: last.__setitem__(
                pe, max(last.get(pe, 0), t2))))
    mesh.run()
    return max([done] + list(last.values()))


def fmac_cycles(spec, dtype_bytes, macs_per_cycle, n):
    return max(math.ceil(n / macs_per_cycle), math.ceil(n * dtype_bytes / spec.sram_read_bytes_per_cycle))


def sim_matvec(spec, dtype, tm, tn, gr, gc, reduction) -> float:
    """x slices enter above each PE column one wavelet a cycle and pass down it; each PE's FMACs over a wavelet's
    values start when it arrives and its core is free; then each PE row reduces its tm partials."""
    bytes_ = {"fp16": 2, "int8": 1, "fp32": 4}[dtype]
    wire = 4 if dtype == "fp32" else 2
    v = spec.wavelet_bytes // wire
    values = [min(v, tn - k) for k in range(0, tn, v)]  # per wavelet
    mesh, finished = Mesh(spec), {}

    def arrive(t, pe, k):
        r, c = pe
        start = mesh.core(t, (r, c), cycles=fmac_cycles(spec, bytes_, spec.macs_per_cycle(dtype), values[k] * tm))
        finished[(r, c)] = max(finished.get((r, c), 0), start + fmac_cycles(
            spec, bytes_, spec.macs_per_cycle(dtype), values[k] * tm))

    for c in range(gc):
        path = [(-1, c)] + [(r, c) for r in range(gr)]
        for k in range(len(values)):  # one wavelet a cycle into the column's top
            mesh.at(k, lambda t, path=path, k=k: mesh.multicast(t, path, lambda t2, pe: arrive(t2, pe, k)))
    mesh.run()
    return max(sim_reduce(spec, reduction, gc, tm, start=max(finished[(r, c)] for c in range(gc)))
               for r in range(gr))


def sim_attention(spec, config, dtype, context, n, reduction) -> float:
    """One KV head's column of n PEs, positions striped round-robin: the group's q and the new k, v pass down the
    column; each PE scores its positions, exponentiates, weights its V; once every PE holds its partial output
    (with max and sum), the column reduces them."""
    bytes_ = {"fp16": 2, "int8": 1, "fp32": 4}[dtype]
    wire = 4 if dtype == "fp32" else 2
    g, hd = config.n_heads // config.n_kv_heads, config.head_dim
    q_wavelets = math.ceil((g + 2) * hd * wire / spec.wavelet_bytes)
    mesh, have_q = Mesh(spec), {}
    path = [-1] + list(range(n))
    for k in range(q_wavelets):
        mesh.at(k, lambda t: mesh.multicast(t, path, lambda t2, r: have_q.__setitem__(r, max(have_q.get(r, 0), t2))))
    mesh.run()
    ready = []
    for r in range(n):
        p = len(range(r, context, n))  # positions r, r + n, ...
        dot = max(math.ceil(p * g * hd / spec.macs_per_cycle(dtype)),
                  fmac_cycles(spec, bytes_, spec.macs_per_cycle(dtype), p * hd))
        soft = math.ceil(p * g * (spec.transcendental_fmacs + 1) / spec.macs_per_cycle("fp32"))
        ready.append(have_q[r] + dot + soft + dot)
    return sim_reduce(spec, reduction, n, g * (hd + 2), start=max(ready))


# ---------------------------------------------------------------------------------------------- the checks

@pytest.mark.parametrize("spec", SPECS, ids=["wse3", "slow-hops"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 12, 16])
@pytest.mark.parametrize("L", [1, 3, 8])
def test_chain_reduction_matches_the_simulation(spec, n, L):
    assert reduce_cycles(spec, "chain", n, L) == sim_reduce(spec, "chain", n, L)


@pytest.mark.parametrize("spec", SPECS, ids=["wse3", "slow-hops"])
@pytest.mark.parametrize("n", [2, 3, 4, 6, 9, 12, 16, 20, 25])
@pytest.mark.parametrize("L", [1, 4, 16])
def test_tree_reduction_matches_the_simulation(spec, n, L):
    closed, simulated = reduce_cycles(spec, "tree", n, L), sim_reduce(spec, "tree", n, L)
    if n % math.ceil(math.sqrt(n)) == 0:  # equal groups: the same schedule, cycle for cycle
        assert closed == simulated
    else:  # a shorter last group: the closed form charges it as a full one
        assert simulated <= closed
    assert reduce_cycles(spec, "best", n, L) == min(closed, reduce_cycles(spec, "chain", n, L))


def test_the_tree_beats_the_chain_on_long_lines_and_loses_on_long_vectors():
    assert reduce_cycles(WSE3, "tree", 400, 4) < reduce_cycles(WSE3, "chain", 400, 4) / 4
    assert reduce_cycles(WSE3, "tree", 4, 400) > reduce_cycles(WSE3, "chain", 4, 400)


@pytest.mark.parametrize("spec", SPECS, ids=["wse3", "slow-hops"])
@pytest.mark.parametrize("dtype,tm,tn,gr,gc", [("fp16", 8, 6, 3, 4), ("int8", 16, 7, 2, 9), ("fp32", 4, 5, 4, 3),
                                               ("fp16", 24, 16, 1, 16)])
@pytest.mark.parametrize("reduction", ["chain", "tree", "best"])
def test_streaming_matvec_matches_the_simulation(spec, dtype, tm, tn, gr, gc, reduction):
    phases = matvec_phases(spec, dtype, tm, tn, gc, gr, 1, Design(reduction=reduction))
    simulated = sim_matvec(spec, dtype, tm, tn, gr, gc, reduction)
    if reduction == "tree" and gc % math.ceil(math.sqrt(gc)):
        assert simulated <= sum(phases.values())
    else:
        assert sum(phases.values()) == simulated


ATTN = ModelConfig(family="llama", vocab_size=64, hidden_size=64, intermediate_size=128, n_layers=1, n_heads=4,
                   n_kv_heads=2, head_dim=16)


@pytest.mark.parametrize("spec", SPECS, ids=["wse3", "slow-hops"])
@pytest.mark.parametrize("context,n", [(12, 4), (36, 9), (32, 16), (7, 3), (50, 4)])
@pytest.mark.parametrize("reduction", ["chain", "tree"])
def test_attention_matches_the_simulation(spec, context, n, reduction):
    phases = attention_phases(spec, ATTN, "fp16", context, n, n, 1, Design(reduction=reduction))
    simulated = sim_attention(spec, ATTN, "fp16", context, n, reduction)
    even = context % n == 0 and (reduction == "chain" or n % math.ceil(math.sqrt(n)) == 0)
    if even:
        assert sum(phases.values()) == simulated
    else:  # the closed form charges the busiest PE's positions and full groups
        assert simulated <= sum(phases.values())


@pytest.mark.parametrize("spec", SPECS, ids=["wse3", "slow-hops"])
@pytest.mark.parametrize("n", [2, 3, 4, 9, 12, 16, 25, 30])
@pytest.mark.parametrize("L", [1, 5])
@pytest.mark.parametrize("reduction", ["chain", "tree"])
def test_allreduce_matches_the_simulation(spec, n, L, reduction):
    closed, simulated = allreduce_cycles(spec, reduction, n, L), sim_allreduce(spec, reduction, n, L)
    if reduction == "chain" or n % math.ceil(math.sqrt(n)) == 0:
        assert closed == simulated
    else:
        assert simulated <= closed
