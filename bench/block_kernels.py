"""Weight bytes streamed per second by the GGUF block matvec (quant_kernels.block_matmul_rows) against the int8
matvec (kernels.matmul_rows) on the same real matrices of a GGUF file, timed in the same run.

    python bench/block_kernels.py /work/models/qwen2.5-coder-1.5b-instruct.gguf [tokens] [repeats] [threads]

Each matrix of layer 0, and the output matrix (the token embedding where the model ties them), is timed as its
file keeps it (its own block format, the file's bytes) and as int8 (1 byte a
weight, the tiles dtype="int8" packs); medians of `repeats` runs, interleaved so that load on the machine hits
both alike. GB/s is weight bytes read per second: what bounds decode. "cached": one matrix again and again (it
stays in the caches); "streamed": every layer's matrix of that name in turn, as decode reads them (from DRAM),
on one thread and then on `threads`, each taking its share of every matrix's units of rows as the forward pass's
workers do (the input prepared once, outside the timing).
"""
from __future__ import annotations

import os
import sys
import threading
import time

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from spark_nb.model.quant import quantize_int8
from spark_nb.wafer import blocks
from spark_nb.wafer import quant_kernels as qk
from spark_nb.wafer.kernels import matmul_rows, matmul_units, prepare_input, quantized
from spark_nb.wafer.spec import WSE3
from spark_nb.wafer.tiles import tile_shape, to_tiles

NAMES = ("attn_q", "ffn_gate", "ffn_down")  # per layer 0: the shapes a layer has


def matrices(path):
    """name -> (kind, [raw bytes of each layer's matrix of that name]), for the names whose layers share a kind;
    then "output", the one output matrix (a tied model's token embedding): a large part of what decode reads."""
    found, output = {}, {}
    for t in gguf.GGUFReader(path).tensors:
        parts = t.name.split(".")
        if parts[0] == "blk" and parts[2] in NAMES and parts[3] == "weight":
            found.setdefault(parts[2], []).append((T(t.tensor_type), np.array(t.data)))
        elif t.name in ("output.weight", "token_embd.weight"):
            output[t.name] = (T(t.tensor_type), np.array(t.data))
    found["output"] = [output.get("output.weight", output["token_embd.weight"])]
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


def on_threads(rows, units, threads):
    """A function that runs rows(first, end) over units 0..units-1 cut into `threads` spans, each on its own
    thread (the kernels release the GIL), and returns when all are done."""
    spans = [(units * w // threads, units * (w + 1) // threads) for w in range(threads)]

    def run():
        workers = [threading.Thread(target=rows, args=span) for span in spans[1:]]
        for worker in workers:
            worker.start()
        rows(*spans[0])
        for worker in workers:
            worker.join()

    return run


def main(path, tokens=1, repeats=30, threads=2):
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
        bq, iq = quantized(tokens, btiles[0].shape[1] * tn), quantized(tokens, itiles[0].shape[1] * itn)
        u = qk.group_sums(tokens, btiles[0].shape[1] * tn)
        qk.block_matmul(x, btiles[0], f.code, y, bq, u)  # x prepared in bq and u
        prepare_input(x, itiles[0], iq)
        b_units, i_units = qk.block_units(btiles[0]), matmul_units(tokens, itiles[0])
        for mode, count, workers in (("cached", 1, 1), ("streamed", len(layers), 1),
                                     ("streamed", len(layers), threads)):

            def block_rows(first, end):
                for tiles in btiles[:count]:
                    qk.block_matmul_rows(tiles, f.code, y, bq, u, first, end)

            def int8_rows(first, end):
                for tiles in itiles[:count]:
                    matmul_rows(x, tiles, scale, y, iq, first, end)

            block, int8 = on_threads(block_rows, b_units, workers), on_threads(int8_rows, i_units, workers)
            block(), int8()  # compiled, and in the caches as far as they hold them
            b_s, i_s = [], []
            for _ in range(repeats):
                b_s.append(median_seconds(block, 3) / count)
                i_s.append(median_seconds(int8, 3) / count)
            b_s, i_s = float(np.median(b_s)), float(np.median(i_s))
            b_gb, i_gb = layers[0].nbytes / b_s / 1e9, m * n / i_s / 1e9
            print(f"  {name:9s} {mode:8s} x{workers} {kind.name:5s} {m:6d}x{n:<6d} block {b_s * 1e6:7.1f} us "
                  f"{b_gb:6.2f} GB/s   int8 {i_s * 1e6:7.1f} us {i_gb:6.2f} GB/s   GB/s ratio {b_gb / i_gb:.2f}, "
                  f"time ratio {b_s / i_s:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
