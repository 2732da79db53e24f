"""The engine benchmark in quick mode: structure and internal consistency of its result, never its speeds."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spark_nb import bench

pytest.importorskip("torch")
pytest.importorskip("transformers")

TINY = {"tiny": dict(family="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True,
                     max_position_embeddings=128)}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return bench.run(shapes=TINY, reference=True, quick=True, progress=False,
                     workdir=tmp_path_factory.mktemp("bench"))


def test_result_is_json_with_one_row_per_shape_and_dtype(result):
    assert json.loads(json.dumps(result)) == result
    assert [(r["shape"], r["dtype"]) for r in result["rows"]] == [("tiny", "int8"), ("tiny", "fp32")]
    assert result["reference"]["available"] and result["reference"]["note"] is None
    for key in ("cpu", "cores", "numba_threads", "numba_threading_layer", "numba", "torch", "transformers", "date"):
        assert result["machine"][key], key
    assert result["bandwidth"]["gb_per_s"] > 0
    settings = result["settings"]
    for row in result["rows"]:
        assert [p["tokens"] for p in row["prefill"]] == settings["prefill_tokens"]
        assert [d["context"] for d in row["decode"]] == settings["decode_contexts"]
        assert row["ttft"]["prompt"] == max(settings["decode_contexts"])
        assert all(d["reused"] == 0 for d in row["decode"])  # TTFT is a whole prompt's, never the cache's
        assert 0.0 <= row["top1_agreement"] <= 1.0
        assert row["wafer"]["name"] == "wse3" and row["wafer"]["decode_tok_per_s"] > 0
    assert result["rows"][1]["top1_agreement"] > 0.9  # fp32 on the same weights picks the same tokens


def test_ratios_are_ours_over_theirs(result):
    for row in result["rows"]:
        for p in row["prefill"] + row["decode"]:
            assert p["tok_per_s"] > 0 and p["reference_tok_per_s"] > 0
            assert p["ratio"] == pytest.approx(p["tok_per_s"] / p["reference_tok_per_s"])
        ttft = row["ttft"]
        assert ttft["ratio"] == pytest.approx(ttft["reference_s"] / ttft["s"])  # their time over ours
    reference = result["shapes"]["tiny"]["reference"]
    for row in result["rows"]:  # both dtypes are compared with the same transformers run
        assert [p["reference_tok_per_s"] for p in row["prefill"]] == [p["tok_per_s"] for p in reference["prefill"]]
        assert [d["reference_tok_per_s"] for d in row["decode"]] == [d["tok_per_s"] for d in reference["decode"]]


def test_roofline_follows_from_bandwidth_and_bytes(result):
    gbps = result["bandwidth"]["gb_per_s"]
    for row in result["rows"]:
        for d in row["decode"]:
            assert d["roofline_tok_per_s"] == pytest.approx(gbps * 1e9 / d["bytes_per_token"])
            assert d["pct_roofline"] == pytest.approx(100 * d["tok_per_s"] / d["roofline_tok_per_s"])
        assert row["decode"][0]["bytes_per_token"] < row["decode"][-1]["bytes_per_token"]  # more KV to read
    int8, fp32 = (row["decode"][0]["bytes_per_token"] for row in result["rows"])
    assert 2 * int8 < fp32 < 4 * int8  # weights are 1 byte against 4; the fp32 KV cache and scales are shared


def test_decode_bytes_counts_tiles_kv_and_one_embedding_row(tmp_path):
    from spark_nb.engine import Engine
    from spark_nb.model.synthetic import write_random_model

    folder = write_random_model(tmp_path / "m", dict(TINY["tiny"], tie_word_embeddings=False))
    engine = Engine.load(folder, dtype="fp32", context=64)
    c, model = engine.config, engine._pass.resident.model
    packed = model.lm_head.nbytes + model.lm_head_scale.nbytes + sum(a.nbytes for a in model.layers)
    row = model.embed.shape[1] * model.embed.shape[3] * 4 + 4  # gc * tn fp32 values and the scale
    kv = 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4 * 10
    assert bench.decode_bytes(engine, 10) == packed + row + c.hidden_size * 4 + kv


def test_format_table_has_every_row_and_column(result):
    table = bench.format_table(result)
    lines = table.splitlines()
    assert len(lines) >= 2 + len(result["rows"])
    for row in result["rows"]:
        line = next(l for l in lines if l.split()[:2] == [row["shape"], row["dtype"]])
        assert line.count("x)") == len(row["prefill"]) + 1 + len(row["decode"])
        assert bench._fmt(row['wafer']['decode_tok_per_s']) in line
    for header in ("prefill@16", "TTFT@48 ms", "decode@8", "% roofline", "wse3 decode tok/s", "wse3 TTFT ms"):
        assert header in lines[0]


def test_without_transformers_the_reference_columns_say_how_to_get_it(result):
    missing = dict(result, reference=dict(enabled=True, available=False, note=bench.NO_REFERENCE, name=None))
    table = bench.format_table(missing)
    assert "(n/a)" in table and bench.NO_REFERENCE in table
    skipped = bench.format_table(dict(result, reference=dict(enabled=False, available=False, note=None, name=None)))
    assert "x)" not in skipped


def test_importing_bench_does_not_import_torch():
    code = "import sys, spark_nb.bench; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_arguments_fail_before_any_work():
    with pytest.raises(ValueError, match="dtype"):
        bench.run(shapes=TINY, dtypes=("fp16",), quick=True, progress=False)
    with pytest.raises(ValueError, match="decode_tokens"):
        bench.run(shapes=TINY, quick=True, decode_tokens=1, progress=False)
