"""Placement: which PEs of which wafer hold every weight tile and every slice of the KV cache.

Blocks. A weight matrix W[rows, cols] (Hugging Face orientation [out, in]) is cut by `tile_shape` into a
gr x gc grid of tm x tn tiles, one tile per PE: x enters at the top of PE column c, partial sums of tile row r
leave along PE row r. The KV cache of a layer is a grid too: one PE column per KV head, enough PEs down the
column to hold `context` positions of that head's k and v (ceil(bytes / weight budget) PEs in all, rounded up
to whole columns). Norm weights and biases sit on the PEs of the matrix they feed and take no PEs of their own.

Folding. A grid taller than the space left on the mesh is folded into bands of `band_rows` grid rows placed
side by side: grid row r of a band-folded block is at mesh (row0 + r % band_rows, col0 + (r // band_rows) * gc).
The vocabulary matrices are always folded (151,936 / 64 = 2,374 tile rows against a 762-row mesh).

Packing, with one skyline packer used twice: grids go down in order, each where it sits highest (smallest
mesh row), the leftmost on ties, folded into more, shorter bands if it fits nowhere as it is.
1. A layer's blocks (wq wk wv kv wo w_gate w_up w_down) are packed, tallest first and column by column, into
   a region of height mesh_rows / k; the k that fits the most regions on a wafer and still packs step 2 wins.
   All layers share the region's shape.
2. A wafer's items are packed in model order: embedding, the layer regions, lm_head. So layers fill the wafer
   in rows of regions, left to right, top to bottom, each layer's KV next to its attention matrices.

Several wafers: layers are split in order, balanced by PEs; the embedding lives on wafer 0, the lm_head on the
last. A tied model stores its [vocab, d] matrix once, as the lm_head; the token lookup reads it there.

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

    @property
    def tile_bytes(self) -> int:
        return self.tm * self.tn * self.dtype_bytes

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
            f"{self.sram_bytes_used / 1e9:.2f} of {self.n_wafers * self.spec.sram_bytes / 1e9:.1f} GB SRAM",
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

def _matrix(spec, dtype, name, layer, rows, cols, vectors=()) -> MatrixPlacement:
    nbytes = DTYPE_BYTES[dtype]
    tm, tn = tile_shape(spec, rows, cols, dtype)
    gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
    vector_bytes = sum(n for _, n in vectors) * nbytes
    return MatrixPlacement(name=name, layer=layer, rows=rows, cols=cols, tm=tm, tn=tn, gr=gr, gc=gc, wafer=-1,
                           origin=(-1, -1), band_rows=gr, dtype_bytes=nbytes,
                           vectors=tuple(v for v, _ in vectors), vector_bytes=vector_bytes)


def _layer_blocks(config: ModelConfig, spec: WaferSpec, dtype: str, context: int, layer: int) -> list:
    """wq wk wv kv wo w_gate w_up w_down of one layer, unplaced, in packing order."""
    d, f, hd = config.hidden_size, config.intermediate_size, config.head_dim
    nq, nkv = config.n_heads * hd, config.n_kv_heads * hd
    bias = config.attention_bias

    def m(name, rows, cols, *vectors):
        return _matrix(spec, dtype, name, layer, rows, cols, vectors)

    kv_bytes = context * nkv * 2 * DTYPE_BYTES[dtype]
    per_head = math.ceil(math.ceil(kv_bytes / spec.weight_budget_per_pe) / config.n_kv_heads)
    kv = KVPlacement(layer=layer, bytes=kv_bytes, gr=per_head, gc=config.n_kv_heads, wafer=-1, origin=(-1, -1),
                     band_rows=per_head)
    return [
        m("wq", nq, d, ("input_layernorm", d), *([("q_proj.bias", nq)] if bias else [])),
        m("wk", nkv, d, *([("k_proj.bias", nkv)] if bias else [])),
        m("wv", nkv, d, *([("v_proj.bias", nkv)] if bias else [])),
        kv,
        m("wo", d, nq),
        m("w_gate", f, d, ("post_attention_layernorm", d)),
        m("w_up", f, d),
        m("w_down", d, f),
    ]


# ---------------------------------------------------------------------------------------------- packing

def _skyline(shapes: list[tuple[int, int, bool]], rows: int, cols: int, leftmost: bool = False):
    """Place (gr, gc, foldable) grids in order on a rows x cols area: each where it sits highest, leftmost on ties
    (or, with `leftmost`, in the leftmost column where it fits, highest there); a foldable grid that fits nowhere
    is folded into more, shorter bands. -> [(row, col, band_rows)], or None when one fits nowhere."""
    top = np.zeros(cols, dtype=np.int64)  # first free row of every column
    spots = []
    for gr, gc, foldable in shapes:
        spot = None
        for bands in range(max(1, math.ceil(gr / rows)), gr + 1 if foldable else 2):
            band_rows = math.ceil(gr / bands)
            width = math.ceil(gr / band_rows) * gc  # a fold that leaves no empty band
            if width > cols:
                break
            rows_under = np.lib.stride_tricks.sliding_window_view(top, width).max(axis=1)  # [cols - width + 1]
            fits = np.flatnonzero(rows_under + band_rows <= rows)
            if fits.size:
                col = int(fits[0] if leftmost else fits[np.argmin(rows_under[fits])])
                spot = (int(rows_under[col]), col, band_rows)
                top[col:col + width] = rows_under[col] + band_rows
                break
        if spot is None:
            return None
        spots.append(spot)
    return spots


def _layer_regions(blocks: list, spec: WaferSpec) -> list[tuple[int, int, list]]:
    """Pack one layer's blocks, tallest first, column by column into a region of height mesh_rows / k, for
    k = 1..8: [(height, width, [(row, col, band_rows)] in block order)], the most regions per wafer first."""
    order = sorted(range(len(blocks)), key=lambda i: -blocks[i].gr)
    shapes = [(blocks[i].gr, blocks[i].gc, True) for i in order]
    regions = []
    for k in range(1, 9):
        spots = _skyline(shapes, spec.mesh_rows // k, spec.mesh_cols, leftmost=True)
        if spots is None:
            continue
        height = max(r + band_rows for r, _, band_rows in spots)
        width = max(c + math.ceil(gr / band_rows) * gc for (r, c, band_rows), (gr, gc, _) in zip(spots, shapes))
        key = ((spec.mesh_rows // height) * (spec.mesh_cols // width), -height * width)
        regions.append((key, height, width, [spots[order.index(i)] for i in range(len(blocks))]))
    return [region[1:] for region in sorted(regions, key=lambda r: r[0], reverse=True)]


def _pack(items: list[list], spec: WaferSpec, wafer: int, region) -> list | None:
    """Skyline-pack a wafer's items in order: a vocabulary matrix as itself (foldable), a layer as its region."""
    height, width, inside = region
    shapes = [(height, width, False) if len(item) > 1 else (item[0].gr, item[0].gc, True) for item in items]
    spots = _skyline(shapes, spec.mesh_rows, spec.mesh_cols)
    if spots is None:
        return None
    placed = []
    for item, (row, col, band_rows) in zip(items, spots):
        if len(item) == 1:
            placed.append(dataclasses.replace(item[0], wafer=wafer, origin=(row, col), band_rows=band_rows))
            continue
        for block, (r, c, b) in zip(item, inside):
            placed.append(dataclasses.replace(block, wafer=wafer, origin=(row + r, col + c), band_rows=b))
    return placed


