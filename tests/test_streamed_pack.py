"""Packing streamed weights (a layer at a time, the vocabulary matrices a block of rows at a time, written straight
into the stacked tiles) gives exactly the tiles the whole-model pack gave: the reference below is that pack as it
was, on the fp32 weights read whole, for GGUF files (tied and untied, permuted or not) and model folders, both
dtypes, with vocabulary blocks of one tile row so that every block boundary is exercised."""
from __future__ import annotations

import math

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf_files import byte_level_vocab, cycle_types, write_gguf
from store_layouts import tiny_folder, tiny_gguf

from spark_nb.model import ModelLoadError, load_checkpoint, quantize_int8
from spark_nb.model.synthetic import config_dict, random_weights, write_random_model
from spark_nb.model.weights import StreamedWeights
from spark_nb.wafer import forward as fw
from spark_nb.wafer import packing
from spark_nb.wafer.spec import get_spec
from spark_nb.wafer.tiles import tile_shape, to_tiles, write_tiles


def reference_to_tiles(w, tm, tn):  # tiles.to_tiles before it wrote into its tiles without a padded copy
    rows, cols = w.shape
    gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
    padded = np.zeros((gr * tm, gc * tn), dtype=w.dtype)
    padded[:rows, :cols] = w
    return np.ascontiguousarray(padded.reshape(gr, tm, gc, tn).transpose(0, 2, 1, 3))


def reference_pack(weights, config, spec, dtype):  # forward.pack before it streamed
    def tiled(w, shape_of=None):
        tm, tn = tile_shape(spec, *(w if shape_of is None else shape_of).shape, dtype)
        if dtype == "int8":
            q, scale = quantize_int8(w)
            return reference_to_tiles(q, tm, tn), scale
        return reference_to_tiles(w.astype(np.float32), tm, tn), np.ones(w.shape[0], np.float32)

    def stacked(*names):
        pairs = [tiled(np.concatenate([getattr(layer, n) for n in names]), getattr(layer, names[0]))
                 for layer in weights.layers]
        return np.stack([t for t, _ in pairs]), np.stack([s for _, s in pairs])

    def biases(*pairs):
        return np.stack([np.concatenate([np.zeros(width, np.float32) if getattr(layer, name) is None
                                         else getattr(layer, name).astype(np.float32) for name, width in pairs])
                         for layer in weights.layers])

    def vectors(name):
        return np.stack([getattr(layer, name).astype(np.float32) for layer in weights.layers])

    hd = config.head_dim
    q, kv = config.n_heads * hd, config.n_kv_heads * hd
    layers = fw.Layers(vectors("attn_norm"), *stacked("wq", "wk", "wv"), biases(("bq", q), ("bk", kv), ("bv", kv)),
                       *stacked("wo"), vectors("mlp_norm"), *stacked("w_gate", "w_up"), *stacked("w_down"))
    embed, embed_scale = tiled(weights.embed)
    lm_head, lm_head_scale = (embed, embed_scale) if weights.lm_head is weights.embed else tiled(weights.lm_head)
    return fw.Decoder(embed, embed_scale, layers, weights.final_norm.astype(np.float32), lm_head, lm_head_scale)


def assert_same_decoder(ours, ref):
    for field in fw.Decoder._fields:
        a, b = getattr(ours, field), getattr(ref, field)
        for x, y in zip(a, b) if field == "layers" else [(a, b)]:
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)
            assert x.flags.c_contiguous
    for tiles in (ours.embed, ours.lm_head, ours.layers.wqkv, ours.layers.wo, ours.layers.w_gate_up,
                  ours.layers.w_down):
        assert tiles.ctypes.data % 64 == 0
    assert (ours.lm_head is ours.embed) == (ref.lm_head is ref.embed)


def tied_gguf(path):
    vocab = byte_level_vocab()
    config = config_dict("qwen2", vocab_size=len(vocab["tokens"]), tie_word_embeddings=True)
    weights = {name: w for name, w in random_weights(config).items() if name != "lm_head.weight"}
    return write_gguf(path, "qwen2", config, weights, vocab, types=cycle_types((T.Q4_1, T.Q8_0)))


