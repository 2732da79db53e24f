"""Placement: which PEs of which wafer hold every weight tile and every slice of the KV cache.

Blocks. A weight matrix W[rows, cols] (Hugging Face orientation [out, in]) is cut by `tile_shape` into a
gr x gc grid of tm x tn tiles, one tile per PE: x enters at the top of PE column c, partial sums of tile row r
leave along PE row r. The KV cache of a layer is a grid too: one PE column per KV head, its `context` positions
striped round-robin down the column. Norm weights and biases sit on the PEs of the matrix they feed and take no
PEs of their own.

KV spread. The fewest PEs that hold a layer's cache (ceil(bytes / weight budget), in whole columns) leave each
PE hundreds of positions, so a few PEs would do all of attention's MACs. Like a compiler with PEs to spare, each
layer's cache gets max(PEs its bytes need, PEs that make decode attention no slower than the layer's slowest
matvec) per head (`kv_pes_per_head`, which costs both with cycles.py's formulas: the same per-PE MAC and
SRAM-read rates, plus the reduction of partial softmax sums down the column, hops and wavelets), all layers
alike, within an even share of the PEs the weights leave free; if that does not pack, the minimum.

Folding. A grid can be folded into bands of `band_rows` grid rows placed side by side: grid row r of a folded
block is at mesh (row0 + r % band_rows, col0 + (r // band_rows) * gc); the last band may be shorter.

Packing. Blocks go down one at a time in model order (embedding; per layer wq wk wv kv wo w_gate w_up w_down;
lm_head) on a skyline (the first free row of every mesh column): each takes the fold and spot whose top ends
lowest, then that bury the fewest free PEs beneath it, then the fewest bands; folds no wider than a third of the
mesh are tried first, so blocks stay compact and broadcast spans short.

Several wafers: the blocks are split in order, balanced by PEs (KV included); a block that does not fit its
wafer moves, with all after it, to the next (a layer may straddle two wafers; the cycle model charges the link).
If the balanced split does not pack, each wafer is filled as far as it goes. The embedding is on wafer 0, the
lm_head on the last. A tied model stores its [vocab, d] matrix once, as the lm_head; the token lookup reads it
there. A model that does not fit raises PlacementError naming the fewest wafers that do place it (tried).

Mesh codes (`Placement.mesh`): FREE (0) an unused PE; l + 1 a weight tile of layer l; -(l + 1) the KV cache of
layer l; EMBEDDING_CODE and LM_HEAD_CODE the vocabulary matrices.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..model.config import ModelConfig
from gguf import GGMLQuantizationType as T

from .blocks import block_tile_shape, bytes_per_weight
from .spec import DTYPE_BYTES, WaferSpec, get_spec
from .tiles import tile_shape

FREE = 0
EMBEDDING_CODE = 32000  # beyond any layer code, inside int16
LM_HEAD_CODE = 32001
PARTIAL_BYTES = 4  # tile_shape reserves an fp32 x slice (tn) and fp32 partial sums (tm) beside each tile

LAYER_MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


class PlacementError(ValueError):
    """The model does not fit the wafer(s): the message says what it needs, what is there, and what to change."""


class _Grid:
    """Geometry shared by weight matrices and KV caches: a gr x gc PE grid at `origin`, folded into bands."""

    gr: int
    gc: int
    origin: tuple[int, int]
    band_rows: int

    @property
    def pes(self) -> int:
        return self.gr * self.gc

    @property
    def bands(self) -> int:
        return math.ceil(self.gr / self.band_rows)

    @property
    def height(self) -> int:
        return self.band_rows

    @property
    def width(self) -> int:
        return self.bands * self.gc

    @property
    def span(self) -> int:
        """Hops from the origin to the far end of a PE column: down a band, then across the bands before it."""
        return self.band_rows + (self.bands - 1) * self.gc

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Mesh (row, col) of every PE of the grid, each [gr, gc]."""
        r = np.arange(self.gr)[:, None]  # grid row, [gr, 1]
        c = np.arange(self.gc)[None, :]  # grid column, [1, gc]
        rows = self.origin[0] + r % self.band_rows
        cols = self.origin[1] + (r // self.band_rows) * self.gc + c
        return tuple(np.broadcast_arrays(rows, cols))


@dataclass(frozen=True)
class MatrixPlacement(_Grid):
    name: str  # "wq" ... "w_down", "embedding", "lm_head"
    layer: int | None  # None for the vocabulary matrices
    rows: int  # W[rows, cols], [out, in]
    cols: int
    tm: int  # one PE's tile is tm x tn
    tn: int
    gr: int  # PE grid: ceil(rows / tm) x ceil(cols / tn)
    gc: int
    wafer: int
    origin: tuple[int, int]  # mesh (row, col) of tile (0, 0)
    band_rows: int  # grid rows per band (= gr when not folded)
    dtype_bytes: int
    vectors: tuple[str, ...] = ()  # norm weights and biases kept on these PEs
    vector_bytes: int = 0
    kind: str = ""  # a GGUF block format the tiles keep (blocks.FORMATS, e.g. "Q4_K"); "" for dtype_bytes a weight

    @property
    def weight_bytes(self) -> float:
        """Bytes a weight takes in the tiles: the dtype's, or a block format's real share (0.5625 for Q4_K)."""
        return bytes_per_weight(T[self.kind]) if self.kind else self.dtype_bytes

    @property
    def tile_bytes(self) -> int:
        return round(self.tm * self.tn * self.weight_bytes)  # whole blocks: exact

    @property
    def pe_bytes(self) -> int:
        """Worst-case SRAM on one PE: the tile, its fp32 x slice and partial sums, and its share of vectors
        (a norm weight is split by tile column, tn per PE; a bias by tile row, tm per PE)."""
        share = sum(self.tn if v.endswith("norm") else self.tm for v in self.vectors) * self.dtype_bytes
        return self.tile_bytes + PARTIAL_BYTES * (self.tm + self.tn) + share

    @property
    def sram_bytes(self) -> int:
        """Bytes held, zero padding of the ragged tiles included."""
        return self.pes * self.tile_bytes + self.vector_bytes


@dataclass(frozen=True)
class KVPlacement(_Grid):
    layer: int
    bytes: int  # context x n_kv_heads x head_dim x 2 (k and v) x dtype bytes
    gr: int  # PEs per KV head (positions are striped round-robin down the column)
    gc: int  # one column per KV head
    wafer: int
    origin: tuple[int, int]
    band_rows: int
    gr_for_bytes: int = 0  # PEs per KV head its bytes need; gr is more where the cache is spread for speed
    cols_per_head: int = 1  # PE columns per KV head (> 1 in a spread layout, `spread_layout`)

    @property
    def sram_bytes(self) -> int:
        return self.bytes


@dataclass(frozen=True)
class Placement:
    config: ModelConfig
    spec: WaferSpec
    dtype: str
    context: int  # KV positions each layer can hold
    n_wafers: int
    matrices: tuple[MatrixPlacement, ...]
    kv: tuple[KVPlacement, ...]  # one per layer, in layer order

    @cached_property
    def _index(self) -> dict:
        return {(m.name, m.layer): m for m in self.matrices}

    def matrix(self, name: str, layer: int | None = None) -> MatrixPlacement:
        """A matrix by name and layer: matrix("wq", 3), matrix("lm_head"). A tied model's embedding is its lm_head."""
        if name == "embedding" and self.config.tie_word_embeddings:
            name = "lm_head"
        try:
            return self._index[(name, layer)]
        except KeyError:
            raise KeyError(f"no matrix {name!r} in layer {layer}; names are {LAYER_MATRICES} per layer, "
                           f"'embedding' and 'lm_head' with layer=None") from None

    @property
    def layer_wafer(self) -> tuple[int, ...]:
        return tuple(kv.wafer for kv in self.kv)

    @property
    def pes_used(self) -> int:
        return sum(m.pes for m in self.matrices) + sum(k.pes for k in self.kv)

    @property
    def sram_bytes_used(self) -> int:
        return sum(m.sram_bytes for m in self.matrices) + sum(k.sram_bytes for k in self.kv)

    def mesh(self, wafer: int = 0) -> np.ndarray:
        """[mesh_rows, mesh_cols] int16 map of one wafer for heatmaps; codes in the module docstring."""
        grid = np.zeros((self.spec.mesh_rows, self.spec.mesh_cols), dtype=np.int16)
        for block in (*self.matrices, *self.kv):
            if block.wafer == wafer:
                grid[block.cells()] = _code(block)
        return grid

    def report(self) -> list[dict]:
        """One row per embedding, layer (its weights and KV cache) and lm_head: where it is and what it takes."""
        groups = [("embedding", [m]) for m in self.matrices if m.name == "embedding"]
        groups += [(kv.layer, [m for m in self.matrices if m.layer == kv.layer] + [kv]) for kv in self.kv]
        groups += [("lm_head", [self.matrix("lm_head")])]
        return [dict(layer=label, wafer=blocks[0].wafer, pes=sum(b.pes for b in blocks),
                     sram_bytes=sum(b.sram_bytes for b in blocks),
                     pct_of_wafer=100.0 * sum(b.pes for b in blocks) / self.spec.pes)
                for label, blocks in groups]

    def summary(self) -> str:
        wafers = f"{self.n_wafers} x {self.spec.name}" if self.n_wafers > 1 else self.spec.name
        capacity = self.n_wafers * self.spec.pes
        lines = [
            f"{model_name(self.config)} in {self.dtype} on {wafers}, context {self.context}: "
            f"{self.pes_used:,} of {capacity:,} PEs ({100 * self.pes_used / capacity:.1f}%), "
            f"{_bytes(self.sram_bytes_used)} of {_bytes(self.n_wafers * self.spec.sram_bytes)} SRAM; "
            f"KV cache on {self.kv[0].pes:,} PEs per layer "
            f"({self.kv[0].gr_for_bytes * self.kv[0].gc:,} hold its bytes)",
            f"{'layer':>9} {'wafer':>5} {'PEs':>10} {'SRAM MB':>10} {'% wafer':>8}",
        ]
        for r in self.report():
            lines.append(f"{r['layer']!s:>9} {r['wafer']:>5} {r['pes']:>10,} {r['sram_bytes'] / 1e6:>10.2f} "
                         f"{r['pct_of_wafer']:>8.2f}")
        return "\n".join(lines)

    __str__ = summary


def model_name(config: ModelConfig) -> str:
    n = config.n_params
    size = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
    return f"{config.family.capitalize()} {size}"


def _code(block) -> int:
    if isinstance(block, KVPlacement):
        return -(block.layer + 1)
    if block.layer is None:
        return EMBEDDING_CODE if block.name == "embedding" else LM_HEAD_CODE
    return block.layer + 1


# ---------------------------------------------------------------------------------------------- the blocks

def _matrix(spec, dtype, name, layer, rows, cols, vectors=(), kinds=None) -> MatrixPlacement:
    """A matrix's block, unplaced: tiles of `dtype`, or of the GGUF block format kinds[(layer, name)] keeps."""
    nbytes = DTYPE_BYTES[dtype]
    kind = (kinds or {}).get((layer, name))
    tm, tn = block_tile_shape(spec, rows, cols, kind) if kind else tile_shape(spec, rows, cols, dtype)
    gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
    vector_bytes = sum(n for _, n in vectors) * nbytes
    return MatrixPlacement(name=name, layer=layer, rows=rows, cols=cols, tm=tm, tn=tn, gr=gr, gc=gc, wafer=-1,
                           origin=(-1, -1), band_rows=gr, dtype_bytes=nbytes,
                           vectors=tuple(v for v, _ in vectors), vector_bytes=vector_bytes,
                           kind=kind.name if kind else "")


def _layer_matrices(config: ModelConfig, spec: WaferSpec, dtype: str, layer: int,
                    kinds=None) -> list[MatrixPlacement]:
    """wq wk wv wo w_gate w_up w_down of one layer, unplaced."""
    d, f, hd = config.hidden_size, config.intermediate_size, config.head_dim
    nq, nkv = config.n_heads * hd, config.n_kv_heads * hd
    bias = config.attention_bias

    def m(name, rows, cols, *vectors):
        return _matrix(spec, dtype, name, layer, rows, cols, vectors, kinds)

    return [
        m("wq", nq, d, ("input_layernorm", d), *([("q_proj.bias", nq)] if bias else [])),
        m("wk", nkv, d, *([("k_proj.bias", nkv)] if bias else [])),
        m("wv", nkv, d, *([("v_proj.bias", nkv)] if bias else [])),
        m("wo", d, nq),
        m("w_gate", f, d, ("post_attention_layernorm", d)),
        m("w_up", f, d),
        m("w_down", d, f),
    ]


def _kv_bytes(config: ModelConfig, dtype: str, context: int) -> int:
    return context * config.n_kv_heads * config.head_dim * 2 * DTYPE_BYTES[dtype]


def kv_pes_per_head(config: ModelConfig, spec: WaferSpec, dtype: str, context: int,
                    matrices: list[MatrixPlacement]) -> tuple[int, int]:
    """(PEs per KV head its bytes need, PEs per KV head that make decode attention no slower than the layer's
    slowest matvec), the second never below the first.

    Costs come from cycles.py's formulas for one token, with unfolded grids (span = grid rows): the matvec's
    broadcast + mac + reduce, and attention's local phases (which fall as 1 / PEs) plus its q broadcast and
    reduce of partial outputs down the column (which grow with PEs). Where no spread reaches the matvec, the
    fastest spread is taken."""
    from .cycles import attention_phases, matvec_phases  # cycles.py imports this module

    least = math.ceil(math.ceil(_kv_bytes(config, dtype, context) / spec.weight_budget_per_pe) / config.n_kv_heads)
    slowest = max(sum(matvec_phases(spec, dtype, m.tm, m.tn, m.gc, m.gr, 1, weight_bytes=m.weight_bytes).values())
                  for m in matrices)
    best, best_cycles = least, math.inf
    for n in range(least, max(least, min(context, spec.mesh_rows)) + 1):
        cycles = sum(attention_phases(spec, config, dtype, context, n, n, 1).values())
        if cycles <= slowest:
            return least, n
        if cycles < best_cycles:
            best, best_cycles = n, cycles
    return least, best


def _kv(config: ModelConfig, dtype: str, context: int, layer: int, per_head: int, least: int) -> KVPlacement:
    return KVPlacement(layer=layer, bytes=_kv_bytes(config, dtype, context), gr=per_head, gc=config.n_kv_heads,
                       wafer=-1, origin=(-1, -1), band_rows=per_head, gr_for_bytes=least)


# ---------------------------------------------------------------------------------------------- packing

def _window_max(a: np.ndarray, w: int) -> np.ndarray:
    """max(a[i:i + w]) for every i, [len(a) - w + 1], by doubling (O(n log w))."""
    out, span = a, 1
    while 2 * span <= w:
        out = np.maximum(out[:-span], out[span:])  # out[i] = max(a[i:i + 2 span])
        span *= 2
    n = len(a) - w + 1
    return np.maximum(out[:n], out[w - span:w - span + n])


class _Skyline:
    """The first free row of every mesh column of one wafer; blocks go on top, one at a time."""

    def __init__(self, spec: WaferSpec, compact: bool = False):
        self.rows, self.cols = spec.mesh_rows, spec.mesh_cols
        self.compact = compact  # fewest bands first (short spans, blocks side by side), not the lowest top
        self.top = np.zeros(self.cols, dtype=np.int64)  # [mesh_cols]

    def put(self, gr: int, gc: int) -> tuple[int, int, int] | None:
        """Place a gr x gc grid, folded into bands no wider than a third of the mesh if it fits so (compact
        blocks keep broadcast spans short), else as wide as need be. -> (row, col, band_rows), or None."""
        return self._put(gr, gc, self.cols // 3) or self._put(gr, gc, self.cols)

    def _put(self, gr: int, gc: int, max_width: int) -> tuple[int, int, int] | None:
        """The fold and spot whose top ends lowest, then that bury the fewest free PEs under the block, then with
        the fewest bands, then the leftmost. The last band may be shorter; the PEs under it stay free."""
        top, rows = self.top, self.rows
        csum = np.concatenate([[0], np.cumsum(top)])  # [cols + 1]
        best, seen = None, set()
        for bands in range(max(1, math.ceil(gr / rows)), min(gr, max(1, max_width // gc)) + 1):
            band_rows = math.ceil(gr / bands)
            bands = math.ceil(gr / band_rows)  # a fold that leaves no empty band
            width = bands * gc
            if band_rows in seen or width > self.cols:
                continue
            seen.add(band_rows)
            under = _window_max(top, width)  # [cols - width + 1] the row a block at each column would sit on
            fits = np.flatnonzero(under + band_rows <= rows)
            if not fits.size:
                continue
            buried = width * under[fits] - (csum[fits + width] - csum[fits])  # free PEs left under the block
            j = np.lexsort((fits, buried, under[fits]))[0]
            key = (int(under[fits[j]]) + band_rows, int(buried[j]), bands, int(fits[j]))
            if self.compact:
                key = (bands,) + key
            if best is None or key < best[0]:
                best = (key, int(under[fits[j]]), band_rows, width)
        if best is None:
            return None
        key, row, band_rows, width = best
        bands, col = key[-2:]
        last = gr - (bands - 1) * band_rows  # grid rows in the last band
        top[col:col + width - gc] = row + band_rows
        top[col + width - gc:col + width] = row + last
        return row, col, band_rows


def _pack(items: list[list], spec: WaferSpec, n_wafers: int, planned: list[int], compact: bool = False) -> list | None:
    """Place items (lists of blocks, in model order) wafer by wafer: wafer w takes the items planned for it
    and any that did not fit on wafer w - 1; an item that does not fit moves, whole, to the next wafer.
    -> placed blocks, or None when the last wafer runs out."""
    placed, queue = [], list(range(len(items)))
    for w in range(n_wafers):
        sky, spill = _Skyline(spec, compact), []
        for i in queue:
            if spill or (planned[i] > w and w < n_wafers - 1):
                spill.append(i)
                continue
            saved, blocks = sky.top.copy(), []
            for block in items[i]:
                spot = sky.put(block.gr, block.gc)
                if spot is None:
                    break
                row, col, band_rows = spot
                blocks.append(dataclasses.replace(block, wafer=w, origin=(row, col), band_rows=band_rows))
            if len(blocks) < len(items[i]) or (i == len(items) - 1 and w < n_wafers - 1):
                sky.top = saved
                spill.append(i)  # the lm_head goes on the last wafer
                continue
            placed += blocks
        queue = spill
    return None if queue else placed


def _split(loads: list[int], n_wafers: int) -> list[int]:
    """Wafer of each item, in order, balanced: an item goes where the midpoint of its load falls."""
    total, before, wafers = sum(loads), 0, []
    for load in loads:
        wafers.append(min(n_wafers - 1, int((before + load / 2) * n_wafers / total)))
        before += load
    return wafers


def _try_place(config: ModelConfig, spec: WaferSpec, dtype: str, context: int, n_wafers: int,
               spread: bool = True, kinds=None) -> Placement | None:
    d, vocab = config.hidden_size, config.vocab_size
    matrices = [_layer_matrices(config, spec, dtype, layer, kinds) for layer in range(config.n_layers)]
    least, want = kv_pes_per_head(config, spec, dtype, context, matrices[0])
    lm_head = _matrix(spec, dtype, "lm_head", None, vocab, d, [("norm", d)], kinds)
    embedding = None if config.tie_word_embeddings else _matrix(spec, dtype, "embedding", None, vocab, d, (), kinds)
    vocab_pes = lm_head.pes + (embedding.pes if embedding else 0)
    weights = vocab_pes + sum(m.pes for ms in matrices for m in ms)
    # KV spread: as far as `want`, within an even share of the free PEs; the minimum if that does not pack
    free = n_wafers * spec.pes - weights - config.n_layers * config.n_kv_heads * least
    spreads = [least + max(0, min(want - least, free // (config.n_layers * config.n_kv_heads)))] if spread else []
    for per_head in dict.fromkeys(spreads + [least]):
        layers = [ms[:3] + [_kv(config, dtype, context, l, per_head, least)] + ms[3:]
                  for l, ms in enumerate(matrices)]  # wq wk wv kv wo w_gate w_up w_down
        items = ([[embedding]] if embedding else []) + [[b] for layer in layers for b in layer] + [[lm_head]]
        loads = [sum(b.pes for b in item) for item in items]
        if sum(loads) > n_wafers * spec.pes:
            continue
        # balanced by PEs; failing that, each wafer filled as far as it goes
        placed = (_pack(items, spec, n_wafers, _split(loads, n_wafers))
                  or _pack(items, spec, n_wafers, [0] * len(items)))
        if placed is not None:
            return Placement(config=config, spec=spec, dtype=dtype, context=context, n_wafers=n_wafers,
                             matrices=tuple(b for b in placed if isinstance(b, MatrixPlacement)),
                             kv=tuple(sorted((b for b in placed if isinstance(b, KVPlacement)),
                                             key=lambda k: k.layer)))
    return None


def spread_layout(placement: Placement, spread: tuple[int, int]) -> Placement | None:
    """The same blocks with every tile run by rows x cols PEs, packed afresh (the layout a compiler with PEs to
    spare would run; cycles.py's `Design.spread`): tiles ceil(tm / rows) x ceil(tn / cols), grids that much taller
    and wider, each KV head's positions over `rows` times the rows and `cols` columns. None if it does not pack.
    The host keeps computing `placement`'s tiles; this layout only sets the wafer's geometry."""
    sr, sc = spread
    if spread == (1, 1):
        return placement

    def matrix(m):
        tm, tn = math.ceil(m.tm / sr), math.ceil(m.tn / sc)
        return dataclasses.replace(m, tm=tm, tn=tn, gr=math.ceil(m.rows / tm), gc=math.ceil(m.cols / tn), wafer=-1,
                                   origin=(-1, -1), band_rows=math.ceil(m.rows / tm))

    def kv(k):
        return dataclasses.replace(k, gr=k.gr * sr, gc=k.gc * sc, cols_per_head=sc, wafer=-1, origin=(-1, -1),
                                   band_rows=k.gr * sr)

    config = placement.config
    items = [] if config.tie_word_embeddings else [[matrix(placement.matrix("embedding"))]]
    for l in range(config.n_layers):
        names = ("wq", "wk", "wv", None, "wo", "w_gate", "w_up", "w_down")
        items += [[kv(placement.kv[l]) if n is None else matrix(placement.matrix(n, l))] for n in names]
    items.append([matrix(placement.matrix("lm_head"))])
    spec, n_wafers = placement.spec, placement.n_wafers
    loads = [sum(b.pes for b in item) for item in items]
    if sum(loads) > n_wafers * spec.pes:
        return None
    planned = _split(loads, n_wafers)
    # blocks as compact as they fit first (a latency layout: short spans, neighbours near), else as place() packs
    placed = next((x for x in (_pack(items, spec, n_wafers, plan, compact) for compact in (True, False)
                               for plan in (planned, [0] * len(items))) if x is not None), None)
    if placed is None:
        return None
    return dataclasses.replace(placement, matrices=tuple(b for b in placed if isinstance(b, MatrixPlacement)),
                               kv=tuple(sorted((b for b in placed if isinstance(b, KVPlacement)),
                                               key=lambda k: k.layer)))


def place(config: ModelConfig, spec: WaferSpec | str, dtype: str, context: int, n_wafers: int = 1,
          kinds: dict | None = None) -> Placement:
    """Place a model's weights and KV cache (for `context` positions) on `n_wafers` wafers, or raise PlacementError.
    kinds: (layer, matrix name) -> the GGUF block format its tiles keep (blocks.gguf_kinds of a file; layer None for
    "embedding" and "lm_head"), at that format's real bytes a weight; other matrices are tiles of `dtype`."""
    config, spec = ModelConfig.coerce(config), get_spec(spec)
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
    if context < 1 or n_wafers < 1:
        raise ValueError(f"context and n_wafers must be >= 1, got context={context}, n_wafers={n_wafers}")
    placement = _try_place(config, spec, dtype, context, n_wafers, kinds=kinds)
    if placement is None:
        raise PlacementError(_too_big(config, spec, dtype, context, n_wafers, kinds))
    return placement


def to_state(placement: Placement) -> dict:
    """A placement as JSON-able values, without its config and spec (from_state takes them): what an engine's tile
    cache keeps so that a second load skips the search."""
    def fields(block):
        return [getattr(block, f.name) for f in dataclasses.fields(block)]

    return {"dtype": placement.dtype, "context": placement.context, "n_wafers": placement.n_wafers,
            "matrices": [fields(m) for m in placement.matrices], "kv": [fields(k) for k in placement.kv]}


def from_state(state: dict, config: ModelConfig, spec: WaferSpec) -> Placement:
    """The placement to_state wrote (its tuples come back from JSON as lists)."""
    def block(kind, values):
        return kind(*(tuple(v) if isinstance(v, list) else v for v in values))

    return Placement(config=config, spec=spec, dtype=state["dtype"], context=state["context"],
                     n_wafers=state["n_wafers"], matrices=tuple(block(MatrixPlacement, m) for m in state["matrices"]),
                     kv=tuple(block(KVPlacement, k) for k in state["kv"]))


def _too_big(config, spec, dtype, context, n_wafers, kinds=None) -> str:
    """What the model needs, what is there, and fixes that work: the fewest wafers that place it (tried)."""
    d, vocab, nbytes = config.hidden_size, config.vocab_size, DTYPE_BYTES[dtype]
    matrices = [m for layer in range(config.n_layers) for m in _layer_matrices(config, spec, dtype, layer, kinds)]
    matrices += [_matrix(spec, dtype, name, None, vocab, d, (), kinds)
                 for name in (("lm_head",) if config.tie_word_embeddings else ("lm_head", "embedding"))]
    least = math.ceil(math.ceil(_kv_bytes(config, dtype, context) / spec.weight_budget_per_pe) / config.n_kv_heads)
    needed = sum(m.pes for m in matrices) + config.n_layers * config.n_kv_heads * least
    sram = (config.n_params * nbytes + sum(m.rows * m.cols * (m.weight_bytes - nbytes) for m in matrices if m.kind)
            + config.n_layers * _kv_bytes(config, dtype, context))
    least_wafers = max(n_wafers + 1, math.ceil(needed / spec.pes))
    biggest = max(matrices, key=lambda m: m.pes)
    if biggest.pes > spec.pes:  # blocks are not split across wafers: no count places it, and trying takes seconds
        more = None
        needed_note = (f"; its {biggest.name} alone takes {biggest.pes:,} PEs, more than one {spec.name} has "
                       f"(a block is not split across wafers)")
    else:  # stop looking well past the PE count, after a few tries (each packs every block)
        needed_note = ""
        counts = sorted({least_wafers, least_wafers + 1, math.ceil(1.25 * least_wafers), 2 * least_wafers + 3})
        more = next((n for n in counts if _try_place(config, spec, dtype, context, n, False, kinds) is not None),
                    None)
    packing = "" if needed > n_wafers * spec.pes else " (the PE count fits, but not their packing)"
    wafers = f"{n_wafers} x {spec.name} have" if n_wafers > 1 else f"{spec.name} has"
    fixes = ([f"n_wafers={more}"] if more else []) + (["dtype='int8'"] if dtype != "int8" else [])
    fixes += ["a smaller context"] if not needed_note else ["a larger wafer preset"]
    use = f"{', '.join(fixes[:-1])} or {fixes[-1]}" if len(fixes) > 1 else fixes[0]
    return (f"{model_name(config)} in {dtype} needs {needed:,} PEs ({_bytes(sram)} of SRAM) for weights "
            f"and KV cache at context {context}; {wafers} {n_wafers * spec.pes:,} PEs "
            f"({_bytes(n_wafers * spec.sram_bytes)}){packing}{needed_note}: use {use}")


def _bytes(n: float) -> str:
    """A byte count for people: GB above 1 GB, else MB (the mini wafer holds 36 MiB)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
