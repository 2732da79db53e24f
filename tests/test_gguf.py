"""GGUF files (spark_nb.model.gguf_file, gguf_tokenizer) against references independent of that code.

Tiny files are written here with gguf.GGUFWriter as llama.cpp's converter writes them (tests/gguf_files.py): Qwen2,
Llama and Mistral (a "llama" file named Mistral), with every supported tensor type among their tensors. References:
transformers' own GGUF loading (logits within 1e-4 at fp32, identical tokenization), gguf.quants.dequantize of each
tensor's bytes (every block type), and llama.cpp's q/k permutation written out in the test helpers.
"""
from __future__ import annotations

import math

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf_files import (byte_level_vocab, cycle_types, gguf_name, permute, random_blocks, sentencepiece_vocab,
                        write_gguf)
from test_engine_parity import int8_errors, within_int8_tolerance

import spark_nb
from spark_nb.model import ModelLoadError, load_checkpoint
from spark_nb.model import gguf_file
from spark_nb.model.gguf_file import TENSOR_TYPES, load_gguf
from spark_nb.model.synthetic import config_dict, random_weights

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FP32_ATOL = 1e-4
PROMPT = 'def add(a, b):\n    """Sum of 12345 and héllo 🙂."""\n    return a + b\n'
SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)  # 256: a whole K-quant block per row
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TEXTS = [
    PROMPT,
    "import os\nfrom typing import Any\n\n\nclass Foo(Bar):\n\tdef __init__(self, x: int = 0) -> None:\n",
    "  leading spaces, trailing   \n\n\n and  double  spaces",
    "digits 1 12 123 1234 12345678 3.14159e-10 0x1F",
    "don't I'LL we've they'RE it's",
    "naïve café — “quotes” 東京 中文字符 😀👍🏽 \u200b zero-width",
    "special <|im_start|>user\nhi<|im_end|> and <|endoftext|> inline",
    "<s> a </s> b <unk>",
    "",
    " ",
    "\r\n\r\nwindows\r\nlines",
]


def tiny_weights(family: str, n_tokens: int, seed: int, tie: bool = False) -> tuple[dict, dict]:
    """A config.json dict and random weights (Hugging Face names) with norms and biases far from 1 and 0."""
    config = config_dict(family, vocab_size=n_tokens, tie_word_embeddings=tie, **SHAPE)
    weights = random_weights(config, seed=seed, std=0.03)
    rng = np.random.default_rng(seed + 1)
    for name, w in weights.items():
        if name.endswith("norm.weight"):
            weights[name] = rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
        elif name.endswith(".bias"):
            weights[name] = rng.normal(0.0, 0.5, w.shape).astype(np.float32)
    return config, weights


def reference_model(path):
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval()


def reference_tokenizer(path):
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.fixture(scope="module")
def vocab():
    return byte_level_vocab()


@pytest.fixture(scope="module")
def spm():
    return sentencepiece_vocab()


# Each model has every supported tensor type among its 2-D tensors, in a different order
MODELS = {
    "qwen2": dict(arch="qwen2", family="qwen2", pre="qwen2", kinds=TENSOR_TYPES, name="Tiny Qwen2"),
    "llama": dict(arch="llama", family="llama", pre="llama-bpe", kinds=TENSOR_TYPES[::-1], name="Tiny Llama"),
    "mistral": dict(arch="llama", family="mistral", pre=None, kinds=TENSOR_TYPES[3:] + TENSOR_TYPES[:3],
                    name="Tiny Mistral v0.1", spm=True, tie=True),
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, vocab, spm):
    """name -> (path, transformers' model of that file, the Hugging Face weights written)."""
    cache = {}

    def get(name):
        if name not in cache:
            m = MODELS[name]
            v = spm if m.get("spm") else vocab
            config, weights = tiny_weights(m["family"], len(v["tokens"]), seed=len(cache), tie=m.get("tie", False))
            path = write_gguf(tmp_path_factory.mktemp(name) / f"{name}.gguf", m["arch"], config, weights, v,
                              types=cycle_types(m["kinds"]), name=m["name"], pre=m["pre"],
                              chat_template=CHAT_TEMPLATE)
            cache[name] = path, reference_model(path), weights
        return cache[name]

    return get