def _split(loads: list[int], n_wafers: int) -> list[int]:
    """Wafer of each item, in order, balanced: an item goes where the midpoint of its load falls."""
    total, before, wafers = sum(loads), 0, []
    for load in loads:
        wafers.append(min(n_wafers - 1, int((before + load / 2) * n_wafers / total)))
        before += load
    return wafers


def place(config: ModelConfig, spec: WaferSpec | str, dtype: str, context: int, n_wafers: int = 1) -> Placement:
    """Place a model's weights and KV cache (for `context` positions) on `n_wafers` wafers, or raise PlacementError."""
    config, spec = ModelConfig.coerce(config), get_spec(spec)
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
    if context < 1 or n_wafers < 1:
        raise ValueError(f"context and n_wafers must be >= 1, got context={context}, n_wafers={n_wafers}")
    d, vocab = config.hidden_size, config.vocab_size
    layers = [_layer_blocks(config, spec, dtype, context, layer) for layer in range(config.n_layers)]
    lm_head = _matrix(spec, dtype, "lm_head", None, vocab, d, [("norm", d)])
    embedding = None if config.tie_word_embeddings else _matrix(spec, dtype, "embedding", None, vocab, d)

    # items in order: [embedding], layer 0 .. layer L-1, lm_head; each a list of blocks
    items = ([[embedding]] if embedding else []) + layers + [[lm_head]]
    loads = [sum(b.pes for b in item) for item in items]
    wafers = _split(loads, n_wafers)
    wafers[0], wafers[-1] = 0, n_wafers - 1  # the embedding (or layer 0) on the first wafer, lm_head on the last
    needed = sum(loads)
    if needed > n_wafers * spec.pes:
        raise PlacementError(_too_big(config, spec, dtype, context, n_wafers, needed, items, ""))

    # every layer has the same shapes, so the same region; the first region shape that packs every wafer wins
    packed = []
    for region in _layer_regions(layers[0], spec):
        packed = [_pack([item for item, iw in zip(items, wafers) if iw == w], spec, w, region)
                  for w in range(n_wafers)]
        if None not in packed:
            break
    else:
        w = packed.index(None) if packed else 0
        share = sum(b.pes for item, iw in zip(items, wafers) if iw == w for b in item)
        raise PlacementError(_too_big(config, spec, dtype, context, n_wafers, needed, items,
                                      f" (wafer {w} gets {share:,} PEs and its packing leaves no room)"))
    placed = [block for blocks in packed for block in blocks]
    return Placement(config=config, spec=spec, dtype=dtype, context=context, n_wafers=n_wafers,
                     matrices=tuple(b for b in placed if isinstance(b, MatrixPlacement)),
                     kv=tuple(sorted((b for b in placed if isinstance(b, KVPlacement)), key=lambda k: k.layer)))


def _too_big(config, spec, dtype, context, n_wafers, needed, items, why) -> str:
    nbytes = sum(b.sram_bytes for item in items for b in item)
    wafers = f"{n_wafers} x {spec.name} have" if n_wafers > 1 else f"{spec.name} has"
    more = max(n_wafers + 1, math.ceil(needed / spec.pes))
    fixes = [f"n_wafers={more}"] + ([f"dtype='int8'"] if dtype != "int8" else []) + ["a smaller context"]
    return (f"{model_name(config)} in {dtype} needs {needed:,} PEs ({nbytes / 1e9:.1f} GB of SRAM) for weights "
            f"and KV cache at context {context}; {wafers} {n_wafers * spec.pes:,} PEs "
            f"({n_wafers * spec.sram_bytes / 1e9:.1f} GB){why}: use {', '.join(fixes[:-1])} or {fixes[-1]}")
