"""GGUF's low-bit block formats, kept as the file stores them and cut into PE tiles along block boundaries.

A quantized GGUF matrix is rows of blocks: each block holds `block` consecutive weights of one row in `nbytes`
bytes (packed integers and the scales that multiply them). Every block format here decodes to groups of `group`
weights that share one scale and, for the K-quants with a minimum, one offset:

    weight = scale * q - offset          (q a small integer, exactly as gguf.quants.dequantize computes it)

so a row's dot product with x is, group by group, scale * sum(q x) - offset * sum(x): integer sums where x is
int8 (quant_kernels.py). Nothing is converted: a tile is the file's own bytes, tm rows by tn / block blocks, so a
model holds as many bytes as its file (`bytes_per_weight` is what placement and the cycle model charge).

`unpack_ints` spells each format out in NumPy (q, the integer scales and mins of its groups, the float scales of its
blocks): what the kernels' twin computes with, and, as `unpack`'s (q, scale, offset per group), the exact decoder
the tests compare with gguf.quants.dequantize.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from gguf import GGMLQuantizationType as T

from .tiles import BUFFER_BYTES, MAX_SIDE, ROW_ALIGN, aligned_empty
from .spec import WaferSpec


class Format(NamedTuple):
    code: int  # the kernels' switch (quant_kernels.py)
    block: int  # weights a block
    nbytes: int  # bytes a block
    group: int  # weights sharing one scale (and offset)


# gguf's GGML_QUANT_SIZES for the block sizes; the groups are the formats' own (llama.cpp's ggml-common.h)
FORMATS = {
    T.Q8_0: Format(0, 32, 34, 32),  # fp16 d, 32 int8
    T.Q4_0: Format(1, 32, 18, 32),  # fp16 d, 16 bytes of nibbles: q - 8
    T.Q5_0: Format(2, 32, 22, 32),  # fp16 d, 32 high bits, 16 bytes of nibbles: q - 16
    T.Q4_K: Format(3, 256, 144, 32),  # fp16 d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
    T.Q5_K: Format(4, 256, 176, 32),  # as Q4_K, with 32 bytes of fifth bits
    T.Q6_K: Format(5, 256, 210, 16),  # 128 bytes low nibbles, 64 bytes high 2 bits, 16 int8 scales, fp16 d
}
BLOCK_KINDS = tuple(FORMATS)


def bytes_per_weight(kind: T) -> float:
    """Bytes the file (and a tile) spends per weight: 1.0625 for Q8_0, 0.5625 for Q4_K, 0.8203 for Q6_K."""
    f = FORMATS[kind]
    return f.nbytes / f.block


def gguf_kinds(path) -> dict[tuple[int | None, str], T]:
    """(layer, matrix name) -> the block format a GGUF file keeps each matrix in, for those in FORMATS: what
    placement.place charges at its real bytes a weight. Names as the placement's ("wq" ... "w_down"; "embedding"
    and "lm_head" with layer None; a tied model's lm_head is its token embedding)."""
    import gguf

    return tensor_kinds({t.name: T(t.tensor_type) for t in gguf.GGUFReader(path).tensors})


def tensor_kinds(tensors: dict[str, T]) -> dict[tuple[int | None, str], T]:
    """gguf_kinds from a file's tensor names and types."""
    from ..model.gguf_file import GGUF_LAYER

    by_gguf = {name: field for field, name in GGUF_LAYER.items()}
    kinds = {}
    for name, kind in tensors.items():
        parts = name.split(".", 2)
        if parts[0] == "blk" and parts[2] in by_gguf:
            kinds[int(parts[1]), by_gguf[parts[2]]] = kind
    kinds[None, "embedding"] = tensors.get("token_embd.weight")
    kinds[None, "lm_head"] = tensors.get("output.weight", tensors.get("token_embd.weight"))
    return {key: kind for key, kind in kinds.items() if kind in FORMATS}