def torch_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([list(ids)])).logits[0].float().numpy()


# ---------------------------------------------------------------------------------------------------------------
# Logits against transformers' GGUF loading
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_match_transformers(model_file, name):
    path, model, _ = model_file(name)
    engine = spark_nb.load(path, dtype="fp32")
    assert engine.config.family == MODELS[name]["family"]
    ids = engine.encode(PROMPT)
    assert len(ids) >= 20
    ref = torch_logits(model, ids)
    assert ref.std() > 0.3  # far from uniform: the comparison means something
    np.testing.assert_allclose(engine.logits(ids), ref, rtol=0, atol=FP32_ATOL)


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_greedy_decode_matches_transformers(model_file, name):
    path, model, _ = model_file(name)
    engine = spark_nb.load(path, dtype="fp32")
    ids = engine.encode(PROMPT)
    events = list(engine.stream(ids, max_new_tokens=16, temperature=0.0, ignore_eos=True))
    config = transformers.GenerationConfig(do_sample=False, max_new_tokens=16, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        expected = model.generate(torch.tensor([ids]), generation_config=config)[0].tolist()[len(ids):]
    assert list(events[-1].token_ids) == expected


def test_llama_qk_permutation_is_undone(model_file, monkeypatch):
    """Without undoing llama.cpp's q/k permutation the logits are far off: the parity above depends on it."""
    path, model, _ = model_file("llama")
    monkeypatch.setattr(gguf_file, "PERMUTED", ())
    engine = spark_nb.load(path, dtype="fp32")
    ids = engine.encode(PROMPT)
    assert np.abs(engine.logits(ids) - torch_logits(model, ids)).max() > 100 * FP32_ATOL


def test_int8_engine_is_within_quantization_tolerance(model_file):
    path, model, _ = model_file("qwen2")
    engine = spark_nb.load(path, dtype="int8")
    ids = engine.encode(PROMPT)
    assert within_int8_tolerance(int8_errors(engine.logits(ids), torch_logits(model, ids)))


# ---------------------------------------------------------------------------------------------------------------
# Every tensor type against gguf.quants.dequantize of the same bytes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TENSOR_TYPES, ids=lambda k: k.name)
def test_every_tensor_type_reads_as_gguf_dequantizes_it(tmp_path, vocab, kind):
    config, weights = tiny_weights("llama", len(vocab["tokens"]), seed=3)
    path = write_gguf(tmp_path / "m.gguf", "llama", config, weights, vocab, types=cycle_types([kind]),
                      pre="llama-bpe")
    checkpoint = load_gguf(path)
    reader = gguf.GGUFReader(path)
    stored = {t.name: t for t in reader.tensors}
    assert {T(t.tensor_type) for t in reader.tensors if len(t.shape) == 2} == {kind}
    w = checkpoint.weights
    ours = {"token_embd.weight": w.embed, "output.weight": w.lm_head, "output_norm.weight": w.final_norm}
    for i, layer in enumerate(w.layers):
        ours |= {f"blk.{i}.{n}.weight": a for n, a in [
            ("attn_norm", layer.attn_norm), ("attn_q", layer.wq), ("attn_k", layer.wk), ("attn_v", layer.wv),
            ("attn_output", layer.wo), ("ffn_norm", layer.mlp_norm), ("ffn_gate", layer.w_gate),
            ("ffn_up", layer.w_up), ("ffn_down", layer.w_down)]}
    assert set(ours) == set(stored)
    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    for name, array in ours.items():
        t = stored[name]
        expected = gguf.quants.dequantize(t.data, T(t.tensor_type)).reshape(array.shape)
        n_heads = heads.get(name.split(".")[-2])
        got = permute(array, n_heads) if n_heads else array  # back to the file's row order, llama.cpp's way
        assert got.dtype == np.float32 and np.isfinite(got).all()
        np.testing.assert_array_equal(got, expected, err_msg=name)
    # and the values are what was written, to the type's precision (K-quants are random blocks: not compared)
    bounds = {T.F32: 0.0, T.F16: 1e-3, T.BF16: 1e-2, T.Q8_0: 1e-2, T.Q5_0: 0.05, T.Q5_1: 0.05, T.Q4_0: 0.1,
              T.Q4_1: 0.1}
    original = weights["model.layers.0.mlp.up_proj.weight"]
    if kind in bounds:
        assert np.abs(w.layers[0].w_up - original).max() <= bounds[kind] * np.abs(original).max()


def test_random_blocks_have_the_asked_spread():
    rng = np.random.default_rng(0)
    for kind in (T.Q4_K, T.Q6_K, T.Q2_K):
        values = gguf.quants.dequantize(random_blocks(8, 512, kind, rng, std=0.05), kind)
        assert values.shape == (8, 512) and np.isfinite(values).all() and 0.02 < values.std() < 0.12


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer, chat template, special and stop tokens
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory, vocab, spm):
    """pre-tokenizer name -> a tiny file with that vocabulary (weights are irrelevant here)."""
    files = {}
    for label, v, pre in [("qwen2", vocab, "qwen2"), ("llama-bpe", vocab, "llama-bpe"), ("gpt-2", vocab, "gpt-2"),
                          ("sentencepiece", spm, None)]:
        config, weights = tiny_weights("llama", len(v["tokens"]), seed=5)
        files[label] = write_gguf(tmp_path_factory.mktemp("tok") / f"{label}.gguf", "llama", config, weights, v,
                                  pre=pre, chat_template=CHAT_TEMPLATE)
    return files


