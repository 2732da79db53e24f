"""spark_nb.wafer.cycles and project(): monotonic behaviour of the cycle model, and config inputs.

Properties that a mistake in the model would break: more context costs attention, a wider SIMD saves MAC cycles,
a second wafer adds link time, prefill amortises weight reads, and the per-op breakdown adds up.
"""
from __future__ import annotations

import json
import math

import pytest

from spark_nb.model.config import ModelConfig
from spark_nb.wafer.cycles import Design, decode_cycles, prefill_cycles
from spark_nb.wafer.placement import _try_place, place
from spark_nb.wafer.project import project
from spark_nb.wafer.spec import DTYPE_BYTES, MINI, WSE3

TINY = ModelConfig(family="llama", vocab_size=8192, hidden_size=256, intermediate_size=768, n_layers=8,
                   n_heads=8, n_kv_heads=4, head_dim=32)
QWEN_05B = ModelConfig(family="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, n_layers=24,
                       n_heads=14, n_kv_heads=2, head_dim=64, tie_word_embeddings=True, attention_bias=True)
PHASED = Design(streaming=False, spread=(1, 1))  # MACs as one phase over placement.py's tiles
TINY_JSON = {"architectures": ["LlamaForCausalLM"], "vocab_size": 8192, "hidden_size": 256,
             "intermediate_size": 768, "num_hidden_layers": 8, "num_attention_heads": 8,
             "num_key_value_heads": 4}


@pytest.fixture(scope="module")
def placed():
    return place(TINY, WSE3, "fp16", context=2048)


def test_ops_sum_to_total(placed):
    for b in (decode_cycles(placed, 512), prefill_cycles(placed, 512)):
        assert b.total_cycles == pytest.approx(sum(b.ops.values()))
        assert b.seconds == pytest.approx(b.total_cycles / WSE3.clock_hz)
        assert all(v > 0 for v in b.ops.values())
    assert {"matvec.mac", "matvec.broadcast", "matvec.reduce", "attention", "norm", "rope", "swiglu",
            "region_hops", "host_io", "lm_head", "task_overhead"} <= set(decode_cycles(placed, 512).ops)


def test_more_context_costs_more_attention(placed):
    short, long = decode_cycles(placed, 128), decode_cycles(placed, 2048)
    assert long.ops["attention"] > short.ops["attention"]
    assert long.ops["matvec.mac"] == short.ops["matvec.mac"]
    with pytest.raises(ValueError):
        decode_cycles(placed, 4096)


def test_wider_simd_cuts_mac_cycles_until_sram_reads_bind():
    # with plenty of SRAM bandwidth the MACs bind: doubling the SIMD halves them
    fast_sram = WSE3.replace(sram_read_bytes_per_cycle=64)
    narrow = decode_cycles(place(TINY, fast_sram, "fp16", 512), design=PHASED).ops["matvec.mac"]
    wide = decode_cycles(place(TINY, fast_sram.replace(macs_per_cycle_fp16=16), "fp16", 512),
                         design=PHASED).ops["matvec.mac"]
    assert wide == pytest.approx(narrow / 2)
    # with two 32-bit reads per cycle fp16 weights arrive at 4 per cycle: a SIMD wider than 4 gains nothing
    a = decode_cycles(place(TINY, WSE3, "fp16", 512), design=PHASED).ops["matvec.mac"]
    b = decode_cycles(place(TINY, WSE3.replace(macs_per_cycle_fp16=16), "fp16", 512), design=PHASED).ops["matvec.mac"]
    assert a == b


def test_a_second_wafer_adds_link_time():
    one = decode_cycles(place(TINY, WSE3, "fp16", 512, n_wafers=1))
    two = decode_cycles(place(TINY, WSE3, "fp16", 512, n_wafers=2))
    assert "wafer_link" not in one.ops
    assert two.ops["wafer_link"] >= WSE3.wafer_link_latency_s * WSE3.clock_hz
    assert two.total_cycles > one.total_cycles


def test_prefill_per_token_is_cheaper_than_decode_for_long_prompts(placed):
    prefill = prefill_cycles(placed, 1024)
    decode = decode_cycles(placed, 512)  # the average context of the prompt
    assert prefill.total_cycles / 1024 < decode.total_cycles / 4
    assert prefill_cycles(placed, 1).total_cycles < prefill.total_cycles


def test_project_accepts_dict_path_and_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_JSON))
    results = [project(c, wafer="mini", dtype="int8", context=256, prompt=128)
               for c in (TINY_JSON, tmp_path / "config.json", str(tmp_path), ModelConfig.from_dict(TINY_JSON))]
    for r in results[1:]:
        assert r.decode_tok_per_s == results[0].decode_tok_per_s
        assert r.ttft_s == results[0].ttft_s
        assert r.pes_used == results[0].pes_used
    r = results[0]
    # the first token comes out of the prefill: add only the last position's lm_head and the trip to the host
    step = decode_cycles(r.placement, 128)
    extra = (step.ops["lm_head"] + step.ops["host_io"]) / r.placement.spec.clock_hz
    assert r.ttft_s == pytest.approx(r.prefill_breakdown.seconds + extra)
    assert r.prefill_breakdown.seconds < r.ttft_s < r.prefill_breakdown.seconds + step.seconds
    assert r.decode_tok_per_s == pytest.approx(1 / r.breakdown.seconds)
    assert "tok/s" in str(r)


