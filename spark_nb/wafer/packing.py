"""pack: a checkpoint's fp32 weights -> the decoder's PE tiles (forward.Decoder), as the forward pass reads them.

Every weight matrix is cut into the PE tiles its placement gives it (tiles.tile_shape; int8 with per-output-row
scales, or fp32 with unit scales) and the layers are stacked: field[l] of forward.Layers is layer l. Matrices that
read the same input are stacked too, Wqkv = [Wq; Wk; Wv] and Wgu = [Wg; Wu], and cut as one in the tile shape of
the first: every output row is the same dot product as in its own matrix.

The weights come a layer at a time, and the vocabulary matrices a block of whole tile rows at a time, each written
straight into its place in the stacked, 64-byte aligned tiles: with StreamedWeights, which read (dequantize, check)
a part only when asked, fp32 never holds more than a layer per thread, not the whole model (a 0.5B model is 2 GB in
fp32, 0.5 GB packed at int8), and nothing is copied twice. The parts are independent, so several threads pack them.

`pack_blocks` (dtype "auto") keeps a GGUF file's matrices in their block formats instead (block_matrix.py): each
layer's stacked matrix a row of one uint8 array, its parts the file's own bytes cut into tiles.

Kept apart from forward.py: numba's cache of the forward pass is keyed by that file's source, and packing changes
need not recompile it.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..model.quant import quantize_int8
from .forward import Decoder, Layers
from .tiles import aligned_empty, tile_shape, write_tiles

PACK_VALUES = 1 << 20  # values of a vocabulary matrix converted at a time: it never exists whole in fp32
PACK_THREADS = min(os.cpu_count() or 1, 4)  # parts packed at once (each holds one layer or block in fp32)
THREADED_PARAMS = 20_000_000  # smaller models pack on one thread: their parts take less than handing them out


def _converted(w: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a matrix as the tiles hold them: (int8 values, per-row scales), or (fp32 values, unit scales)."""
    if dtype == "int8":
        return quantize_int8(w)
    return w.astype(np.float32), np.ones(w.shape[0], np.float32)


