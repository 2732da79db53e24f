"""Weight bytes streamed per second by the GGUF block matvec (quant_kernels.block_matmul) against the int8 matvec
(kernels.tiled_matmul) on the same real matrices of a GGUF file, one thread each, timed in the same run.

    python bench/block_kernels.py /work/models/qwen2.5-coder-1.5b-instruct.gguf [tokens] [repeats]

Each matrix of layer 0 is timed as its file keeps it (its own block format, the file's bytes) and as int8 (1 byte a
weight, the tiles dtype="int8" packs); medians of `repeats` runs, interleaved so that load on the machine hits
both alike. GB/s is weight bytes read per second: what bounds decode. "cached": one matrix again and again (it
stays in the caches); "streamed": every layer's matrix of that name in turn, as decode reads them (from DRAM).
"""
from __future__ import annotations

import os
import sys
import time

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from spark_nb.model.quant import quantize_int8
from spark_nb.wafer import blocks
from spark_nb.wafer import quant_kernels as qk
from spark_nb.wafer.kernels import quantized, tiled_matmul
from spark_nb.wafer.spec import WSE3
from spark_nb.wafer.tiles import tile_shape, to_tiles

NAMES = ("attn_q", "ffn_gate", "ffn_down")  # per layer 0: the shapes a layer has


def matrices(path):
    """name -> (kind, [raw bytes of each layer's matrix of that name]), for the names whose layers share a kind."""
    found = {}
    for t in gguf.GGUFReader(path).tensors:
        parts = t.name.split(".")
        if parts[0] == "blk" and parts[2] in NAMES:
            found.setdefault(parts[2], []).append((T(t.tensor_type), np.array(t.data)))
    for name, layers in found.items():
        kind = layers[0][0]
        if kind in blocks.FORMATS:
            yield name, kind, [raw for k, raw in layers if k == kind]


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(path, tokens=1, repeats=30):
    print(f"{os.path.basename(path)}: {tokens} token(s), load {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    for name, kind, layers in matrices(path):
        f = blocks.FORMATS[kind]
        m, n = layers[0].shape[0], layers[0].shape[1] // f.nbytes * f.block
        tm, tn = blocks.block_tile_shape(WSE3, m, n, kind)
        itm, itn = tile_shape(WSE3, m, n, "int8")
        btiles, itiles = [], []
        for raw in layers:
            btiles.append(blocks.to_block_tiles(raw, kind, tm, tn))
            values, scale = quantize_int8(blocks.dequantize(raw, kind))
            itiles.append(to_tiles(values, itm, itn))
        x = rng.standard_normal((tokens, n)).astype(np.float32)
        y = np.zeros((tokens, m), np.float32)
        q = quantized(tokens, max(btiles[0].shape[1] * tn, itiles[0].shape[1] * itn))
        u = qk.group_sums(tokens, btiles[0].shape[1] * tn)
        for mode, count in (("cached", 1), ("streamed", len(layers))):

            def block():
                for tiles in btiles[:count]:
                    qk.block_matmul(x, tiles, f.code, y, q, u)

            def int8():
                for tiles in itiles[:count]:
                    tiled_matmul(x, tiles, scale, y, q)

            block(), int8()  # compiled, and in the caches as far as they hold them
            b_s, i_s = [], []
            for _ in range(repeats):
                b_s.append(median_seconds(block, 3) / count)
                i_s.append(median_seconds(int8, 3) / count)
            b_s, i_s = float(np.median(b_s)), float(np.median(i_s))
            b_gb, i_gb = layers[0].nbytes / b_s / 1e9, m * n / i_s / 1e9
            print(f"  {name:9s} {mode:8s} {kind.name:5s} {m:6d}x{n:<6d} block {b_s * 1e6:8.1f} us {b_gb:6.2f} GB/s   "
                  f"int8 {i_s * 1e6:8.1f} us {i_gb:6.2f} GB/s   GB/s ratio {b_gb / i_gb:.2f}, "
                  f"time ratio {b_s / i_s:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
