"""The decoder forward pass, executed on the PE-tile layout.

`packing.pack()` cuts every weight matrix into the PE tiles its placement gives it (int8 with per-output-channel
scales, or fp32 with unit scales; `packing.pack_blocks`, dtype "auto": a GGUF file's own blocks, each layer's matrix
a uint8 row, block_matrix.py) and stacks the layers; a `Forward` over the packed model, its caches and scratch then runs
T tokens through the decoder in one numba call (`run`, `_worker`), reading top to bottom like the model's equations:

    x = E[tokens]
    for each layer:
        h = rmsnorm(x);  [q k v] = h [Wq Wk Wv] + [bq bk bv];  q, k = rope(q), rope(k)
        x = x + attention(q, K ++ k, V ++ v) Wo
        h = rmsnorm(x);  [g u] = h [Wg Wu];  x = x + (silu(g) * u) Wd
    h = rmsnorm(x);  logits = h W_lm         # for the rows the caller wants

Matrices that read the same input are stacked at pack time, Wqkv = [Wq; Wk; Wv] and Wgu = [Wg; Wu], and cut into
PE tiles as one (of Wq's and Wg's tile shape): the input is quantized once and the workers wait for the products
once. Every output row is the same dot product as in its own matrix.

The calling thread leads the pass and helper threads (`Forward.helpers`) join it, each claiming chunks of every
operation (workers.py); with one worker the lead walks it alone.

Prefill and verification pass T tokens; decode passes one. Buffers are allocated once (`Scratch`), so the
forward itself never allocates. `run` carries the kernels' flags (JIT): numba compiles a callee inside its
caller with the caller's fastmath setting, and without it the dot products do not vectorise.

Numba's on-disk cache of `run` embeds the kernels, so this module's functions cache under a folder named for the
hash of this file, kernels.py, workers.py and the block kernels' files (jit_cache.py): editing any of them
compiles afresh.
"""
from __future__ import annotations

import ctypes
import mmap
from typing import NamedTuple

import numpy as np
from numba import config as numba_config
from numba import njit, types
from numba.core.dispatcher import Dispatcher
from numba.experimental import structref

from .kernels import (
    AMX_TOKENS,
    JIT,
    KV_DTYPES,
    LANES,
    QUERY_BLOCK,
    Quantized,
    add_bias,
    add_into,
    attend_head,
    embed_rows,
    interleave_input,
    matmul_rows,
    matmul_units,
    prepare_input,
    quantized,
    rmsnorm,
    rope,
    store_kv,
    swiglu,
    unit_rows,
)
from . import block_matrix, blocks, kernels, quant_kernels, workers
from .jit_cache import keyed_by_sources
from .tiles import aligned
from .workers import (
    IDLE_POLLS,
    START,
    STRIDE,
    WORKERS,
    Helpers,
    Sync,
    claim,
    close_step,
    finish,
    join_step,
    leave_step,
    open_step,
    step_arrays,
    sync,
    wait,
)


class Layers(NamedTuple):
    """Every layer's weights, stacked: field[l] is layer l. Matrices are PE tiles [L, gr, gc, tm, tn] with
    per-output-row scales [L, rows], or block matrices [L, bytes] (uint8, block_matrix.py) whose scales are in their
    blocks ([L, 0]); q/k/v biases are zero for families without them."""

    attn_norm: np.ndarray  # [L, d]
    wqkv: np.ndarray  # [Wq; Wk; Wv]: heads*hd + 2 kv_heads*hd rows
    sqkv: np.ndarray
    bqkv: np.ndarray  # [L, heads*hd + 2 kv_heads*hd]
    wo: np.ndarray
    so: np.ndarray
    mlp_norm: np.ndarray  # [L, d]
    w_gate_up: np.ndarray  # [Wg; Wu]: 2 ffn rows
    s_gate_up: np.ndarray
    w_down: np.ndarray
    s_down: np.ndarray


class Decoder(NamedTuple):
    embed: np.ndarray  # tiles of E [vocab, d]
    embed_scale: np.ndarray  # [vocab]
    layers: Layers
    final_norm: np.ndarray  # [d]
    lm_head: np.ndarray  # tiles of W_lm [vocab, d], the same array as embed when tied; or a block matrix
    lm_head_scale: np.ndarray  # [vocab] ([0] for a block matrix)