def _in_memory(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    return aligned_empty(shape, dtype, zero=True)


def _empty_tiles(allocate, name: str, spec, dtype: str, rows: int, cols: int,
                 shape_of: tuple[int, int] | None = None, layers: tuple[int, ...] = ()):
    """Zero-filled, 64-byte aligned tiles [*layers, gr, gc, tm, tn] of a rows x cols matrix in its PE tile shape,
    or in that of a shape_of matrix (the first of several stacked into it), and its scales [*layers, rows]."""
    tm, tn = tile_shape(spec, *(shape_of or (rows, cols)), dtype)
    grid = (*layers, -(-rows // tm), -(-cols // tn), tm, tn)
    return allocate(name, grid, np.int8 if dtype == "int8" else np.float32), np.empty((*layers, rows), np.float32)


def pack(weights, config, spec, dtype: str, threads: int | None = None, allocate=_in_memory) -> Decoder:
    """Cut a checkpoint's fp32 weights into PE tiles and stack the layers, a layer at a time and the vocabulary
    matrices a block of rows at a time, each written straight into its place in the stacked, aligned tiles.
    `weights`: spark_nb.model's DecoderWeights (arrays in memory), or StreamedWeights, which reads each part
    only when asked here, so that fp32 never holds more than a layer per thread (a 0.5B model is 2 GB in fp32).
    The parts are independent (each writes its own tiles): `threads` (default PACK_THREADS, one for a small model)
    do them at once.
    allocate(name, shape, dtype): the zero-filled, 64-byte aligned array of a matrix's tiles, named as the tile
    cache names its files ("layers.wqkv", "embed", ...); the engine's tile cache hands out its files' maps."""
    L, d, f, hd = config.n_layers, config.hidden_size, config.intermediate_size, config.head_dim
    q, kv = config.n_heads * hd, config.n_kv_heads * hd
    # stacked matrices: the layers' matrices one above the other, in the tile shape of the first
    groups = {("wq", "wk", "wv"): ("wqkv", q + 2 * kv, d, (q, d)), ("wo",): ("wo", d, q, None),
              ("w_gate", "w_up"): ("w_gate_up", 2 * f, d, (f, d)), ("w_down",): ("w_down", d, f, None)}
    stacked = {names: _empty_tiles(allocate, f"layers.{field}", spec, dtype, rows, cols, first, (L,))
               for names, (field, rows, cols, first) in groups.items()}
    attn_norm, mlp_norm = np.empty((L, d), np.float32), np.empty((L, d), np.float32)
    bqkv = np.zeros((L, q + 2 * kv), np.float32)  # zero for families without q/k/v biases
    vocabulary = {name: _empty_tiles(allocate, name, spec, dtype, config.vocab_size, d)
                  for name in (("embed",) if weights.tied else ("embed", "lm_head"))}
    tm = vocabulary["embed"][0].shape[-2]
    step = max(1, PACK_VALUES // (d * tm)) * tm  # vocabulary rows at a time: whole tile rows

    def layer(l):
        w = weights.layer(l)
        for names, (tiles, scale) in stacked.items():
            values, scale[l] = _converted(np.concatenate([getattr(w, n) for n in names]), dtype)
            write_tiles(tiles[l], values)
        attn_norm[l], mlp_norm[l] = w.attn_norm, w.mlp_norm
        for name, at, width in (("bq", 0, q), ("bk", q, kv), ("bv", q + kv, kv)):
            if getattr(w, name) is not None:
                bqkv[l, at : at + width] = getattr(w, name)

    def rows(name, start):
        tiles, scale = vocabulary[name]
        values, scale[start : start + step] = _converted(weights.rows(name, start, start + step), dtype)
        write_tiles(tiles, values, start)

    parts = [(layer, l) for l in range(L)]
    parts += [(rows, name, start) for name in vocabulary for start in range(0, config.vocab_size, step)]
    if threads is None:
        threads = PACK_THREADS if config.n_params >= THREADED_PARAMS else 1
    _each(parts, threads)
    layers = Layers(attn_norm, *stacked["wq", "wk", "wv"], bqkv, *stacked["wo",], mlp_norm,
                    *stacked["w_gate", "w_up"], *stacked["w_down",])
    embed, embed_scale = vocabulary["embed"]
    lm_head, lm_head_scale = vocabulary.get("lm_head", vocabulary["embed"])
    return Decoder(embed, embed_scale, layers, np.array(weights.final_norm, np.float32), lm_head, lm_head_scale)


def _runs(kinds: list, items: list, join) -> tuple[list, list]:
    """Consecutive items of one kind joined into one: (their kinds, the joined items)."""
    out_kinds, out = [], []
    for kind, item in zip(kinds, items):
        if out_kinds and out_kinds[-1] == kind:
            out[-1] = join(out[-1], item)
        else:
            out_kinds.append(kind), out.append(item)
    return out_kinds, out


def _each(calls: list[tuple], threads: int) -> None:
    """fn(*args) for every (fn, *args), on `threads` threads (numpy lets go of the GIL in its loops); the first
    error is raised once the calls running finish, and no more start."""
    if threads <= 1:
        for fn, *args in calls:
            fn(*args)
        return
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(*call) for call in calls]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def pack_blocks(weights, config, spec, threads: int | None = None, allocate=_in_memory) -> tuple[Decoder, dict]:
    """dtype "auto": a GGUF file's matrices kept in their block formats (block_matrix.py), a layer's stacked matrix
    of up to three parts where Wq, Wk, Wv (or Wg, Wu) differ in format; a matrix in a format without a kernel (F16,
    Q4_1, ...) as Q8_0 from its fp32 values (8 bits, a scale per 32 weights); the token embedding a block matrix
    too (block_matrix.embed_rows dequantizes the rows it looks up), a tied model's the same array as its lm_head;
    the norms and biases fp32.
    weights: StreamedWeights with read_blocks, read_tensor and block_kinds (a GGUF file's); threads and allocate
    as pack's. Returns the Decoder and the format each matrix is kept in, as blocks.gguf_kinds names them (what
    placement.place charges)."""
    import gguf
    from gguf import GGMLQuantizationType as T

    from . import block_matrix

    L, d, f, hd = config.n_layers, config.hidden_size, config.intermediate_size, config.head_dim
    q, kv = config.n_heads * hd, config.n_kv_heads * hd
    stacks = {"wqkv": (("wq", "wk", "wv"), d), "wo": (("wo",), q), "w_gate_up": (("w_gate", "w_up"), d),
              "w_down": (("w_down",), f)}

    def kept(layer, name):
        """(bytes, kind) of a matrix, Q8_0 where its file's format has no kernel."""
        found = weights.read_blocks(layer, name)
        if found is not None:
            return found
        w = weights.read_tensor(layer, name) if layer is not None else weights.rows(name, 0, config.vocab_size)
        return gguf.quants.quantize(w, T.Q8_0), T.Q8_0

    # every layer's layout first (from the formats alone), then one [L, largest layer's bytes] array per stack
    out_rows = {"wq": q, "wk": kv, "wv": kv, "wo": d, "w_gate": f, "w_up": f, "w_down": d}
    kept_kinds = {(l, name): weights.block_kinds.get((l, name), T.Q8_0) for l in range(L) for name in out_rows}
    plans = {field: [block_matrix.plan(spec, *_runs([kept_kinds[l, n] for n in names], [out_rows[n] for n in names],
                                                    lambda a, b: a + b), cols) for l in range(L)]
             for field, (names, cols) in stacks.items()}
    stacked = {field: allocate(f"layers.{field}", (L, max(p.nbytes for p in plans[field])), np.uint8)
               for field in stacks}
    attn_norm, mlp_norm = np.empty((L, d), np.float32), np.empty((L, d), np.float32)
    bqkv = np.zeros((L, q + 2 * kv), np.float32)

    def layer(l):
        for field, (names, _) in stacks.items():
            _, raws = _runs([kept_kinds[l, n] for n in names], [kept(l, n)[0] for n in names],
                            lambda a, b: np.concatenate([a, b]))
            block_matrix.write(stacked[field][l], plans[field][l], raws)
        attn_norm[l], mlp_norm[l] = weights.read_tensor(l, "attn_norm"), weights.read_tensor(l, "mlp_norm")
        if config.attention_bias:
            bqkv[l] = np.concatenate([weights.read_tensor(l, name) for name in ("bq", "bk", "bv")])

    # the lm_head and the token embedding block matrices, Q8_0 where the file's format has no kernel; a tied
    # model's embedding is its lm_head, one array (as int8's tiles are): a lookup dequantizes the row from its tiles
    for key in ("embedding", "lm_head"):
        kept_kinds[None, key] = weights.block_kinds.get((None, key), T.Q8_0)

    def vocabulary(field, key):  # field: the weights' name of the matrix, key: kept_kinds'
        plan = block_matrix.plan(spec, [kept_kinds[None, key]], [config.vocab_size], d)
        matrix = allocate(field, (plan.nbytes,), np.uint8)
        return matrix, (lambda: block_matrix.write(matrix, plan, [kept(None, field)[0]]),)

    lm_head, head_written = vocabulary("lm_head", "lm_head")
    embed, embed_written = (lm_head, None) if weights.tied else vocabulary("embed", "embedding")
    parts = [(layer, l) for l in range(L)] + [part for part in (head_written, embed_written) if part]
    if threads is None:
        threads = PACK_THREADS if config.n_params >= THREADED_PARAMS else 1
    _each(parts, threads)
    no_scale = np.zeros((L, 0), np.float32)  # block matrices carry their scales in their blocks
    layers = Layers(attn_norm, stacked["wqkv"], no_scale, bqkv, stacked["wo"], no_scale, mlp_norm,
                    stacked["w_gate_up"], no_scale, stacked["w_down"], no_scale)
    return Decoder(embed, no_scale[0], layers, np.array(weights.final_norm, np.float32), lm_head,
                   no_scale[0]), kept_kinds
