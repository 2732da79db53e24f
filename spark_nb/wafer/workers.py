"""Work shared by numba's threads inside one parallel region: atomic counters to claim work and to wait on it.

A decode step is ~30 small operations in a row (five per layer), each a few microseconds of work. Given a
parallel region each, a step spends as long launching regions and waking threads as computing. Instead, a decode
step runs as one region (`forward.decode`): every worker walks the whole step, and for each operation claims
chunks of its work until none is left, then waits until every chunk is done before the next operation reads its
output, as PEs that hand a wavelet on when their part is ready.

Claiming (rather than giving worker w the w-th share) is what makes this safe: if the runtime runs two workers one
after the other on one thread, the first claims and does everything, the second finds nothing left, and neither
ever waits for work nobody is doing.

    counters = phases(n)               # zeroed, two counters (claimed, done) per operation
    while (c := claim(counters, op)) < chunks: ...do chunk c...; finish(counters, op)
    wait(counters, op, chunks)         # every chunk of op is done: its output is complete
"""
from __future__ import annotations

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

X86 = llvmlite.binding.get_process_triple().startswith(("x86_64", "i686"))
STRIDE = 16  # int64 per counter: each on its own 128 bytes, so two cores never contend for one cache line by accident


def phases(n: int) -> np.ndarray:
    """Counters for n operations: claimed and done, one pair each."""
    return np.zeros(2 * n * STRIDE, np.int64)


if config.DISABLE_JIT:  # plain Python, where prange is range: one worker at a time, nothing to wait for

    def _fetch_add(counters, i):
        old = counters[i]
        counters[i] += 1
        return old

    def _wait_until(counters, i, n):
        assert counters[i] >= n, "a worker waits for work no one is doing"

else:

    def _counter(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return cgutils.get_item_pointer(context, builder, signature.args[0], array, [args[1]])

    @intrinsic
    def _fetch_add(typingctx, counters, i):
        """counters[i] += 1, atomically; returns the value before."""

        def codegen(context, builder, signature, args):
            return builder.atomic_rmw("add", _counter(context, builder, signature, args), ir.Constant(ir.IntType(64), 1),
                                      "seq_cst")

        return types.int64(counters, i), codegen

    @intrinsic
    def _wait_until(typingctx, counters, i, n):
        """Spin (with `pause`, which yields the core's pipeline to its sibling) until counters[i] >= n; the acquire
        load makes every write published before the matching increments visible after it."""

        def codegen(context, builder, signature, args):
            pointer = _counter(context, builder, signature, args)
            spin, done = builder.append_basic_block("spin"), builder.append_basic_block("spun")
            builder.branch(spin)
            builder.position_at_end(spin)
            value = builder.load_atomic(pointer, "acquire", 8)
            if X86:
                pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                       "llvm.x86.sse2.pause")
                builder.call(pause, [])
            builder.cbranch(builder.icmp_signed(">=", value, args[2]), done, spin)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return types.none(counters, i, n), codegen


@njit(inline="always", cache=True, nogil=True)
def claim(counters, op):
    """The next unclaimed chunk of operation op (chunks past the last mean: nothing left)."""
    return _fetch_add(counters, 2 * op * STRIDE)


@njit(inline="always", cache=True, nogil=True)
def finish(counters, op):
    """One more chunk of operation op is done (its writes are published with it)."""
    _fetch_add(counters, (2 * op + 1) * STRIDE)


@njit(inline="always", cache=True, nogil=True)
def wait(counters, op, chunks):
    """Return once all `chunks` chunks of operation op are done."""
    _wait_until(counters, (2 * op + 1) * STRIDE, chunks)
