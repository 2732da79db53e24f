"""GGUF block tiles (spark_nb/wafer/blocks.py), the matmul kernels on them (quant_kernels.py), and the placement and
cycle model charging each matrix its block format's real bytes.

The blocks come from a tiny GGUF file written here with gguf.GGUFWriter (random valid blocks: gguf has no
quantizer for the K-quants) and read back with gguf.GGUFReader, as a real file's tensors are. Every weight must
dequantize to gguf.quants.dequantize's value bit for bit; the kernel must equal its NumPy twin bit for bit, stay
within the int8-activation bound of the float64 product of the dequantized weights, and give a token the same bits
alone as among others (speculative decoding relies on it).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from gguf_files import random_blocks, tiny_qwen2
from spark_nb.model.gguf_file import load_gguf
from spark_nb.wafer import blocks
from spark_nb.wafer import quant_kernels as qk
from spark_nb.wafer.cycles import decode_cycles, matvec_phases
from spark_nb.wafer.kernels import quantized
from spark_nb.wafer.placement import LAYER_MATRICES, place
from spark_nb.wafer.reference import quantize_slices
from spark_nb.wafer.spec import MINI, WSE3

KINDS = blocks.BLOCK_KINDS
ROWS = 37  # ragged against every tile height


@pytest.fixture(scope="module")
def file_blocks(tmp_path_factory):
    """kind -> raw[ROWS, bytes per row] of a ROWS x width(kind) matrix of random blocks, read back from a GGUF
    file."""
    path = tmp_path_factory.mktemp("blocks") / "blocks.gguf"
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    for kind in KINDS:
        writer.add_tensor(kind.name, random_blocks(ROWS, width(kind), kind, rng), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(path))
    return {T(t.tensor_type): np.array(t.data) for t in reader.tensors}


def width(kind):
    return 3 * blocks.FORMATS[kind].block if blocks.FORMATS[kind].block == 256 else 7 * 32


def tile_width(kind):
    """A tile width in weights that leaves a ragged last PE column (and for blocks of 32, an odd number of blocks:
    the kernel takes them two at a time, then the last alone)."""
    return 2 * blocks.FORMATS[kind].block if blocks.FORMATS[kind].block == 256 else 96


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_weight_is_gguf_s_own(file_blocks, kind):
    raw = file_blocks[kind]
    ours, theirs = blocks.dequantize(raw, kind), gguf.quants.dequantize(raw, kind)
    assert ours.shape == theirs.shape == (ROWS, width(kind))
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_tiles_cut_along_blocks_and_hold_the_file_s_bytes(file_blocks, kind):
    raw, f = file_blocks[kind], blocks.FORMATS[kind]
    tiles = blocks.to_block_tiles(raw, kind, 8, tile_width(kind))
    assert tiles.dtype == np.uint8 and tiles.ctypes.data % 64 == 0
    assert tiles.shape[3] == tile_width(kind) // f.block * f.nbytes  # whole blocks
    assert np.array_equal(blocks.from_block_tiles(tiles, kind, ROWS, width(kind)), raw)
    # the file's bits, only moved (blocks of 32 interleaved eight rows a unit), and zero bytes for padding: blocks
    # whose weights are all 0
    assert np.unpackbits(tiles).sum() == np.unpackbits(raw).sum()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("spec", [WSE3, MINI], ids=lambda s: s.name)
def test_block_tile_shape_fits_a_pe(kind, spec):
    f = blocks.FORMATS[kind]
    tm, tn = blocks.block_tile_shape(spec, 896, 4864, kind)
    assert tm % 8 == 0 and tn % f.block == 0
    assert blocks.tile_bytes(tm, tn, kind) <= spec.weight_budget_per_pe
    # the real bytes per weight: a Q4_K tile holds more weights than an int8 one in the same SRAM
    assert tm * tn * blocks.bytes_per_weight(kind) == tm * (tn // f.block) * f.nbytes


def test_bytes_per_weight():
    assert blocks.bytes_per_weight(T.Q8_0) == 34 / 32
    assert blocks.bytes_per_weight(T.Q4_K) == 144 / 256 == 4.5 / 8
    assert blocks.bytes_per_weight(T.Q6_K) == 210 / 256


def check_block_matmul(raw, kind, tokens, rng):
    """The kernel against its twin (bit for bit), against float64 (within the int8 activations' bound), and a token
    alone against the same token among the others (bit for bit)."""
    m, n, tn = raw.shape[0], width(kind), tile_width(kind)
    tiles = blocks.to_block_tiles(raw, kind, 8, tn)
    x = rng.standard_normal((tokens, n)).astype(np.float32)
    q = quantized(tokens, tiles.shape[1] * tn)
    y = np.full((tokens, m), np.nan, np.float32)
    code = blocks.FORMATS[kind].code
    u = qk.group_sums(tokens, tiles.shape[1] * tn)
    qk.block_matmul(x, tiles, code, y, q, u)
    assert np.array_equal(y, qk.matmul_reference(x, raw, kind, tn))
    # x rounded to int8 per PE column slice is off by at most half a step per element: a bound per output, plus
    # float32 rounding of the sums (well under 1e-5 of the magnitudes summed)
    w = gguf.quants.dequantize(raw, kind).astype(np.float64)
    exact = x.astype(np.float64) @ w.T
    _, scales, _ = quantize_slices(x, tn)
    step = np.repeat(scales.astype(np.float64), tn, axis=1)[:, :n]  # [T, n]
    bound = 0.5 * step @ np.abs(w).T + 1e-5 * (np.abs(x) @ np.abs(w).T)
    assert (np.abs(y - exact) <= bound).all()
    for t in (0, tokens - 1):
        alone = np.full((1, m), np.nan, np.float32)
        qk.block_matmul(x[t : t + 1], tiles, code, alone, q, u)
        assert np.array_equal(alone[0], y[t])


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
# decode, a verified draft, prompts (blocks of 32: 8 + 8 + 1 and 8 x 8 + 2 x 1; the K-quants: 17 in one call, and
# K_TOKENS + 2 in two)
@pytest.mark.parametrize("tokens", [1, 4, 17, qk.K_TOKENS + 2])
def test_block_matmul(file_blocks, kind, tokens):
    check_block_matmul(file_blocks[kind], kind, tokens, np.random.default_rng(tokens))


NO_JIT_SCRIPT = """
import numpy as np, gguf
from spark_nb.wafer import quant_kernels
import test_blocks as t
from gguf_files import random_blocks

assert not hasattr(quant_kernels.block_matmul, "py_func"), "JIT is on"
rng = np.random.default_rng(0)
for kind in t.KINDS:
    t.check_block_matmul(random_blocks(9, t.width(kind), kind, rng), kind, 2, rng)
print("no-jit ok")
"""


PORTABLE_SCRIPT = """
import numpy as np
from spark_nb.wafer import quant_kernels
import test_blocks as t
from gguf_files import random_blocks

assert not quant_kernels.HOST_VNNI_VL, "vpdpbusd is on"
rng = np.random.default_rng(0)
for kind in t.KINDS:
    t.check_block_matmul(random_blocks(t.ROWS, t.width(kind), kind, rng), kind, 13, rng)  # 8 + 4 + 1 tokens a call (the K-quants: 13 in one)
print("portable ok")
"""


NO_GFNI_SCRIPT = """
import numpy as np
from spark_nb.wafer import quant_kernels
import test_blocks as t
from gguf_files import random_blocks

assert quant_kernels.HOST_VNNI_VL and not quant_kernels.HOST_GFNI
rng = np.random.default_rng(0)
for kind in t.KINDS:
    t.check_block_matmul(random_blocks(t.ROWS, t.width(kind), kind, rng), kind, 13, rng)
print("no-gfni ok")
"""


@pytest.mark.parametrize("script, env, done", [
    (NO_JIT_SCRIPT, {"NUMBA_DISABLE_JIT": "1"}, "no-jit ok"),  # every kernel as plain Python
    (PORTABLE_SCRIPT, {"SPARK_NB_NO_VNNI": "1"}, "portable ok"),  # the int32 path hosts without VNNI take
    # vpdpbusd without GFNI's bit-matrix moves (Cascade Lake), where this host has VNNI
    pytest.param(NO_GFNI_SCRIPT, {"SPARK_NB_NO_GFNI": "1"}, "no-gfni ok",
                 marks=pytest.mark.skipif(not qk.HOST_VNNI_VL, reason="the host has no AVX-512 VNNI")),
], ids=["no-jit", "portable", "no-gfni"])
def test_block_kernels_on_every_path(tmp_path, script, env, done):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), **env}  # each path compiles its own kernels
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert done in result.stdout


# -- placement and the cycle model at the real bytes per weight ------------------------------------------------

SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny Qwen2 GGUF file whose matrices take Q4_K, Q6_K and Q8_0 in turn (norms and biases F32)."""
    return tiny_qwen2(tmp_path_factory.mktemp("kinds") / "tiny.gguf", [T.Q4_K, T.Q6_K, T.Q8_0], **SHAPE)


def test_gguf_kinds_name_every_matrix(model_file):
    kinds = blocks.gguf_kinds(model_file)
    stored = {t.name: T(t.tensor_type) for t in gguf.GGUFReader(model_file).tensors}
    expected = {(l, m) for l in range(SHAPE["num_hidden_layers"]) for m in LAYER_MATRICES}
    assert set(kinds) == expected | {(None, "embedding"), (None, "lm_head")}
    assert kinds[1, "w_down"] == stored["blk.1.ffn_down.weight"]
    assert kinds[None, "lm_head"] == stored["output.weight"]


def test_placement_charges_each_matrix_its_real_bytes(model_file):
    config = load_gguf(model_file, streamed=True).config
    kinds = blocks.gguf_kinds(model_file)
    as_int8, as_file = (place(config, MINI, "int8", 64, kinds=k) for k in (None, kinds))
    for m in as_file.matrices:
        kind, f = kinds[m.layer, m.name], blocks.FORMATS[kinds[m.layer, m.name]]
        assert m.kind == kind.name and m.weight_bytes == blocks.bytes_per_weight(kind)
        assert m.tn % f.block == 0 and m.tile_bytes == m.tm * (m.tn // f.block) * f.nbytes  # whole blocks
        assert m.pe_bytes <= MINI.weight_budget_per_pe
    weights = sum(m.rows * m.cols * m.weight_bytes for m in as_file.matrices)
    assert weights == sum(m.rows * m.cols * blocks.bytes_per_weight(kinds[m.layer, m.name]) for m in as_file.matrices)
    assert weights < sum(m.rows * m.cols for m in as_int8.matrices)  # fewer bytes than 1 a weight
    assert as_file.pes_used < as_int8.pes_used
    assert decode_cycles(as_file, 32).seconds > 0  # the cycle model takes the placement as it is


def test_a_matvec_bound_by_sram_reads_reads_the_real_bytes():
    spec = MINI.replace(sram_read_bytes_per_cycle=1)  # reads, not MACs, bound the matvec
    q4k, int8 = (matvec_phases(spec, "int8", 64, 512, 2, 2, 4, weight_bytes=b)["mac"]
                 for b in (blocks.bytes_per_weight(T.Q4_K), None))
    assert int8 == 64 * 512 and q4k == 64 * 512 * 144 / 256