class Scratch(NamedTuple):
    """Working buffers for up to max_tokens tokens in flight."""

    x: np.ndarray  # [T, d] residual stream
    h: np.ndarray  # [T, d] normed input of a block
    qkv: np.ndarray  # [T, heads*hd + 2 kv_heads*hd]: q, k, v side by side
    att: np.ndarray  # [T, heads*hd] attention output
    out: np.ndarray  # [T, d] output of a block, before the residual add
    gate_up: np.ndarray  # [T, 2 ffn]: gate, up side by side
    act: np.ndarray  # [T, ffn] silu(gate) * up
    scores: np.ndarray  # [heads, QUERY_BLOCK, context + LANES]
    quant: Quantized  # the input of an int8 matrix, quantized per PE column slice
    sync: Sync  # the workers' counters (an operation each) and tickets
    own: Own  # each helper's copies of a decode token's h, act, wanted and quant


class Own(NamedTuple):
    """Helper w's own copies (row w; row 0 unused: the lead writes the shared buffers) of what a decode token's
    per-token operations write. At T = 1 every worker norms, gates and quantizes the token itself rather than wait
    while one does it and then read it from that core: four hand-offs a layer fewer. Claiming keeps this safe: a
    helper that lags behind the lead may norm a residual the lead is already changing, but then every chunk of the
    matmul that would read its copy has been claimed, and it does no more than compute a copy nobody reads."""

    h: np.ndarray  # [workers, d]
    act: np.ndarray  # [workers, ffn]
    wanted: np.ndarray  # [workers, d]: the final normed row whose logits are wanted
    quant: Quantized  # of `workers` tokens


class Rotary(NamedTuple):
    cos: np.ndarray  # [context, hd/2]
    sin: np.ndarray


def scratch(config, max_tokens: int, context: int, workers: int = 1) -> Scratch:
    d, hd, f = config.hidden_size, config.head_dim, config.intermediate_size
    q, kv = config.n_heads * hd, config.n_kv_heads * hd

    def buf(*shape):
        return aligned(np.zeros(shape, np.float32))

    return Scratch(
        buf(max_tokens, d), buf(max_tokens, d), buf(max_tokens, q + 2 * kv), buf(max_tokens, q), buf(max_tokens, d),
        buf(max_tokens, 2 * f), buf(max_tokens, f),
        buf(config.n_heads, QUERY_BLOCK, context + LANES),
        quantized(max_tokens, max(d, q, f) + 512),  # + the widest tile's padding
        sync(1 + OPS_PER_LAYER * config.n_layers + 5, workers),
        Own(buf(workers, d), buf(workers, f), buf(workers, d), quantized(workers, max(d, q, f) + 512)),
    )


def rotary(config, context: int) -> Rotary:
    angles = np.outer(np.arange(context, dtype=np.float64), config.rope_inv_freq())  # [context, hd/2]
    return Rotary(np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32))