MODELS = {
    "qwen2 gguf": lambda tmp: tiny_gguf(tmp / "q.gguf", kinds=(T.Q8_0, T.Q4_1, T.F16)),
    "qwen2 gguf, tied": lambda tmp: tied_gguf(tmp / "t.gguf"),
    "llama gguf, permuted": lambda tmp: tiny_gguf(tmp / "l.gguf", arch="llama", kinds=(T.Q5_1, T.BF16, T.F32)),
    "folder": lambda tmp: tiny_folder(tmp / "folder"),
    "folder, tied": lambda tmp: write_random_model(tmp / "tied", {"family": "qwen2", "vocab_size": 512,
                                                                  "tie_word_embeddings": True}),
}


@pytest.mark.parametrize("dtype", ["int8", "fp32"])
@pytest.mark.parametrize("model", MODELS)
def test_streamed_pack_is_the_whole_model_pack(tmp_path, monkeypatch, model, dtype):
    monkeypatch.setattr(packing, "PACK_VALUES", 1)  # vocabulary blocks of one tile row each
    path = MODELS[model](tmp_path)
    spec = get_spec("mini")
    whole = load_checkpoint(path, dtype=dtype)
    streamed = load_checkpoint(path, dtype=dtype, streamed=True)
    assert isinstance(streamed.weights, StreamedWeights)
    assert streamed.config == whole.config
    assert streamed.weights.tied == whole.config.tie_word_embeddings == ("tied" in model)
    ref = reference_pack(whole.weights, whole.config, spec, dtype)
    assert_same_decoder(packing.pack(streamed.weights, streamed.config, spec, dtype, threads=3), ref)
    assert_same_decoder(packing.pack(whole.weights, whole.config, spec, dtype, threads=1), ref)  # arrays in memory


def test_an_error_in_one_part_is_raised_from_the_threads(tmp_path):
    checkpoint = load_checkpoint(tiny_gguf(tmp_path / "m.gguf"), streamed=True)
    weights = checkpoint.weights

    def layer(i):
        if i == 0:
            raise ModelLoadError("layer 0 is corrupt")
        return read_layer(i)

    read_layer, weights.read_layer = weights.read_layer, layer
    with pytest.raises(ModelLoadError, match="layer 0 is corrupt"):
        packing.pack(weights, checkpoint.config, get_spec("mini"), "int8", threads=2)


def test_streamed_weights_read_all_is_the_whole_read(tmp_path):
    path = tiny_gguf(tmp_path / "m.gguf", arch="llama", kinds=(T.Q5_0, T.Q4_0))
    whole, streamed = load_checkpoint(path).weights, load_checkpoint(path, streamed=True).weights
    again = streamed.read_all(len(whole.layers))
    for name in ("embed", "lm_head", "final_norm"):
        np.testing.assert_array_equal(getattr(again, name), getattr(whole, name))
    for a, b in zip(again.layers, whole.layers):
        for field in vars(a):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None and y is None) or np.array_equal(x, y)


@pytest.mark.parametrize("rows, cols, tm, tn", [(1, 1, 8, 16), (37, 70, 8, 16), (64, 128, 16, 64), (100, 130, 24, 64)])
def test_tiles_written_in_blocks_are_the_padded_layout(rows, cols, tm, tn):
    w = np.random.default_rng(rows).normal(size=(rows, cols)).astype(np.float32)
    ref = reference_to_tiles(w, tm, tn)
    whole = to_tiles(w, tm, tn)
    np.testing.assert_array_equal(whole, ref)
    assert whole.ctypes.data % 64 == 0
    blocks = np.zeros_like(ref)
    for start in range(0, rows, 2 * tm):
        write_tiles(blocks, w[start : start + 2 * tm], start)
    np.testing.assert_array_equal(blocks, ref)
    with pytest.raises(ValueError):
        write_tiles(blocks, w[1:], 1)  # a block must start a tile row