@pytest.mark.parametrize("label", ["qwen2", "llama-bpe", "gpt-2", "sentencepiece"])
def test_tokenization_matches_transformers(tokenizer_files, label):
    path = tokenizer_files[label]
    ours, ref = load_gguf(path).tokenizer, reference_tokenizer(path)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == ref(text, add_special_tokens=False)["input_ids"], text
        assert ours.encode(text, add_special_tokens=True) == ref(text)["input_ids"], text
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True), text
        assert ours.decode(ids, skip_special_tokens=False) == ref.decode(ids), text
    if label != "sentencepiece":  # the control tokens stay whole
        assert ours.encode("<|im_end|>") == [ours.token_to_id("<|im_end|>")]


def test_sentencepiece_vocabulary_falls_back_to_bytes(tokenizer_files):
    tokenizer = load_gguf(tokenizer_files["sentencepiece"]).tokenizer
    ids = tokenizer.encode("東")
    assert len(ids) == 4 and tokenizer.decode(ids) == "東"  # "▁" then the three UTF-8 bytes
    assert tokenizer.encode("x", add_special_tokens=True)[0] == tokenizer.bos_token_id == 1


def test_chat_template_special_and_stop_tokens(tokenizer_files):
    checkpoint = load_gguf(tokenizer_files["qwen2"])
    tokenizer, config = checkpoint.tokenizer, checkpoint.config
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    im_end, endoftext = tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")
    # eos from the metadata, and <|endoftext|>, which llama.cpp also stops at
    assert tokenizer.eos_token_ids == config.eos_token_ids == (im_end, endoftext)
    assert tokenizer.bos_token_id == config.bos_token_id == endoftext
    assert tokenizer.special_tokens["eos_token"] == "<|im_end|>"


def test_eot_token_from_metadata_stops(tmp_path, vocab):
    config, weights = tiny_weights("qwen2", len(vocab["tokens"]), seed=5)
    start = vocab["tokens"].index("<|im_start|>")
    path = write_gguf(tmp_path / "m.gguf", "qwen2", config, weights, vocab,
                      metadata={"tokenizer.ggml.eot_token_id": start})
    assert start in load_gguf(path).tokenizer.eos_token_ids


