"""spark_nb.wafer.placement: tiles cover their matrices, nothing overlaps, capacity is checked, wafers split in order.

Each property is checked against numbers computed here from the config and the mesh, not read back from the
placement's own totals.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from spark_nb.model.config import ModelConfig
from spark_nb.wafer.placement import EMBEDDING_CODE, LM_HEAD_CODE, PlacementError, place
from spark_nb.wafer.spec import DTYPE_BYTES, MINI, WSE3
from spark_nb.wafer.tiles import tile_shape

# ~10M Llama: d 256, 8 layers, 8 heads of 32, 4 KV heads, ffn 768, vocab 8192
TINY = ModelConfig(family="llama", vocab_size=8192, hidden_size=256, intermediate_size=768, n_layers=8,
                   n_heads=8, n_kv_heads=4, head_dim=32)
# Qwen2-style: tied, q/k/v biases, d not a power of two
QWENISH = ModelConfig(family="qwen2", vocab_size=5000, hidden_size=224, intermediate_size=608, n_layers=4,
                      n_heads=7, n_kv_heads=1, head_dim=32, tie_word_embeddings=True, attention_bias=True)
LLAMA_70B = ModelConfig(family="llama", vocab_size=128256, hidden_size=8192, intermediate_size=28672,
                        n_layers=80, n_heads=64, n_kv_heads=8, head_dim=128)


@pytest.fixture(scope="module", params=[(TINY, "fp16", 1), (QWENISH, "int8", 1), (TINY, "fp32", 3)],
                ids=["tiny-fp16", "qwenish-int8", "tiny-fp32-3wafers"])
def placed(request):
    config, dtype, n_wafers = request.param
    return place(config, MINI, dtype, context=256, n_wafers=n_wafers)


def test_every_tile_fits_a_pe_with_its_buffers(placed):
    nbytes = DTYPE_BYTES[placed.dtype]
    for m in placed.matrices:
        assert m.tm * m.tn * nbytes + 4 * (m.tm + m.tn) <= MINI.weight_budget_per_pe, m.name
        assert m.pe_bytes <= MINI.sram_per_pe, m.name


def test_tiles_cover_each_matrix_with_less_than_one_tile_of_padding(placed):
    for m in placed.matrices:
        assert m.gr * m.tm >= m.rows > (m.gr - 1) * m.tm, m
        assert m.gc * m.tn >= m.cols > (m.gc - 1) * m.tn, m


def test_every_weight_and_vector_is_placed_once(placed):
    cfg = placed.config
    counted = sum(m.rows * m.cols + m.vector_bytes // DTYPE_BYTES[placed.dtype] for m in placed.matrices)
    assert counted == cfg.n_params
    names = [(m.name, m.layer) for m in placed.matrices]
    assert len(names) == len(set(names))
    assert names.count(("lm_head", None)) == 1
    assert (("embedding", None) in names) == (not cfg.tie_word_embeddings)


def test_kv_cache_holds_context_positions(placed):
    cfg = placed.config
    want = 256 * cfg.n_kv_heads * cfg.head_dim * 2 * DTYPE_BYTES[placed.dtype]
    least = math.ceil(math.ceil(want / MINI.weight_budget_per_pe) / cfg.n_kv_heads)  # PEs per head for the bytes
    for kv in placed.kv:
        assert kv.bytes == want
        assert kv.gr_for_bytes == least and kv.gr >= least  # spread over more PEs where the wafer has them
        assert kv.pes * MINI.weight_budget_per_pe >= want
        assert kv.gc == cfg.n_kv_heads
    assert len({kv.gr for kv in placed.kv}) == 1  # spread evenly


def test_no_two_blocks_share_a_pe_and_the_mesh_agrees(placed):
    for w in range(placed.n_wafers):
        coverage = np.zeros((MINI.mesh_rows, MINI.mesh_cols), dtype=np.int32)
        for block in (*placed.matrices, *placed.kv):
            if block.wafer == w:
                rows, cols = block.cells()
                np.add.at(coverage, (rows, cols), 1)
        assert coverage.max() <= 1
        mesh = placed.mesh(w)
        assert np.array_equal(mesh != 0, coverage == 1)
    assert placed.pes_used == sum(int(np.count_nonzero(placed.mesh(w))) for w in range(placed.n_wafers))


def test_mesh_codes_label_layers_kv_and_vocabulary(placed):
    meshes = np.stack([placed.mesh(w) for w in range(placed.n_wafers)])
    cfg = placed.config
    wq = placed.matrix("wq", 2)
    assert meshes[wq.wafer][wq.origin] == 3
    kv = placed.kv[2]
    assert meshes[kv.wafer][kv.origin] == -3
    lm = placed.matrix("lm_head")
    assert np.count_nonzero(meshes == LM_HEAD_CODE) == lm.pes
    assert np.count_nonzero(meshes == EMBEDDING_CODE) == (0 if cfg.tie_word_embeddings else lm.pes)


def test_report_rows_add_up(placed):
    rows = placed.report()
    assert sum(r["pes"] for r in rows) == placed.pes_used
    assert sum(r["sram_bytes"] for r in rows) == placed.sram_bytes_used
    assert [r["layer"] for r in rows if isinstance(r["layer"], int)] == list(range(placed.config.n_layers))
    assert str(placed).count("\n") == len(rows) + 1


def test_wafers_split_layers_in_order_with_vocabulary_at_the_ends():
    p = place(TINY, MINI, "fp32", context=256, n_wafers=3)
    assert list(p.layer_wafer) == sorted(p.layer_wafer)
    assert set(p.layer_wafer) == {0, 1, 2}
    assert p.matrix("embedding").wafer == 0
    assert p.matrix("lm_head").wafer == 2
    order = {name: i for i, name in enumerate(("wq", "wk", "wv", "kv", "wo", "w_gate", "w_up", "w_down"))}
    blocks = sorted([*(m for m in p.matrices if m.layer is not None), *p.kv],
                    key=lambda b: (b.layer, order[getattr(b, "name", "kv")]))
    wafers = [b.wafer for b in blocks]
    assert wafers == sorted(wafers)  # model order: a layer may straddle two wafers, never go back


def test_a_model_too_big_for_the_wafer_says_what_it_needs():
    with pytest.raises(PlacementError) as err:
        place(LLAMA_70B, WSE3, "fp16", context=1024)
    message = str(err.value)
    assert "needs" in message and f"{WSE3.pes:,} PEs" in message and "n_wafers=" in message
    assert isinstance(err.value, ValueError)


def test_capacity_is_the_limit():
    # the tiny model in fp32 takes more PEs than MINI has, and fits on enough MINIs
    with pytest.raises(PlacementError, match="needs"):
        place(TINY, MINI, "fp32", context=256, n_wafers=1)
    p = place(TINY, MINI, "fp32", context=256, n_wafers=3)
    assert p.pes_used > MINI.pes
    assert math.ceil(p.pes_used / MINI.pes) <= 3


def suggested_wafers(message: str) -> int:
    return int(message.split("n_wafers=")[1].split(",")[0].split(" ")[0])


def test_the_suggested_n_wafers_places_the_model():
    with pytest.raises(PlacementError) as err:
        place(TINY, MINI, "fp32", context=256, n_wafers=1)
    n = suggested_wafers(str(err.value))
    assert n > 1
    assert place(TINY, MINI, "fp32", context=256, n_wafers=n).n_wafers == n


def layer_pes(config, spec, dtype, context):
    """PEs of the weights and the least KV cache, from tile_shape's tiles and the config alone."""
    d, f, hd, v = config.hidden_size, config.intermediate_size, config.head_dim, config.vocab_size
    nq, nkv = config.n_heads * hd, config.n_kv_heads * hd

    def pes(rows, cols):
        tm, tn = tile_shape(spec, rows, cols, dtype)
        return math.ceil(rows / tm) * math.ceil(cols / tn)

    weights = pes(nq, d) + 2 * pes(nkv, d) + pes(d, nq) + 2 * pes(f, d) + pes(d, f)
    kv = config.n_kv_heads * math.ceil(math.ceil(context * nkv * 2 * DTYPE_BYTES[dtype] / spec.weight_budget_per_pe)
                                       / config.n_kv_heads)
    return config.n_layers * (weights + kv) + (1 if config.tie_word_embeddings else 2) * pes(v, d)