def test_spark_nb_project_forwards():
    import spark_nb

    assert spark_nb.project(TINY, context=256, prompt=64).pes_used == project(TINY, context=256, prompt=64).pes_used


def test_spreading_the_kv_cache_cuts_attention_within_the_wafer():
    spread = place(QWEN_05B, WSE3, "fp16", context=1024)
    least = _try_place(QWEN_05B, WSE3, "fp16", 1024, 1, spread=False)
    a, b = decode_cycles(spread, design=PHASED), decode_cycles(least, design=PHASED)
    share = lambda x: x.ops["attention"] / x.total_cycles  # noqa: E731
    assert share(a) < share(b) / 2 and a.total_cycles < b.total_cycles
    assert b.ops["matvec.mac"] == a.ops["matvec.mac"]  # the same tiles
    assert least.pes_used < spread.pes_used <= WSE3.pes
    # independent arithmetic: the bytes need ceil(1024 x 2 heads x 64 x 2 x 2 B / budget) PEs, in 2 columns
    kv_bytes = 1024 * 2 * 64 * 2 * DTYPE_BYTES["fp16"]
    assert least.kv[0].gr == math.ceil(math.ceil(kv_bytes / WSE3.weight_budget_per_pe) / 2)
    kv = spread.kv[0]
    assert kv.gr > least.kv[0].gr
    # per PE, the spread cache's score MACs (or its K reads, whichever binds) take no longer than the slowest
    # matvec's MACs (or weight reads) of the layer
    p, g, hd, R = math.ceil(1024 / kv.gr), 14 / 2, 64, WSE3.sram_read_bytes_per_cycle
    scores = max(p * g * hd / WSE3.macs_per_cycle_fp16, p * hd * 2 / R)
    slowest_mac = max(max(m.tm * m.tn / WSE3.macs_per_cycle_fp16, m.tm * m.tn * 2 / R)
                      for m in spread.matrices if m.layer == 0)
    assert scores <= slowest_mac


def test_without_spare_pes_the_kv_cache_falls_back_to_the_least():
    # TINY at context 2048: 2048 x 4 heads x 32 x 2 x 2 B = 1 MiB of KV per layer
    least = math.ceil(math.ceil(2048 * 4 * 32 * 2 * 2 / WSE3.weight_budget_per_pe) / 4)  # PEs per head
    roomy = place(TINY, WSE3, "fp16", context=2048)
    assert roomy.kv[0].gr > least  # spread where the wafer has room
    narrow = MINI.replace(mesh_cols=36)  # 864 PEs: the least cache fits beside the weights, the spread one does not
    p = place(TINY, narrow, "fp16", context=2048)
    assert p.pes_used <= narrow.pes < roomy.pes_used
    assert all(k.gr == k.gr_for_bytes == least for k in p.kv)


BUILTIN_SHAPE = ModelConfig(family="llama", vocab_size=4096, hidden_size=256, intermediate_size=704, n_layers=6,
                            n_heads=4, n_kv_heads=4, head_dim=64, tie_word_embeddings=True)


def test_spreading_fits_every_wafer_and_is_never_slower_than_the_fewest_pes():
    from spark_nb.wafer.cycles import spread_for, spread_pes

    for config, n_wafers in ((BUILTIN_SHAPE, 1), (QWEN_05B, 1), (TINY, 2)):
        p = place(config, WSE3, "int8", 1024, n_wafers=n_wafers)
        s = spread_for(p)
        assert max(spread_pes(p, s)) <= WSE3.pes
        assert decode_cycles(p).total_cycles <= decode_cycles(p, design=Design(spread=(1, 1))).total_cycles
    # a tiny model on its fewest PEs reads each ~44 KB tile at 8 B a cycle: spread, the MACs all but vanish
    p = place(BUILTIN_SHAPE, WSE3, "int8", 2048)
    fewest, spread = decode_cycles(p, design=Design(spread=(1, 1))), decode_cycles(p)
    assert spread.ops["matvec.mac"] < fewest.ops["matvec.mac"] / 20
    assert spread.total_cycles < fewest.total_cycles / 4


def test_best_reduction_is_the_faster_of_chain_and_tree():
    p = place(QWEN_05B, WSE3, "fp16", 1024)
    best, chain, tree = (decode_cycles(p, design=Design(reduction=r, spread=(1, 1))) for r in ("best", "chain", "tree"))
    for op in ("matvec.reduce", "attention.reduce"):
        assert best.ops[op] <= min(chain.ops[op], tree.ops[op])
    with pytest.raises(ValueError):
        Design(reduction="ring")