# ---------------------------------------------------------------------------------------------------------------
# Config details: tied embeddings, biases, rope frequency factors
# ---------------------------------------------------------------------------------------------------------------


def test_config_from_metadata(model_file):
    q, m = load_gguf(model_file("qwen2")[0]), load_gguf(model_file("mistral")[0])
    assert q.config.attention_bias and not q.config.tie_word_embeddings and q.weights.lm_head is not q.weights.embed
    assert m.config.family == "mistral" and m.config.sliding_window is None and not m.config.attention_bias
    assert m.config.tie_word_embeddings and m.weights.lm_head is m.weights.embed
    assert (q.config.n_heads, q.config.n_kv_heads, q.config.head_dim, q.config.n_layers) == (4, 2, 64, 2)


def test_rope_frequency_factors_reproduce_llama3_scaling(tmp_path, vocab):
    """Llama 3.1 files carry their rope scaling as a rope_freqs tensor (llama.cpp's converter computes it from
    rope_scaling); dividing by it gives the same frequencies as the llama3 scaling in a config.json."""
    scaling = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=32)
    config, weights = tiny_weights("llama", len(vocab["tokens"]), seed=6)
    folder_config = spark_nb.model.ModelConfig.from_dict({**config, "rope_scaling": scaling})
    # llama.cpp's LlamaModel.generate_extra_tensors, written out
    hd, base = 64, config["rope_theta"]
    freqs = 1.0 / base ** (np.arange(0, hd, 2, dtype=np.float32) / hd)
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < 32 / 4.0:
            factors.append(1.0)
        elif wavelen > 32 / 1.0:
            factors.append(8.0)
        else:
            smooth = (32 / wavelen - 1.0) / (4.0 - 1.0)
            factors.append(1 / ((1 - smooth) / 8.0 + smooth))
    weights["rope_freqs.weight"] = np.array(factors, np.float32)
    path = write_gguf(tmp_path / "m.gguf", "llama", config, weights, vocab, pre="llama-bpe")
    ours = load_gguf(path).config
    assert ours.rope_scaling["rope_type"] == "freq_factors"
    np.testing.assert_allclose(ours.rope_inv_freq(), folder_config.rope_inv_freq(), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Where a model path is taken
# ---------------------------------------------------------------------------------------------------------------


def test_every_loader_takes_a_gguf_file(model_file, tmp_path):
    from spark_nb.edits import get_engine

    path, _, _ = model_file("qwen2")
    assert get_engine(str(path), dtype="fp32").config.family == "qwen2"
    assert load_checkpoint(path).path == path
    blob = tmp_path / "sha256-0123abcd"  # Ollama keeps GGUF files as blobs without a suffix
    blob.write_bytes(path.read_bytes())
    assert spark_nb.load(blob, dtype="int8").config.vocab_size == load_gguf(path).config.vocab_size


def test_fast_reader_reads_what_gguf_reads(model_file):
    path, _, _ = model_file("llama")
    plain, fast = gguf.GGUFReader(path), gguf_file.open_gguf(path)
    assert list(plain.fields) == list(fast.fields)
    for name, field in plain.fields.items():
        assert field.contents() == fast.fields[name].contents(), name
    for a, b in zip(plain.tensors, fast.tensors, strict=True):
        assert (a.name, a.tensor_type, list(a.shape), a.data_offset) == (b.name, b.tensor_type, list(b.shape),
                                                                         b.data_offset)
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))


# ---------------------------------------------------------------------------------------------------------------
# One clear error per way a file can be wrong
# ---------------------------------------------------------------------------------------------------------------


def expect_error(path, *fragments):
    with pytest.raises(ModelLoadError) as caught:
        spark_nb.load(path, dtype="fp32")
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