def kv_cache(config, context: int, dtype: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Keys and values of every layer in the layout causal_attention reads (see store_kv): keys [L, kv_heads,
    context/LANES, hd, LANES], values [L, kv_heads, hd/LANES, context, LANES], both rounded up; 64-byte aligned,
    as every buffer and tile stack here (tiles.aligned). dtype "fp32" or "fp16" (kernels.KV_DTYPES)."""
    if dtype not in KV_DTYPES:
        raise ValueError(f"the KV cache dtype must be one of {tuple(KV_DTYPES)}, got {dtype!r}")
    L, heads, hd, element = config.n_layers, config.n_kv_heads, config.head_dim, KV_DTYPES[dtype]
    keys = aligned(np.zeros((L, heads, -(-context // LANES), hd, LANES), element))
    return keys, aligned(np.zeros((L, heads, -(-hd // LANES), context, LANES), element))


# A forward pass is walked by all its workers together (workers.py): the calling thread leads, helper threads
# join it. Each operation's work is cut into chunks (rows of a matrix, kv heads, tokens) that the workers claim one
# by one and then wait for, before the next operation reads the output; no parallel region per operation (~1.7 us
# each to launch on two cores, as long as a decode step's matmul takes). Every token goes through the same kernels
# in the same order whatever T and whichever worker claims it, so a token gets the same bits alone (decode) or
# among others (verification).
ROW_CHUNKS = 1  # chunks per worker of a matmul's rows: a chunk costs two atomic adds on cache lines the cores
# hand back and forth; with 1, 2, 4 and 8 a 10M-parameter decode step took ~300, 340, 330 and 410 us on two cores
TOKEN_CHUNKS = 2  # chunks per worker of a per-token operation
OPS_PER_LAYER = 13  # the operations a layer's workers wait on (numbered in _worker): 1 more before, 5 after


class Resident(NamedTuple):
    """What a forward pass reads besides its tokens, and what stays put between calls (as it would in the wafer's
    SRAM): the packed model, the KV caches, the rotary table, the scratch, and the model's constants."""

    model: Decoder
    k_cache: np.ndarray
    v_cache: np.ndarray
    rot: Rotary
    eps: np.float32
    window: int
    head_dim: int
    s: Scratch


if numba_config.DISABLE_JIT:  # plain Python: the tuple itself

    def _held(resident):
        return resident

else:  # one reference that numba unboxes at once: ~0.8 us a call rather than ~7 us for the tuple's ~45 arrays

    @structref.register
    class _HeldType(types.StructRef):
        def preprocess_fields(self, fields):
            return tuple((name, types.unliteral(ty)) for name, ty in fields)

    class _Held(structref.StructRefProxy):
        pass

    structref.define_proxy(_Held, _HeldType, list(Resident._fields))

    @njit(cache=True)
    def _hold(model, k_cache, v_cache, rot, eps, window, head_dim, s):  # compiled once, cached
        return _Held(model, k_cache, v_cache, rot, eps, window, head_dim, s)

    def _held(resident):
        return _hold(*resident)


class Forward:
    """The forward pass of one packed model over its own caches and scratch:

        fw = Forward(Resident(model, k_cache, v_cache, rot, eps, window, head_dim, s), vocab)
        fw.helpers.start(workers)            # helper threads 1..workers-1 (they join where they run)
        fw(tokens, start, at, logits, workers)

    runs tokens[T] at positions start.. through the decoder: the new keys/values go into the caches, the final
    normed hidden states into s.h[:T], and the logits after the positions at[i] (indices into tokens) into
    logits[i]. One call per step: decode is T = 1, at = [0]. tokens, at and logits are C-contiguous. The calling
    thread leads `workers` workers: helpers that have not joined leave their share to it."""

    def __init__(self, resident: Resident, vocab: int):
        self.resident = resident
        self._capacity = resident.s.sync.tickets.shape[0] // STRIDE
        # one per worker: numba counts references (atomic adds) at every view of an array, on the array's own
        # counter, which each unboxing makes anew; shared by the lead and a helper, those counters cost a decode
        # step 30%, the two cores passing their cache lines back and forth
        self._held = [_held(resident) for _ in range(self._capacity)]
        no_tokens, no_logits = np.zeros(0, np.int64), np.zeros((0, vocab), np.float32)

        def help(w):  # the step's own tokens, at and logits come from the lead (workers.step_arrays)
            run(w, 0, no_tokens, 0, no_tokens, no_logits, self._held[w], IDLE_POLLS)

        self.helpers = Helpers(help)
        model = resident.model
        self._looked_up = None if model.embed is model.lm_head else _file_pages(model.embed)
        self._rows_mapped = 0  # rows looked up since its pages were last handed back

    def __call__(self, tokens, start, at, logits, workers=1):
        if not (tokens.flags.c_contiguous and at.flags.c_contiguous and logits.flags.c_contiguous):
            raise ValueError("tokens, at and logits must be C-contiguous (helpers read them by address): pass "
                             "np.ascontiguousarray(...)")
        if workers > self._capacity:
            raise ValueError(f"the scratch has tickets for {self._capacity} workers, not {workers}: make it with "
                             f"scratch(..., workers={workers})")
        run(0, workers, tokens, start, at, logits, self._held[0], 0)
        if self._looked_up:
            self._rows_mapped += len(tokens)
            if self._rows_mapped >= RELEASE_ROWS:
                _unmap(*self._looked_up)
                self._rows_mapped = 0


# An embedding mapped from a file (a tile cache entry) is only looked up, a row at a time, yet each row read maps
# the pages around it (the kernel's fault-around: up to 64 KB a row) and they stay mapped: a few thousand distinct
# tokens made 70-90 MB of the 0.5B GGUF's 94 MB embedding resident. Unless it is also the lm_head (read whole every
# step), its pages are handed back once a pass ends RELEASE_ROWS or more lookups after the last time: the file
# stays in the OS's page cache, and the next lookup maps its page again for a minor fault. Not after every decode
# step: that cost the 0.5B's decode 1-2 % (79.4 against 80.9 tok/s, medians of 6 in turns), once in 64 steps
# nothing measurable (75.0 against 74.9), and at most ~4 MB stay mapped between
RELEASE_ROWS = 64
MADV_DONTNEED = 4


def _file_pages(array: np.ndarray) -> tuple[int, int] | None:
    """(address, bytes) of the whole pages under an array mapped from a file, or None where it is in memory."""
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    if base is None:
        return None
    first = array.ctypes.data // mmap.PAGESIZE * mmap.PAGESIZE
    return first, array.ctypes.data + array.nbytes - first


def _unmap(address: int, size: int) -> None:
    """Unmap a file's pages from the process (they stay in the page cache and map again when touched); nothing
    where the C library has no madvise."""
    try:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(address), ctypes.c_size_t(size), MADV_DONTNEED)
    except (OSError, AttributeError):
        pass