def test_streaming_overlaps_the_broadcast_and_saves_task_activations(placed):
    streaming, phased = (decode_cycles(placed, 512, Design(streaming=s, spread=(1, 1))) for s in (True, False))
    assert streaming.ops["task_overhead"] < phased.ops["task_overhead"]
    assert streaming.ops["matvec.broadcast"] < phased.ops["matvec.broadcast"]
    assert streaming.total_cycles < phased.total_cycles


def test_layer_pipelining_speeds_prefill_only(placed):
    on, off = (prefill_cycles(placed, 1024, Design(pipeline=p)) for p in (True, False))
    assert on.total_cycles < off.total_cycles
    assert decode_cycles(placed, 512, Design(pipeline=False)).total_cycles == decode_cycles(placed, 512).total_cycles


def test_fed_tokens_cost_one_pipelined_pass_not_a_decode_step_each():
    from spark_nb.wafer.cycles import feed_cycles

    p = place(BUILTIN_SHAPE, WSE3, "int8", 2048)
    step = decode_cycles(p, 101).total_cycles
    assert feed_cycles(p, 100, 1).total_cycles == pytest.approx(step, rel=0.1)
    for n in (4, 16, 64):
        assert feed_cycles(p, 100, n, logits=n).total_cycles < n * step / 2
    with pytest.raises(ValueError):
        feed_cycles(p, 2040, 16)


@pytest.mark.parametrize("config, spec, context, within", [(BUILTIN_SHAPE, WSE3, 2048, 0.012),
                                                           (QWEN_05B, WSE3, 2048, 0.017),
                                                           (BUILTIN_SHAPE, MINI, 256, 0.002)])
def test_feed_cost_fit_follows_feed_cycles_on_a_grid(config, spec, context, within):
    """FeedCost (what the engine charges per verified draft) against feed_cycles itself: every token count that
    changes how the feed is charged (1, 2, around a micro-batch m and two), others up to the context, at the first,
    a middle and the last start each, with one logits row and with one per token."""
    from spark_nb.wafer.cycles import FeedCost, feed_cycles

    p = place(config, spec, "int8", context)
    fit = FeedCost(p)
    m = fit.m
    tokens = {1, 2, 3, 5, 8, 13, 21, m - 1, m, m + 1, 2 * m, 2 * m + 1, context // 3, context // 2, context}
    worst = 0.0
    for n in sorted(t for t in tokens if 1 <= t <= context):
        for start in (0, (context - n) // 2, context - n):
            for logits in (1, n):
                exact = feed_cycles(p, start, n, logits).seconds
                worst = max(worst, abs(fit(start, n, logits) / exact - 1))
    assert worst <= within


def test_explain_names_every_op_and_every_constant_with_a_source():
    from spark_nb.wafer.spec import SOURCES

    r = project(BUILTIN_SHAPE, dtype="int8", context=2048, prompt=64)
    text = r.explain()
    for op in r.breakdown.ops:
        assert op in text
    for name, source in SOURCES.items():
        assert name in text and source in text
    assert "WaferLLM" in text and "csl-examples" in text
    assert r.pes_active >= r.pes_used and r.spread != (1, 1)


LLAMA_8B = ModelConfig(family="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336, n_layers=32,
                       n_heads=32, n_kv_heads=8, head_dim=128)


def test_mesh_layout_uses_every_pe_for_each_gemv_but_cannot_pipeline_prefill():
    from spark_nb.wafer.cycles import mesh_side

    p = place(LLAMA_8B, WSE3, "fp16", 1024)
    mesh, regions = Design(layout="mesh"), Design()
    side = mesh_side(p, mesh)
    # the P x P square holds the model's 16 GB (with its KV cache) within each PE's weight budget
    assert side ** 2 * WSE3.weight_budget_per_pe >= LLAMA_8B.n_params * 2 and side <= WSE3.mesh_rows
    assert decode_cycles(p, design=mesh).total_cycles < decode_cycles(p, design=regions).total_cycles / 2
    assert prefill_cycles(p, 1024, mesh).total_cycles > prefill_cycles(p, 1024, regions).total_cycles
    assert "region_hops" not in decode_cycles(p, design=mesh).ops  # x stays where the allreduce left it
    with pytest.raises(ValueError):
        Design(layout="torus")
    big = ModelConfig(family="llama", vocab_size=128256, hidden_size=8192, intermediate_size=28672, n_layers=80,
                      n_heads=64, n_kv_heads=8, head_dim=128)
    with pytest.raises(ValueError, match="mesh layout needs"):
        decode_cycles(place(big, WSE3, "fp16", 1024, n_wafers=4), design=mesh)
