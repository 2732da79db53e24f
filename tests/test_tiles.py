"""spark_nb.wafer.tiles: tiles fit a PE with their buffers, fill it, cover the matrix with little padding, and
to_tiles/from_tiles are exact. Checked against arithmetic and brute force written here, not tile_shape's own."""
from __future__ import annotations

import math

import numpy as np
import pytest

from spark_nb.wafer.spec import DTYPE_BYTES, MINI, WSE2, WSE3
from spark_nb.wafer.tiles import from_tiles, tile_shape, to_tiles

SHAPES = [(1, 1), (7, 30), (128, 896), (896, 896), (4864, 896), (896, 4864), (1000, 3000), (8192, 8192),
          (28672, 8192), (8192, 28672), (128256, 8192), (151936, 896)]
LARGE = [(8192, 8192), (28672, 8192), (8192, 28672), (128256, 8192), (14336, 4096), (100000, 100000)]
DTYPES = ["int8", "fp16", "fp32"]


def vector(dtype):
    """Tile widths are whole 64-byte host vectors: 64 int8, 32 fp16, 16 fp32 elements."""
    return 64 // DTYPE_BYTES[dtype]


def fill(spec, tm, tn, dtype):
    return (tm * tn * DTYPE_BYTES[dtype] + 4 * (tm + tn)) / spec.weight_budget_per_pe


@pytest.mark.parametrize("spec", [WSE3, WSE2, MINI, WSE3.replace(sram_per_pe=2048)], ids=lambda s: s.name)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_tile_fits_its_budget_with_buffers_and_keeps_the_host_alignment(spec, dtype):
    for rows, cols in SHAPES:
        tm, tn = tile_shape(spec, rows, cols, dtype)
        assert tm * tn * DTYPE_BYTES[dtype] + 4 * (tm + tn) <= spec.weight_budget_per_pe, (rows, cols)
        v = vector(dtype)
        assert tm % 8 == 0 and tn % v == 0
        assert 8 <= tm <= min(512, -(-rows // 8) * 8) and v <= tn <= min(512, -(-cols // v) * v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_matrices_fill_at_least_90_percent_of_the_budget(dtype):
    for rows, cols in LARGE:
        tm, tn = tile_shape(WSE3, rows, cols, dtype)
        assert fill(WSE3, tm, tn, dtype) >= 0.90, (rows, cols, tm, tn)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_more_tiles_than_the_best_power_of_two_tile(dtype):
    # the tile the previous version chose: the largest power-of-two area that fits, then clamped and evened out
    budget, nbytes = WSE3.weight_budget_per_pe, DTYPE_BYTES[dtype]
    for rows, cols in SHAPES:
        v = vector(dtype)
        fits = [(tm, tn) for tm in (2 ** k for k in range(3, 10)) for tn in (2 ** k for k in range(4, 10))
                if tm * tn * nbytes + 4 * (tm + tn) <= budget and tn >= v]
        tm, tn = max(fits, key=lambda t: t[0] * t[1])
        tm, tn = min(tm, -(-rows // 8) * 8), min(tn, -(-cols // v) * v)
        pow2 = math.ceil(rows / tm) * math.ceil(cols / tn)
        tm, tn = tile_shape(WSE3, rows, cols, dtype)
        assert math.ceil(rows / tm) * math.ceil(cols / tn) <= pow2, (rows, cols)


def test_the_fewest_tiles_by_brute_force():
    spec, budget = MINI, MINI.weight_budget_per_pe
    for rows, cols in [(200, 700), (896, 896), (37, 1000), (4864, 896)]:
        for dtype in DTYPES:
            fitting = [(tm, tn) for tm in range(8, 513, 8) for tn in range(vector(dtype), 513, vector(dtype))
                       if tm * tn * DTYPE_BYTES[dtype] + 4 * (tm + tn) <= budget]
            # tiles at least 128 wide (or as wide as the matrix) are preferred wherever one fits
            wide = [(tm, tn) for tm, tn in fitting if tn >= min(128, -(-cols // vector(dtype)) * vector(dtype))]
            least = min(math.ceil(rows / tm) * math.ceil(cols / tn) for tm, tn in (wide or fitting))
            tm, tn = tile_shape(spec, rows, cols, dtype)
            assert math.ceil(rows / tm) * math.ceil(cols / tn) == least, (rows, cols, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_padding_is_less_than_one_tile_per_edge(dtype):
    for rows, cols in SHAPES:
        tm, tn = tile_shape(WSE3, rows, cols, dtype)
        gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
        assert gr * tm - rows < tm and gc * tn - cols < tn
        # evened out: the ragged edge is within the alignment of each tile, not most of a tile
        assert gr * tm - rows < 8 * gr and gc * tn - cols < vector(dtype) * gc


@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 30), (37, 100), (130, 257), (224, 896)])
def test_to_tiles_and_from_tiles_round_trip(rows, cols):
    w = np.random.default_rng(rows * cols).standard_normal((rows, cols)).astype(np.float32)
    tm, tn = tile_shape(WSE3.replace(sram_per_pe=4096), rows, cols, "fp32")
    tiles = to_tiles(w, tm, tn)
    gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
    assert tiles.shape == (gr, gc, tm, tn) and tiles.flags.c_contiguous
    padded = np.zeros((gr * tm, gc * tn), np.float32)
    padded[:rows, :cols] = w
    for r in range(gr):
        for c in range(gc):
            assert np.array_equal(tiles[r, c], padded[r * tm:(r + 1) * tm, c * tn:(c + 1) * tn])
    assert np.array_equal(from_tiles(tiles, rows, cols), w)


def test_tile_shape_is_cached():
    tile_shape(WSE3, 12345, 678, "fp16")
    hits = tile_shape.cache_info().hits
    assert tile_shape(WSE3, 12345, 678, "fp16") == tile_shape(WSE3, 12345, 678, "fp16")
    assert tile_shape.cache_info().hits == hits + 2
