"""Threads that walk a forward pass together: atomic counters to claim work and wait on it, tickets to hand a
step to helper threads, and the helper threads themselves.

A decode step is ~40 small operations in a row (five per layer), each a few microseconds of work. Given a numba
parallel region each, a step spends as long launching regions and waking threads (~1.7 us a region on two cores)
as computing. Instead the calling thread (the lead, worker 0) and helper threads (workers 1..) walk the whole pass
together: for each operation every worker claims chunks of its work until none is left, then waits until every
chunk is done before the next operation reads its output, as PEs that hand a wavelet on when their part is ready.

Claiming (rather than giving worker w the w-th share) is what makes this safe and quick: a helper that arrives
late, or never, only leaves more for the others; nobody ever waits for work nobody is doing.

    counters: two per operation (claimed, done)
    while (c := claim(counters, op)) < chunks: ...do chunk c...; finish(counters, op)
    wait(counters, op, chunks)         # every chunk of op is done: its output is complete

A step reaches the helpers through shared memory, so that they never leave compiled code between steps (no GIL,
no dispatch): the lead writes the step's fields (its sizes and the addresses of the arrays that change from call
to call) and opens a ticket per helper; a helper joins by taking its ticket, walks the step, and hands the ticket
back; the lead closes the tickets nobody took, and waits for those taken to come back before it returns (after
that, nothing touches the step's arrays or counters). A helper polls for the next step for a while (IDLE_POLLS)
and then ends its thread; `Helpers.start` starts it again for the next step that wants it.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import NamedTuple

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import carray, config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

X86 = llvmlite.binding.get_process_triple().startswith(("x86_64", "i686"))
STRIDE = 16  # int64 per slot: each on its own 128 bytes, so two cores never contend for one cache line by accident
IDLE_POLLS = 1 << 20  # polls for a next step before a helper's thread ends (~14 ms: a poll took ~13 ns here)
SYNC = dict(cache=True, nogil=True)

# a ticket is 4 generation + state
CLOSED, OPEN, JOINED, LEFT = 0, 1, 2, 3
# the step's fields: generation, workers, tokens, start, rows of logits; the addresses of tokens, at, logits
GEN, WORKERS, TOKENS, START, ROWS, TOKENS_AT, AT_AT, LOGITS_AT = range(8)


class Sync(NamedTuple):
    counters: np.ndarray  # [2 ops STRIDE]: claimed and done per operation
    step: np.ndarray  # [8]: the step's fields (GEN ...)
    tickets: np.ndarray  # [workers STRIDE]: one per helper (slot 0, the lead's, unused)


def sync(ops: int, workers: int) -> Sync:
    """Counters for `ops` operations and tickets for up to `workers` workers, the lead included."""
    return Sync(np.zeros(2 * ops * STRIDE, np.int64), np.zeros(8, np.int64),
                np.zeros(max(workers, 1) * STRIDE, np.int64))


# -- atomics -------------------------------------------------------------------------------------------------------

if config.DISABLE_JIT:  # plain Python: the lead alone (no helpers run without numba), nothing to wait for

    def _fetch_add(a, i):
        old = a[i]
        a[i] += 1
        return old

    def _wait_until(a, i, n):
        assert a[i] >= n, "a worker waits for work no one is doing"

    def _load(a, i):
        return a[i]

    def _store(a, i, value):
        a[i] = value

    def _exchange(a, i, expected, new):
        if a[i] != expected:
            return False
        a[i] = new
        return True

    def _pause():
        pass

    def _address(a):
        return a.ctypes.data

else:

    def _pointer(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return cgutils.get_item_pointer(context, builder, signature.args[0], array, [args[1]])

    def _spin(builder):
        if X86:  # yields the core's pipeline to its sibling, and spares the memory system a storm of loads
            pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                   "llvm.x86.sse2.pause")
            builder.call(pause, [])

    @intrinsic
    def _fetch_add(typingctx, a, i):
        """a[i] += 1, atomically; returns the value before."""

        def codegen(context, builder, signature, args):
            return builder.atomic_rmw("add", _pointer(context, builder, signature, args), ir.Constant(ir.IntType(64), 1),
                                      "seq_cst")

        return types.int64(a, i), codegen

    @intrinsic
    def _wait_until(typingctx, a, i, n):
        """Spin until a[i] >= n; the acquire load makes every write published before the matching increments
        visible after it."""

        def codegen(context, builder, signature, args):
            pointer = _pointer(context, builder, signature, args)
            spin, done = builder.append_basic_block("spin"), builder.append_basic_block("spun")
            builder.branch(spin)
            builder.position_at_end(spin)
            value = builder.load_atomic(pointer, "acquire", 8)
            _spin(builder)
            builder.cbranch(builder.icmp_signed(">=", value, args[2]), done, spin)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return types.none(a, i, n), codegen

    @intrinsic
    def _load(typingctx, a, i):
        """a[i], an acquire load: what was written before the matching release store is visible after it."""

        def codegen(context, builder, signature, args):
            return builder.load_atomic(_pointer(context, builder, signature, args), "acquire", 8)

        return types.int64(a, i), codegen

    @intrinsic
    def _store(typingctx, a, i, value):
        """a[i] = value, a release store: everything written before it is visible to whoever loads it."""

        def codegen(context, builder, signature, args):
            builder.store_atomic(args[2], _pointer(context, builder, signature, args), "release", 8)
            return context.get_dummy_value()

        return types.none(a, i, value), codegen

    @intrinsic
    def _exchange(typingctx, a, i, expected, new):
        """a[i] = new if a[i] == expected, atomically; whether it was."""

        def codegen(context, builder, signature, args):
            pair = builder.cmpxchg(_pointer(context, builder, signature, args), args[2], args[3], "seq_cst",
                                   "seq_cst")
            return builder.extract_value(pair, 1)

        return types.boolean(a, i, expected, new), codegen

    @intrinsic
    def _pause(typingctx):
        def codegen(context, builder, signature, args):
            _spin(builder)
            return context.get_dummy_value()

        return types.none(), codegen

    @intrinsic
    def _address(typingctx, a):
        """The address of a's data, as an integer."""

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            return builder.ptrtoint(data, ir.IntType(64))

        return types.int64(a), codegen

    @intrinsic
    def _as_pointer(typingctx, address, like):
        """The integer address as a pointer to like's elements."""

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return types.CPointer(like.dtype)(address, like), codegen