@njit(**JIT)
def run(w, workers, tokens, start, at, logits, held, patience):
    """Worker w's part in forward passes over held (a Resident). The lead (w = 0) publishes its step for helpers
    1..workers-1, walks it and returns once every helper that joined is done. A helper (w > 0) walks every step
    it is handed, in the lead's tokens/start/at/logits, until `patience` polls pass without one."""
    model, k_cache, v_cache, rot, s = held.model, held.k_cache, held.v_cache, held.rot, held.s
    eps, window, head_dim = held.eps, held.window, held.head_dim
    g = open_step(s.sync, workers, tokens, start, at, logits) if w == 0 else 0
    while True:
        if w > 0:
            g = join_step(s.sync, w, patience)
            if g < 0:
                return
            tokens, at, logits = step_arrays(s.sync, tokens, at, logits)
            workers, start = s.sync.step[WORKERS], s.sync.step[START]
        # one call site: numba inlines the walk once, for the lead and the helpers alike
        _worker(w, workers, tokens, start, model, k_cache, v_cache, rot, eps, window, head_dim, s, at, logits)
        if w == 0:
            close_step(s.sync, workers, g)
            return
        leave_step(s.sync, w, g)


@njit(inline="always", **JIT)
def _worker(w, workers, tokens, start, model, k_cache, v_cache, rot, eps, window, head_dim, s, at, logits):
    """One worker's walk through the forward pass: the equations of the module docstring, each operation's work
    claimed in chunks, op the running number of the operation (all workers count alike)."""
    T = tokens.shape[0]
    x, h, qkv, att, out, gate_up, act = s.x[:T], s.h[:T], s.qkv[:T], s.att[:T], s.out[:T], s.gate_up[:T], s.act[:T]
    width, kv_width = att.shape[1], (qkv.shape[1] - att.shape[1]) // 2
    q, k, v = qkv[:, :width], qkv[:, width : width + kv_width], qkv[:, width + kv_width :]
    c, wl, quant, wanted = s.sync.counters, model.layers, s.quant, s.out[: at.shape[0]]
    alone = T == 1  # decode: each worker does the per-token operations itself, a helper into its own copies
    if alone and w > 0:
        own = s.own
        h, act, wanted = own.h[w : w + 1], own.act[w : w + 1], own.wanted[w : w + 1]
        quant = _rows_of(own.quant, w, w + 1)
    # empty, and typed as the real ones; kinds as int64, not literals: numba compiles each phase once
    no_bias = no_weight = model.final_norm[:0]
    no_residual, no_at = s.x[:0], at[:0]
    normed, gated, gathered, as_is = np.int64(NORM), np.int64(SWIGLU), np.int64(GATHER), np.int64(AS_IS)
    _embed(tokens, model, x, c, 0, workers)
    op = np.int64(1)  # not the literal 1 either
    for l in range(wl.attn_norm.shape[0]):
        # attention block: x = x + attention(rope(h Wq + bq), rope(h Wk + bk), h Wv + bv) Wo, h = rmsnorm(x)
        _per_token(normed, x, h, wl.attn_norm[l], eps, no_at, wl.wqkv[l], quant, c, op, workers, alone)
        _interleave(T, wl.wqkv[l], quant, c, op + 1)
        _matmul(h, wl.wqkv[l], wl.sqkv[l], qkv, quant, wl.bqkv[l], no_residual, c, op + 2, workers)
        _attention(q, k, v, k_cache[l], v_cache[l], rot, start, window, head_dim, s.scores, att, c, op + 3)
        _per_token(as_is, att, att, no_weight, eps, no_at, wl.wo[l], quant, c, op + 4, workers, alone)
        _interleave(T, wl.wo[l], quant, c, op + 5)
        _matmul(att, wl.wo[l], wl.so[l], out, quant, no_bias, x, c, op + 6, workers)
        # SwiGLU block: x = x + (silu(h Wg) * h Wu) Wd, h = rmsnorm(x)
        _per_token(normed, x, h, wl.mlp_norm[l], eps, no_at, wl.w_gate_up[l], quant, c, op + 7, workers, alone)
        _interleave(T, wl.w_gate_up[l], quant, c, op + 8)
        _matmul(h, wl.w_gate_up[l], wl.s_gate_up[l], gate_up, quant, no_bias, no_residual, c, op + 9, workers)
        _per_token(gated, gate_up, act, no_weight, eps, no_at, wl.w_down[l], quant, c, op + 10, workers, alone)
        _interleave(T, wl.w_down[l], quant, c, op + 11)
        _matmul(act, wl.w_down[l], wl.s_down[l], out, quant, no_bias, x, c, op + 12, workers)
        op += OPS_PER_LAYER
    # logits = rmsnorm(x) W_lm for the rows wanted, gathered where the block outputs were
    _per_token(normed, x, h, model.final_norm, eps, no_at, model.lm_head[:0], quant, c, op, workers, alone)
    _per_token(gathered, h, wanted, no_weight, eps, at, model.lm_head, quant, c, op + 2, workers, alone)
    _interleave(at.shape[0], model.lm_head, quant, c, op + 3)
    _matmul(wanted, model.lm_head, model.lm_head_scale, logits, quant, no_bias, no_residual, c, op + 4, workers)