def tile_bytes(tm: int, tn: int, kind: T) -> int:
    """SRAM one PE spends on a tm x tn tile of blocks (tn a multiple of the block) and its working buffers."""
    f = FORMATS[kind]
    return tm * (tn // f.block) * f.nbytes + BUFFER_BYTES * (tm + tn)


def block_tile_shape(spec: WaferSpec, rows: int, cols: int, kind: T) -> tuple[int, int]:
    """The (tm, tn) tile of a rows x cols matrix of `kind` blocks: tm a multiple of 8, tn a whole number of blocks,
    fitting one PE's weight budget with its buffers in the fewest PEs; evened out as tiles.tile_shape does (the
    same count of tiles, spread evenly), then the larger area. A block is never cut: a Q4_K matrix's tiles are at
    least 256 weights wide."""
    block = FORMATS[kind].block
    if cols % block:
        raise ValueError(f"a {kind.name} row of {cols} weights is not a whole number of {block}-weight blocks")
    best = None
    for tn in range(block, max(block, min(MAX_SIDE, cols)) + 1, block):
        for tm in range(ROW_ALIGN, min(MAX_SIDE, -(-rows // ROW_ALIGN) * ROW_ALIGN) + 1, ROW_ALIGN):
            if tile_bytes(tm, tn, kind) > spec.weight_budget_per_pe:
                break
            gr, gc = -(-rows // tm), -(-cols // tn)
            even_m = -(-(-(-rows // gr)) // ROW_ALIGN) * ROW_ALIGN
            even_n = -(-(-(-cols // gc)) // block) * block
            key = (gr * gc, -even_m * even_n)
            if best is None or key < best[0]:
                best = key, (even_m, even_n)
    if best is None:
        raise ValueError(f"a PE's weight budget of {spec.weight_budget_per_pe} bytes cannot hold {ROW_ALIGN} rows "
                         f"of one {kind.name} block with its buffers")
    return best[1]


def to_block_tiles(raw: np.ndarray, kind: T, tm: int, tn: int) -> np.ndarray:
    """A GGUF matrix's bytes raw[rows, bytes per row] -> tiles[gr, gc, tm, tn / block * nbytes] (uint8), the blocks
    of W[r tm : (r+1) tm, c tn : (c+1) tn] in each, 64-byte aligned, each unit of eight rows interleaved
    (pack_units). Padding is zero bytes: a block whose scales are zero, whose weights are all exactly 0."""
    f = FORMATS[kind]
    rows, width = raw.shape
    per_tile = tn // f.block * f.nbytes
    gr, gc = -(-rows // tm), -(-width // per_tile)
    tiles = aligned_empty((gr, gc, tm, per_tile), np.uint8, zero=True)
    padded = np.zeros((gr * tm, gc * per_tile), np.uint8)
    padded[:rows, :width] = raw
    tiles[...] = pack_units(padded.reshape(gr, tm, gc, per_tile).transpose(0, 2, 1, 3), kind)
    return tiles


def from_block_tiles(tiles: np.ndarray, kind: T, rows: int, cols: int) -> np.ndarray:
    """The inverse of to_block_tiles: raw[rows, bytes per row]."""
    gr, gc, tm, per_tile = tiles.shape
    f = FORMATS[kind]
    raw = unpack_units(tiles, kind).transpose(0, 2, 1, 3).reshape(gr * tm, gc * per_tile)
    return raw[:rows, : cols // f.block * f.nbytes]


# Blocks of 32 (Q8_0, Q4_0, Q5_0) are interleaved eight rows at a time, the way the kernels meet them: a unit of
# eight rows (UNIT) of a tile, 8 x per_tile bytes, holds its blocks two at a time (k = 0, 2, 4 ...; an odd last one
# alone), each such run of its eight rows' blocks as
#
#     d        the 8 rows' scales (fp16), row by row, a row's blocks in order: one vector of halves
#     qh       Q5_0: the 8 rows' fifth bits, a row's 32 bits of each block in order: one 64-bit lane mask a row
#     weights  Q4_0, Q5_0: a row's two blocks' 4-bit weights, byte j holding weight j of the first (low nibble) and
#              of the second (high); a lone block's 16 bytes as the file has them.  Q8_0: a row's 64 int8 in order
#
# the same bits as the file's blocks, only moved: a unit's pair is read in a few whole-vector loads (a row's
# decoded weights then meet x in order), not sixteen 2-byte scales and eight pairs of 4-byte bit masks, and a run's
# bytes are consecutive, streamed in order. The K-quants keep the file's rows (a super-block is 256 weights
# of one row already).
UNIT = 8
INTERLEAVED = (T.Q8_0, T.Q4_0, T.Q5_0)


def _runs(blocks_per_row: int) -> list[tuple[int, int]]:
    """(first block, count) of each run a unit's rows are interleaved in: pairs, an odd last block alone."""
    return [(k, min(2, blocks_per_row - k)) for k in range(0, blocks_per_row, 2)]


def pack_units(tiles: np.ndarray, kind: T) -> np.ndarray:
    """tiles[..., tm, per_tile] of the file's block rows (tm a multiple of UNIT) -> the same, each unit of eight rows
    interleaved as the kernels read it (a copy; the K-quants' as they are)."""
    if kind not in INTERLEAVED:
        return tiles
    f = FORMATS[kind]
    lead, (tm, per_tile) = tiles.shape[:-2], tiles.shape[-2:]
    units = np.ascontiguousarray(tiles).reshape(-1, UNIT, per_tile // f.nbytes, f.nbytes)  # [units, row, block, byte]
    runs = []
    for k, count in _runs(units.shape[2]):
        b = units[:, :, k : k + count]  # [units, row, count, nbytes]
        parts = [b[..., :2].reshape(len(b), -1)]  # d
        if kind == T.Q5_0:
            parts.append(b[..., 2:6].reshape(len(b), -1))
        if kind == T.Q8_0:
            parts.append(b[..., 2:].reshape(len(b), -1))
        elif count == 1:
            parts.append(b[..., -16:].reshape(len(b), -1))
        else:  # weight j of each block as 4 bits (file: byte j low nibble weight j, high nibble weight j + 16)
            nib = b[..., -16:]
            q = np.concatenate([nib & 0x0F, nib >> 4], axis=-1)  # [units, row, 2, 32]
            parts.append((q[:, :, 0] | (q[:, :, 1] << 4)).reshape(len(b), -1))
        runs.append(np.concatenate(parts, axis=1))
    return np.concatenate(runs, axis=1).reshape(*lead, tm, per_tile)


def unpack_units(tiles: np.ndarray, kind: T) -> np.ndarray:
    """The inverse of pack_units: tiles[..., tm, per_tile] with the file's block rows."""
    if kind not in INTERLEAVED:
        return tiles
    f = FORMATS[kind]
    lead, (tm, per_tile) = tiles.shape[:-2], tiles.shape[-2:]
    flat = np.ascontiguousarray(tiles).reshape(-1, UNIT * per_tile)
    blocks = np.zeros((len(flat), UNIT, per_tile // f.nbytes, f.nbytes), np.uint8)
    at = 0
    for k, count in _runs(blocks.shape[2]):
        def take(size):  # the run's next `size` bytes of each row, [units, row, size]
            nonlocal at
            part = flat[:, at : at + UNIT * size].reshape(len(flat), UNIT, size)
            at += UNIT * size
            return part

        b = blocks[:, :, k : k + count]
        b[..., :2] = take(2 * count).reshape(len(flat), UNIT, count, 2)
        if kind == T.Q5_0:
            b[..., 2:6] = take(4 * count).reshape(len(flat), UNIT, count, 4)
        if kind == T.Q8_0:
            b[..., 2:] = take(32 * count).reshape(len(flat), UNIT, count, 32)
        elif count == 1:
            b[..., -16:] = take(16).reshape(len(flat), UNIT, 1, 16)
        else:
            packed = take(32)
            q = np.stack([packed & 0x0F, packed >> 4], axis=2)  # [units, row, 2, 32]
            b[..., -16:] = q[..., :16] | (q[..., 16:] << 4)
    return blocks.reshape(*lead, tm, per_tile)


def _half(b: np.ndarray) -> np.ndarray:
    """Two little-endian bytes per row -> their fp16 value as float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)[..., 0]


def _k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K's 12 bytes -> 8 six-bit scales and 8 six-bit mins per block (gguf's Q4_K.get_scale_min)."""
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], axis=1)
    mn = np.concatenate([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], axis=1)
    return sc, mn


class Ints(NamedTuple):
    """A block matrix's numbers as integers and the float scales of its blocks: weight = (d sc) q - (dmin mn), the
    products and the difference each rounded to float32 as gguf.quants.dequantize forms them."""

    q: np.ndarray  # int8 [rows, cols]
    sc: np.ndarray  # int32 [rows, groups]: the group's integer scale (1 where a block has one scale: Q8_0 ...)
    mn: np.ndarray  # int32 [rows, groups]: the group's integer min (0 but in Q4_K and Q5_K)
    d: np.ndarray  # float32 [rows, blocks]
    dmin: np.ndarray  # float32 [rows, blocks] (0 but in Q4_K and Q5_K)


def unpack_ints(raw: np.ndarray, kind: T) -> Ints:
    """raw[rows, bytes per row] -> its Ints."""
    f = FORMATS[kind]
    rows = raw.shape[0]
    b = raw.reshape(-1, f.nbytes)  # [blocks, nbytes]
    n = b.shape[0]
    sc = np.ones((n, f.block // f.group), np.int32)
    mn, dmin = np.zeros_like(sc), np.zeros(n, np.float32)
    if kind == T.Q8_0:
        d, q = _half(b[:, :2]), b[:, 2:].view(np.int8)
    elif kind in (T.Q4_0, T.Q5_0):
        d = _half(b[:, :2])
        nib = b[:, -16:]
        q = np.concatenate([nib & 0x0F, nib >> 4], axis=1).astype(np.int16)  # weights 0..15, 16..31
        if kind == T.Q5_0:
            high = b[:, 2:6].copy().view(np.uint32)[:, :1] >> np.arange(32, dtype=np.uint32)
            q = q | ((high & 1).astype(np.int16) << 4)
        q = (q - (8 if kind == T.Q4_0 else 16)).astype(np.int8)
    elif kind in (T.Q4_K, T.Q5_K):
        d, dmin = _half(b[:, 0:2]), _half(b[:, 2:4])
        sc, mn = _k_scales(b[:, 4:16])
        nib = b[:, -128:].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
        q = (nib & 0x0F).reshape(n, 256)  # group 2i: low nibbles of bytes 32i.., group 2i + 1: their high nibbles
        if kind == T.Q5_K:
            high = b[:, 16:48].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
            q = q | ((high & 1) << 4).reshape(n, 256)  # group g's fifth bits: bit g of bytes 0..31
        q = q.astype(np.int8)
    elif kind == T.Q6_K:
        ql, qh, sc, d = b[:, :128], b[:, 128:192], b[:, 192:208].view(np.int8), _half(b[:, 208:210])
        low = (ql.reshape(n, 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 0x0F  # [n, half, 2, 64]
        high = (qh.reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 0x03
        q = (low.reshape(n, 256) | (high.reshape(n, 256) << 4)).astype(np.int8) - np.int8(32)
    else:
        raise ValueError(f"{kind!r} is not a block format spark-nb computes on; it keeps {[k.name for k in FORMATS]}")
    return Ints(np.ascontiguousarray(q).reshape(rows, -1), sc.astype(np.int32).reshape(rows, -1),
                mn.astype(np.int32).reshape(rows, -1), d.reshape(rows, -1), dmin.reshape(rows, -1))


def unpack(raw: np.ndarray, kind: T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """raw[rows, bytes per row] -> (q int8 [rows, cols], scale float32 [rows, groups], offset float32 [rows, groups])
    with weight = scale * q - offset, each product and difference in float32 as gguf.quants.dequantize forms it."""
    ints = unpack_ints(raw, kind)
    per_block = FORMATS[kind].block // FORMATS[kind].group
    scale = np.repeat(ints.d, per_block, axis=1) * ints.sc.astype(np.float32)
    offset = np.repeat(ints.dmin, per_block, axis=1) * ints.mn.astype(np.float32)
    return ints.q, scale, offset


def dequantize(raw: np.ndarray, kind: T) -> np.ndarray:
    """raw[rows, bytes per row] -> float32 [rows, cols], the values gguf.quants.dequantize gives, bit for bit."""
    q, scale, offset = unpack(raw, kind)
    group = FORMATS[kind].group
    values = np.repeat(scale, group, axis=1) * q.astype(np.float32)
    if kind in (T.Q4_K, T.Q5_K):
        values -= np.repeat(offset, group, axis=1)
    return values