# -- claiming work -------------------------------------------------------------------------------------------------


@njit(inline="always", **SYNC)
def claim(counters, op):
    """The next unclaimed chunk of operation op (chunks past the last mean: nothing left)."""
    return _fetch_add(counters, 2 * op * STRIDE)


@njit(inline="always", **SYNC)
def finish(counters, op):
    """One more chunk of operation op is done (its writes are published with it)."""
    _fetch_add(counters, (2 * op + 1) * STRIDE)


@njit(inline="always", **SYNC)
def wait(counters, op, chunks):
    """Return once all `chunks` chunks of operation op are done."""
    _wait_until(counters, (2 * op + 1) * STRIDE, chunks)


# -- handing a step to the helpers ---------------------------------------------------------------------------------


@njit(inline="always", **SYNC)
def open_step(s, workers, tokens, start, at, logits):
    """The lead publishes a step for helpers 1..workers-1 and returns its generation. The counters start at zero
    (no helper touches them now: the last step's were all handed back)."""
    for i in range(0, s.counters.shape[0], STRIDE):
        s.counters[i] = 0
    g = s.step[GEN] + 1
    s.step[GEN], s.step[WORKERS], s.step[TOKENS], s.step[START] = g, workers, tokens.shape[0], start
    s.step[ROWS] = at.shape[0]
    s.step[TOKENS_AT], s.step[AT_AT], s.step[LOGITS_AT] = _address(tokens), _address(at), _address(logits)
    for w in range(1, workers):
        _store(s.tickets, w * STRIDE, 4 * g + OPEN)  # release: the fields above are visible to whoever takes it
    return g


@njit(inline="always", **SYNC)
def close_step(s, workers, g):
    """The lead, its step done: close the tickets nobody took, and wait for the others to come back."""
    for w in range(1, workers):
        if not _exchange(s.tickets, w * STRIDE, 4 * g + OPEN, 4 * g + CLOSED):
            _wait_until(s.tickets, w * STRIDE, 4 * g + LEFT)


@njit(inline="always", **SYNC)
def join_step(s, w, patience):
    """Helper w takes its ticket for the next step and returns the step's generation, or -1 after `patience`
    polls without one."""
    for _ in range(patience):
        ticket = _load(s.tickets, w * STRIDE)
        if ticket % 4 == OPEN and _exchange(s.tickets, w * STRIDE, ticket, ticket + JOINED - OPEN):
            return ticket // 4
        _pause()
    return -1


@njit(inline="always", **SYNC)
def step_arrays(s, tokens, at, logits):
    """The step's tokens, at and logits, as the lead published them (tokens, at, logits: arrays of their types,
    logits as wide as the lead's)."""
    T, rows = s.step[TOKENS], s.step[ROWS]
    return (carray(_as_pointer(s.step[TOKENS_AT], tokens), (T,)), carray(_as_pointer(s.step[AT_AT], at), (rows,)),
            carray(_as_pointer(s.step[LOGITS_AT], logits), (rows, logits.shape[1])))


@njit(inline="always", **SYNC)
def leave_step(s, w, g):
    """Helper w hands its ticket back: everything it wrote in step g is visible to the lead after it."""
    _store(s.tickets, w * STRIDE, 4 * g + LEFT)


# -- the helper threads --------------------------------------------------------------------------------------------


class Helpers:
    """Helper threads 1..n-1 for a lead: `help(w)` runs helper w until it has polled IDLE_POLLS times without a
    step (compiled code, no GIL), and `start(workers)` before each step starts the threads that have ended. A
    helper that ends just as a step opens only leaves its share to the others."""

    def __init__(self, help: Callable[[int], None]):
        self._help = help
        self._running: set[int] = set()  # added by the lead alone, discarded by each helper as it ends
        self._pid = os.getpid()

    def start(self, workers: int) -> None:
        if os.getpid() != self._pid:  # a forked child has none of its parent's threads
            self._running, self._pid = set(), os.getpid()
        for w in range(1, workers):
            if w not in self._running:
                self._running.add(w)
                threading.Thread(target=self._run, args=(w,), name=f"spark-nb helper {w}", daemon=True).start()

    def _run(self, w: int) -> None:
        try:
            self._help(w)
        finally:
            self._running.discard(w)