def test_70b_fp16_needs_at_least_80_percent_of_sram_and_its_pe_count_fits_4_wafers():
    # the public fact behind weight_sram_fraction: Llama 3.1 70B on 4 CS-3 with its weights in SRAM
    assert LLAMA_70B.n_params * 2 / (4 * WSE3.pes * 48 * 1024) > 0.80
    assert layer_pes(LLAMA_70B, WSE3, "fp16", 1024) <= 4 * WSE3.pes
    assert layer_pes(LLAMA_70B, WSE3.replace(weight_sram_fraction=0.80), "fp16", 1024) > 4 * WSE3.pes
    with pytest.raises(PlacementError):  # and the default is no looser than the packing needs
        place(LLAMA_70B, WSE3.replace(weight_sram_fraction=0.85), "fp16", context=1024, n_wafers=4)


def test_70b_fp16_packs_on_4_wafers_with_room_for_the_packing():
    spec = WSE3  # the default fraction is set so that the public 4-wafer deployment fits
    p = place(LLAMA_70B, spec, "fp16", context=1024, n_wafers=4)
    assert p.pes_used <= 4 * spec.pes
    assert p.matrix("embedding").wafer == 0 and p.matrix("lm_head").wafer == 3
    # every PE counted: what the blocks take is what the independent count says, plus any KV spread
    assert p.pes_used == layer_pes(LLAMA_70B, spec, "fp16", 1024) + sum(k.pes - k.gr_for_bytes * k.gc for k in p.kv)


def test_70b_fp16_on_a_tighter_wse3_suggests_a_wafer_count_that_places_it():
    spec = WSE3.replace(weight_sram_fraction=0.85)
    with pytest.raises(PlacementError) as err:
        place(LLAMA_70B, spec, "fp16", context=1024, n_wafers=4)
    n = suggested_wafers(str(err.value))
    assert n >= math.ceil(layer_pes(LLAMA_70B, spec, "fp16", 1024) / spec.pes)
    assert place(LLAMA_70B, spec, "fp16", context=1024, n_wafers=n).pes_used <= n * spec.pes