@pytest.fixture
def good_file(tmp_path, vocab):
    config, weights = tiny_weights("qwen2", len(vocab["tokens"]), seed=7)

    def write(name="m.gguf", arch="qwen2", weights=weights, config=config, **options):
        return write_gguf(tmp_path / name, arch, config, weights, vocab, **options)

    return write


def test_unsupported_architecture(good_file):
    expect_error(good_file(arch="phi3"), "'phi3'", "llama, qwen2")


def test_unsupported_tensor_type(good_file):
    path = good_file(types=lambda name, w: T.IQ4_NL if name == "blk.1.ffn_up.weight" else T.F32)
    expect_error(path, "'blk.1.ffn_up.weight'", "IQ4_NL", "Q4_K")


def test_unsupported_pre_tokenizer_and_vocabulary(good_file, vocab):
    expect_error(good_file(pre="deepseek-coder"), "'deepseek-coder'", "tokenizer.ggml.pre")
    path = good_file(name="bert.gguf")
    data = path.read_bytes().replace(b"gpt2", b"bert", 1)  # tokenizer.ggml.model's value
    path.write_bytes(data)
    expect_error(path, "'bert'", "tokenizer.ggml.model")


@pytest.mark.parametrize("cut", ["header", "metadata", "tensor infos", "data", "last byte"])
def test_truncated_file(good_file, cut):
    path = good_file()
    data = path.read_bytes()
    start = gguf.GGUFReader(path).data_offset  # where tensor data begins
    keep = {"header": 10, "metadata": 2000, "tensor infos": start - 100, "data": (start + len(data)) // 2,
            "last byte": len(data) - 1}[cut]
    path.write_bytes(data[:keep])
    expect_error(path, "truncated", "fetch the file again")


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"\x00" * 64)
    expect_error(path, "is not a GGUF file")
    expect_error(tmp_path / "missing.gguf", "does not exist")


def test_corrupt_header(good_file):
    path = good_file()
    data = bytearray(path.read_bytes())
    data[24:32] = (2**62).to_bytes(8, "little")  # the first key's length
    path.write_bytes(bytes(data))
    expect_error(path, "corrupt")


def test_random_corruption_is_a_load_error_or_nothing(good_file):
    """Bytes changed anywhere in the metadata and tensor infos: the file loads (a token's text changed, say) or
    fails with one ModelLoadError, never another exception from the reader or the tokenizers library."""
    path = good_file()
    data, start = path.read_bytes(), gguf.GGUFReader(path).data_offset
    rng = np.random.default_rng(0)
    for _ in range(40):
        corrupt = bytearray(data)
        for at in rng.integers(0, start, size=3):
            corrupt[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(corrupt))
        try:
            load_gguf(path)
        except ModelLoadError:
            pass


def test_missing_tensor_and_bad_values(good_file, vocab):
    config, weights = tiny_weights("qwen2", len(vocab["tokens"]), seed=7)
    expect_error(good_file(name="a.gguf", weights={k: v for k, v in weights.items()
                                                  if k != "model.layers.1.mlp.down_proj.weight"}),
                 "'blk.1.ffn_down.weight'")
    weights["model.layers.0.self_attn.v_proj.weight"][3, 5] = np.nan
    expect_error(good_file(name="b.gguf", weights=weights), "'blk.0.attn_v.weight'", "NaN")


def test_split_file_is_refused(good_file):
    expect_error(good_file(metadata={"split.no": 0, "split.count": 3}), "part 1 of a GGUF split into 3 files", "merge")


def test_partial_rotary_is_refused(good_file):
    expect_error(good_file(metadata={"qwen2.rope.dimension_count": 32}), "rotary", "32")


def test_gguf_names_are_llama_cpps():
    assert gguf_name("model.layers.3.self_attn.o_proj.weight") == "blk.3.attn_output.weight"
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 4)
    assert names.get_name("model.layers.3.mlp.down_proj") == "blk.3.ffn_down"
