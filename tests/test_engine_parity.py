"""The engine against transformers on the same tiny random checkpoints (tests/conftest.py).

fp32: logits within FP32_ATOL of transformers on a prompt, over 32 cached decode steps (the logits the stream's
sampler sees), and greedy generations identical to `model.generate`. int8: logits within FP32_ATOL of transformers
run on the dequantized weights (so the int8 path itself is exact), and within the stated quantization tolerance of
the fp32 model.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import spark_nb
from spark_nb.engine import engine as engine_module
from spark_nb.model import load_folder
from spark_nb.wafer import forward as fw
from spark_nb.wafer.spec import WSE3

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FAMILIES = ["llama", "qwen2", "mistral"]
PROMPT = 'def add(a, b):\n    """Sum."""\n    return a + b\n'
STEPS = 32
FP32_ATOL = 1e-4

# int8 weights and activations (W8A8: x quantized per PE column slice) against the fp32 model. Errors are measured
# per position in units of that position's logit spread (std over the vocab), so the bound does not depend on how
# peaked a random model happens to be. Measured on these checkpoints (25-token prompt + 32 greedy tokens = 57
# positions), with weight-only int8 in brackets:
#     llama   rms 0.037 (0.026)  max 0.19 (0.12)   top-1 0.95     qwen2 rms 0.023 (0.016)  max 0.11 (0.075)  top-1 0.98
#     mistral rms 0.037 (0.025)  max 0.20 (0.15)   top-1 0.89     (top-1 is the noisiest: random models have close
#     runners-up)
# and with the int8 engine's fp16 KV cache: llama rms 0.037 max 0.18 top-1 0.95, qwen2 0.023 0.12 1.0, mistral 0.036
# 0.21 0.89 (the cache's rounding is lost in the activations').
# The bounds leave 2x margin. Real layout bugs land far outside them (test_int8_tolerance_catches_layout_bugs on
# llama): lm_head scales shifted by one row give rms 0.23, top-1 0.37; one layer's q scales shifted, rms 0.16,
# max 1.4; a transposed tile, rms 1.3, top-1 0.02.
INT8_RMS = 0.08  # root-mean-square of |Δlogit| / std
INT8_MAX = 0.40  # largest |Δlogit| / std at any position
INT8_TOP1 = 0.80  # fraction of positions whose argmax agrees


# -- helpers -----------------------------------------------------------------------------------------------------


def torch_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits[0].float().numpy()


def torch_greedy(model, ids, steps: int = STEPS) -> list[int]:
    """transformers' cached greedy decode, with end-of-sequence disabled so it always runs `steps` tokens."""
    config = transformers.GenerationConfig(do_sample=False, max_new_tokens=steps, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        out = model.generate(torch.tensor([list(ids)]), generation_config=config)[0].tolist()
    assert len(out) == len(ids) + steps
    return out[len(ids) :]


def int8_errors(ours: np.ndarray, ref: np.ndarray) -> dict:
    err = np.abs(ours - ref) / ref.std(axis=-1, keepdims=True)
    return {"rms": float(np.sqrt(np.mean(err**2))), "max": float(err.max()),
            "top1": float(np.mean(ours.argmax(-1) == ref.argmax(-1)))}


def within_int8_tolerance(e: dict) -> bool:
    return e["rms"] <= INT8_RMS and e["max"] <= INT8_MAX and e["top1"] >= INT8_TOP1


@pytest.fixture(scope="module")
def greedy(request):
    """family -> (prompt ids, transformers' 32 greedy tokens, transformers' logits over prompt + tokens)."""
    cache = {}

    def get(family):
        if family not in cache:
            folder, model = request.getfixturevalue(family)
            ids = spark_nb.load(folder, dtype="fp32").encode(PROMPT)
            tokens = torch_greedy(model, ids)
            cache[family] = ids, tokens, torch_logits(model, ids + tokens)
        return cache[family]

    return get


# -- fp32 ---------------------------------------------------------------------------------------------------------


def test_checkpoints_have_what_they_test(llama, qwen2, mistral):
    l, q, m = (load_folder(folder) for folder, _ in (llama, qwen2, mistral))
    assert l.config.rope_scaling["rope_type"] == "llama3" and l.config.n_kv_heads < l.config.n_heads
    assert l.weights.lm_head is not l.weights.embed and q.weights.lm_head is q.weights.embed
    assert all(np.abs(b).mean() > 0.1 for layer in q.weights.layers for b in (layer.bq, layer.bk, layer.bv))
    assert np.abs(l.weights.layers[0].attn_norm - 1).mean() > 0.1 and np.abs(l.weights.final_norm - 1).mean() > 0.1
    assert m.config.sliding_window == 16


def test_llama3_rope_scaling_is_applied(llama, greedy):
    """Parity with transformers depends on the llama3 scaling: unscaled rotary frequencies change the logits."""
    folder, _ = llama
    ids, tokens, ref = greedy("llama")
    engine = spark_nb.load(folder, dtype="fp32")
    unscaled = fw.rotary(dataclasses.replace(engine.config, rope_scaling=None), engine.context)
    engine._pass = fw.Forward(engine._pass.resident._replace(rot=unscaled), engine.config.vocab_size)
    assert np.abs(engine.logits(ids + tokens) - ref).max() > 100 * FP32_ATOL


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_logits_match_transformers(request, family):
    folder, model = request.getfixturevalue(family)
    engine = spark_nb.load(folder, wafer="wse3", dtype="fp32")
    ids = engine.encode(PROMPT)
    assert 15 <= len(ids) <= 30
    ours = engine.logits(ids)
    assert ours.dtype == np.float32 and ours.shape == (len(ids), engine.config.vocab_size)
    np.testing.assert_allclose(ours, torch_logits(model, ids), rtol=0, atol=FP32_ATOL)


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_decode_matches_transformers(request, monkeypatch, greedy, family):
    """32 greedy steps through the KV cache: the same tokens as model.generate, and at every step the logits the
    sampler is handed equal transformers' full-sequence logits."""
    folder, _ = request.getfixturevalue(family)
    ids, expected, ref = greedy(family)
    engine = spark_nb.load(folder, dtype="fp32")
    seen = []
    real_sample = engine_module.sample

    def recording_sample(logits, *args):
        seen.append(np.array(logits, copy=True))
        return real_sample(logits, *args)

    monkeypatch.setattr(engine_module, "sample", recording_sample)
    events = list(engine.stream(ids, max_new_tokens=STEPS, temperature=0.0, ignore_eos=True))
    done = events[-1]
    assert done.reason == "length"
    assert list(done.token_ids) == expected
    assert len(seen) == STEPS  # prefill's last position, then 31 decode steps
    np.testing.assert_allclose(np.stack(seen), ref[len(ids) - 1 : len(ids) - 1 + STEPS], rtol=0, atol=FP32_ATOL)
    # and one uncached forward over the whole sequence
    np.testing.assert_allclose(engine.logits(ids + expected), ref, rtol=0, atol=FP32_ATOL)


def test_sliding_window_is_applied(mistral, greedy):
    """Mistral's window (16) is shorter than the sequence (52): parity holds, and the window really matters."""
    folder, _ = mistral
    ids, tokens, ref = greedy("mistral")
    engine = spark_nb.load(folder, dtype="fp32")
    assert engine.config.sliding_window == 16 < len(ids + tokens)
    np.testing.assert_allclose(engine.logits(ids + tokens), ref, rtol=0, atol=FP32_ATOL)
    # attend to everything: positions past the window must change
    engine._pass = fw.Forward(engine._pass.resident._replace(window=0), engine.config.vocab_size)
    unwindowed = engine.logits(ids + tokens)
    np.testing.assert_allclose(unwindowed[:16], ref[:16], rtol=0, atol=FP32_ATOL)
    assert np.abs(unwindowed[16:] - ref[16:]).max() > 100 * FP32_ATOL


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_many_ragged_tiles_match_transformers(request, greedy, family):
    """With 2 KiB PEs every matrix spans a grid of small tiles with ragged edges; logits are unchanged."""
    folder, _ = request.getfixturevalue(family)
    ids, tokens, ref = greedy(family)
    engine = spark_nb.load(folder, wafer=WSE3.replace(name="small-pe", sram_per_pe=2048), dtype="fp32")
    model = engine._pass.resident.model
    for tiles in (model.layers.wqkv, model.layers.w_down, model.lm_head):
        assert tiles.shape[-4] > 1 and tiles.shape[-3] > 1, tiles.shape
    np.testing.assert_allclose(engine.logits(ids + tokens), ref, rtol=0, atol=FP32_ATOL)


# -- int8 ---------------------------------------------------------------------------------------------------------


# The int8 path quantizes activations too (per PE column slice, see spark_nb/wafer/kernels.py), so it is not
# transformers-on-rounded-weights to fp32 accuracy: its exact arithmetic is held to the NumPy twins, which emulate
# the same quantization (tests/test_kernels.py::test_forward_matches_the_twins), and its distance from the fp32
# model to the tolerance below.


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_within_quantization_tolerance(request, greedy, family):
    folder, _ = request.getfixturevalue(family)
    ids, tokens, ref = greedy(family)
    errors = int8_errors(spark_nb.load(folder, dtype="int8").logits(ids + tokens), ref)
    assert within_int8_tolerance(errors), errors


def test_int8_tolerance_catches_layout_bugs(llama, greedy):
    """The tolerance is tight enough to fail on the bugs it is there for."""
    folder, _ = llama
    ids, tokens, ref = greedy("llama")

    def shift_scales(model):  # scales applied to the wrong output rows
        model.lm_head_scale[:] = np.roll(model.lm_head_scale.copy(), 1)

    def transpose_tile(model):  # a tile stored transposed
        tile = model.layers.wo[0, 0, 0]
        assert tile.shape[0] == tile.shape[1]
        tile[:] = tile.T.copy()

    def shift_q_scales(model):
        model.layers.sqkv[0][:] = np.roll(model.layers.sqkv[0].copy(), 1)

    for bug in (shift_scales, transpose_tile, shift_q_scales):
        engine = spark_nb.load(folder, dtype="int8")
        bug(engine._pass.resident.model)
        errors = int8_errors(engine.logits(ids + tokens), ref)
        assert not within_int8_tolerance(errors), (bug.__name__, errors)