@njit(inline="always", **JIT)
def _span(chunk, chunks, n):
    """Items [lo, hi) of chunk `chunk` when n items are cut into `chunks` nearly equal chunks."""
    size = -(-n // chunks)
    return chunk * size, min(n, (chunk + 1) * size)


@njit(inline="always", **JIT)
def _rows_of(q, lo, hi):
    """The quantized buffers of tokens lo..hi-1, as prepare_input fills them for x[lo:hi]."""
    return Quantized(q.values[lo:hi], q.scales[lo:hi], q.sums[lo:hi], q.blocks, q.block_scales)


@njit(**JIT)
def _embed(tokens, model, x, c, op, workers):
    T = tokens.shape[0]
    chunks = min(T, TOKEN_CHUNKS * workers)
    while True:
        chunk = claim(c, op)
        if chunk >= chunks:
            break
        lo, hi = _span(chunk, chunks, T)
        embed_rows(tokens[lo:hi], model.embed, model.embed_scale, x[lo:hi])
        finish(c, op)
    wait(c, op, chunks)


# what _per_token computes into dst, token by token
NORM, SWIGLU, GATHER, AS_IS = range(4)


@njit(**JIT)  # one compiled body for every per-token operation (each would optimise the quantizer again)
def _per_token(kind, src, dst, weight, eps, at, tiles, q, c, op, workers, alone):
    """dst = rmsnorm(src) with weight (NORM), silu(gate) * up of src = [gate, up] (SWIGLU), the rows src[at[i]]
    (GATHER) or src itself (AS_IS: dst is src), prepared for the tiles' matmul (empty tiles: none follows). Alone,
    this worker does every token itself, claiming and waiting for nothing (dst and q are then its own)."""
    T = dst.shape[0]
    if alone:
        _per_token_rows(kind, src, dst, weight, eps, at, tiles, q, 0, T)
        return
    chunks = min(T, TOKEN_CHUNKS * workers)
    while True:
        chunk = claim(c, op)
        if chunk >= chunks:
            break
        lo, hi = _span(chunk, chunks, T)
        _per_token_rows(kind, src, dst, weight, eps, at, tiles, q, lo, hi)
        finish(c, op)
    wait(c, op, chunks)


@njit(inline="always", **JIT)
def _per_token_rows(kind, src, dst, weight, eps, at, tiles, q, lo, hi):
    if kind == NORM:
        rmsnorm(src[lo:hi], weight, eps, dst[lo:hi])
    elif kind == SWIGLU:
        swiglu(src[lo:hi], dst[lo:hi])
    elif kind == GATHER:
        for i in range(lo, hi):
            for j in range(dst.shape[1]):  # element by element: numba's row assignment takes seconds to compile
                dst[i, j] = src[at[i], j]
    if tiles.shape[0] > 0:
        prepare_input(dst[lo:hi], tiles, _rows_of(q, lo, hi))


@njit(**JIT)  # one compiled body for its five call sites (each would optimise the AMX code again)
def _interleave(T, tiles, q, c, op):
    """The prepared input of T tokens interleaved for AMX, a block of 16 tokens a chunk (where AMX runs)."""
    chunks = T // AMX_TOKENS
    if chunks == 0:  # fewer than 16 tokens: nothing runs on AMX (and no counter is touched)
        return
    while True:
        chunk = claim(c, op)
        if chunk >= chunks:
            break
        interleave_input(T, tiles, q, chunk, chunk + 1)
        finish(c, op)
    wait(c, op, chunks)


@njit(**JIT)  # a call, not inlined: the call sites share one compiled body
def _matmul(x, tiles, scale, y, q, bias, residual, c, op, workers):
    """y = x W (+ bias), x prepared in q, in chunks of units of rows; with a residual, residual += y (the
    residual connection). Each chunk's rows are finished (bias, residual) by the worker that formed them."""
    T, m = x.shape[0], y.shape[1]
    units = matmul_units(T, tiles)
    chunks = min(units, ROW_CHUNKS * workers)
    while True:
        chunk = claim(c, op)
        if chunk >= chunks:
            break
        first, end = _span(chunk, chunks, units)
        matmul_rows(x, tiles, scale, y, q, first, end)
        lo, hi = unit_rows(T, tiles, first, end, m)
        if bias.shape[0] > 0:
            add_bias(y[:, lo:hi], bias[lo:hi])
        if residual.shape[0] > 0:
            add_into(residual[:, lo:hi], y[:, lo:hi])
        finish(c, op)
    wait(c, op, chunks)


@njit(**JIT)
def _attention(q, k, v, k_cache, v_cache, rot, start, window, head_dim, scores, att, c, op):
    """q, k = rope(q), rope(k); the keys and values into the caches; attention; a kv head, with the query heads
    that read it, per chunk (attend_head, as causal_attention runs it per head)."""
    kv_heads = k_cache.shape[0]
    per_kv = q.shape[1] // head_dim // kv_heads
    while True:
        kv = claim(c, op)
        if kv >= kv_heads:
            break
        keys = k[:, kv * head_dim : (kv + 1) * head_dim]
        rope(keys, head_dim, rot.cos, rot.sin, start)
        store_kv(keys, v[:, kv * head_dim : (kv + 1) * head_dim], k_cache[kv : kv + 1], v_cache[kv : kv + 1], start)
        for head in range(kv * per_kv, (kv + 1) * per_kv):
            rope(q[:, head * head_dim : (head + 1) * head_dim], head_dim, rot.cos, rot.sin, start)
            attend_head(q, k_cache, v_cache, start, window, scores, att, head)
        finish(c, op)
    wait(c, op, kv_heads)


# -- numba's on-disk cache ----------------------------------------------------------------------------------------

def _dispatchers():
    """This module's numba functions, every one cached (anything compiled here embeds the kernels it calls)."""
    return [f for f in globals().values() if isinstance(f, Dispatcher) and f.py_func.__module__ == __name__]


if not numba_config.DISABLE_JIT:
    keyed_by_sources(_dispatchers(), [__file__, kernels.__file__, workers.__file__, block_matrix.__file__,
                                      quant_kernels.__file__, blocks.__file__])
