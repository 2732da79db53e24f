"""spark_nb.model against transformers: tiny checkpoints written by save_pretrained, read back by load_folder.

Every checkpoint is built once per module (a few hundred parameters, well under a second each) and copied when a
test needs to break it. torch and transformers are test references only.
"""
from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from spark_nb.model import ModelConfig, ModelLoadError, Tokenizer, load_folder, quantize_int8
from spark_nb.model.quant import dequantize
from spark_nb.model.weights import read_header

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY = dict(
    vocab_size=320,  # above the tokenizer's 300 ids, as real configs pad their vocab
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)
# Qwen-style, written without whitespace control so that trim_blocks / lstrip_blocks decide the output
CHAT_TEMPLATE = """\
{% for message in messages %}
    {% if loop.first and message['role'] != 'system' %}
<|im_start|>system
You are a careful Python assistant.<|im_end|>
    {% endif %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('unknown role ' + message['role']) }}
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: a byte-level BPE tokenizer and tiny checkpoints
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    """A byte-level BPE with 300 ids, trained on Python source (the `inspect` module's first 600 lines)."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(inspect.getsource(inspect).splitlines()[:600], trainer)
    return backend.to_str()


def write_tokenizer(folder: Path, tokenizer_json: str) -> None:
    (folder / "tokenizer.json").write_text(tokenizer_json)
    settings = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "pad_token": {"__type": "AddedToken", "content": "<|endoftext|>", "special": True},
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))


def build_checkpoint(folder: Path, tokenizer_json: str, family: str = "llama", dtype=None, **save_kwargs):
    """Save a randomly initialised tiny model with its tokenizer; return its state_dict as saved."""
    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[family]
    overrides = save_kwargs.pop("config", {})
    torch.manual_seed(0)
    # Like Qwen: config.json ends text with <|endoftext|> (id 0); the tokenizer ends a chat turn with <|im_end|>
    model = model_cls(config_cls(**{**TINY, "bos_token_id": 0, "eos_token_id": 0, **overrides}))
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder, **save_kwargs)
    write_tokenizer(folder, tokenizer_json)
    return {name: tensor.detach().float().numpy() for name, tensor in model.state_dict().items()}


CHECKPOINTS = {
    "llama": dict(family="llama"),
    "llama_tied": dict(family="llama", config=dict(tie_word_embeddings=True)),
    "qwen2": dict(family="qwen2"),
    "mistral": dict(family="mistral", config=dict(sliding_window=16)),
    "llama_bf16": dict(family="llama", dtype="bfloat16"),
    "llama_fp16": dict(family="llama", dtype="float16"),
    "llama_sharded": dict(family="llama", max_shard_size="20KB"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer_json) -> dict[str, tuple[Path, dict]]:
    """name -> (folder, reference state_dict as fp32 numpy)."""
    built = {}
    for name, spec in CHECKPOINTS.items():
        spec = dict(spec)
        if "dtype" in spec:
            spec["dtype"] = getattr(torch, spec["dtype"])
        folder = tmp_path_factory.mktemp(name)
        built[name] = (folder, build_checkpoint(folder, tokenizer_json, **spec))
    return built


@pytest.fixture
def broken_copy(tmp_path, checkpoints):
    """A fresh copy of a checkpoint, for tests that damage it."""

    def copy(name: str = "llama") -> Path:
        folder = tmp_path / name
        shutil.copytree(checkpoints[name][0], folder)
        return folder

    return copy


def rewrite_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def expect_error(folder, *fragments: str, dtype: str = "fp32") -> str:
    with pytest.raises(ModelLoadError) as caught:
        load_folder(folder, dtype=dtype)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------------------------------------------------------
# Weights: the arrays equal transformers' state_dict
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_weights_equal_the_state_dict(checkpoints, name):
    folder, reference = checkpoints[name]
    checkpoint = load_folder(folder)
    w, config = checkpoint.weights, checkpoint.config
    assert config.family == CHECKPOINTS[name]["family"]
    assert len(w.layers) == config.n_layers == 2

    expected = {"model.embed_tokens.weight": w.embed, "model.norm.weight": w.final_norm, "lm_head.weight": w.lm_head}
    for i, layer in enumerate(w.layers):
        p = f"model.layers.{i}."
        expected |= {
            p + "input_layernorm.weight": layer.attn_norm,
            p + "self_attn.q_proj.weight": layer.wq,
            p + "self_attn.k_proj.weight": layer.wk,
            p + "self_attn.v_proj.weight": layer.wv,
            p + "self_attn.o_proj.weight": layer.wo,
            p + "post_attention_layernorm.weight": layer.mlp_norm,
            p + "mlp.gate_proj.weight": layer.w_gate,
            p + "mlp.up_proj.weight": layer.w_up,
            p + "mlp.down_proj.weight": layer.w_down,
        }
        if config.attention_bias:
            expected |= {p + "self_attn.q_proj.bias": layer.bq, p + "self_attn.k_proj.bias": layer.bk}
            expected |= {p + "self_attn.v_proj.bias": layer.bv}
        else:
            assert layer.bq is layer.bk is layer.bv is None
    for tensor_name, array in expected.items():
        assert array.dtype == np.float32 and array.flags.c_contiguous, tensor_name
        # bf16 and fp16 widen to fp32 exactly, so every comparison is exact
        np.testing.assert_array_equal(array, reference[tensor_name], err_msg=tensor_name)


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_streamed_weights_are_the_same_arrays(checkpoints, name):
    """load_folder(streamed=True) reads each layer, and the vocabulary matrices a few rows at a time (bf16, fp16,
    shards), only when asked: the same arrays as the whole read."""
    whole = load_folder(checkpoints[name][0]).weights
    streamed = load_folder(checkpoints[name][0], streamed=True).weights
    assert streamed.tied == whole.tied
    for matrix in ("embed", "lm_head"):
        blocks = [streamed.rows(matrix, start, start + 7) for start in range(0, streamed.vocab_size, 7)]
        np.testing.assert_array_equal(np.concatenate(blocks), getattr(whole, matrix))
    np.testing.assert_array_equal(streamed.final_norm, whole.final_norm)
    for i, layer in enumerate(whole.layers):
        for field, array in vars(streamed.layer(i)).items():
            assert (array is None and getattr(layer, field) is None) or np.array_equal(array, getattr(layer, field))


def test_qwen2_has_attention_biases(checkpoints):
    layer = load_folder(checkpoints["qwen2"][0]).weights.layers[0]
    assert layer.bq.shape == (32,) and layer.bk.shape == layer.bv.shape == (16,)


def test_tied_lm_head_is_the_embedding(checkpoints):
    folder, _ = checkpoints["llama_tied"]
    weights = load_folder(folder).weights
    assert weights.lm_head is weights.embed
    assert "lm_head.weight" not in load_file(folder / "model.safetensors")


def test_bf16_checkpoint_is_stored_as_bf16(checkpoints):
    header = read_header(checkpoints["llama_bf16"][0] / "model.safetensors")
    assert {entry.dtype for entry in header.values()} == {"BF16"}


def test_sharded_checkpoint_really_has_shards(checkpoints):
    folder, _ = checkpoints["llama_sharded"]
    assert len(set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values())) > 1


def test_config_reads_transformers_5_rope_parameters(checkpoints):
    folder, _ = checkpoints["mistral"]
    assert "rope_parameters" in json.loads((folder / "config.json").read_text())
    config = load_folder(folder).config
    assert config.rope_theta == transformers.MistralConfig().rope_parameters["rope_theta"]
    assert config.sliding_window == 16 and config.n_kv_heads == 2 and config.head_dim == 8


def test_dtype_is_checked_and_kept(checkpoints):
    folder, _ = checkpoints["llama"]
    assert load_folder(folder, dtype="int8").dtype == "int8"
    expect_error(folder, "'fp16'", "'fp32'", "'int8'", dtype="fp16")


# ---------------------------------------------------------------------------------------------------------------
# Weights: one clear error per way a folder can be broken
# ---------------------------------------------------------------------------------------------------------------


def test_folder_that_does_not_exist(tmp_path):
    expect_error(tmp_path / "nowhere", "does not exist")
    (tmp_path / "file.txt").write_text("")
    expect_error(tmp_path / "file.txt", "is not a folder")


@pytest.mark.parametrize(
    "removed, fragments",
    [
        ("config.json", ["config.json"]),
        ("model.safetensors", ["missing weights", "model.safetensors"]),
        ("tokenizer.json", ["tokenizer.json"]),
    ],
)
def test_missing_file(broken_copy, removed, fragments):
    folder = broken_copy()
    (folder / removed).unlink()
    expect_error(folder, "missing", *fragments)


def test_unsupported_architecture(broken_copy):
    folder = broken_copy()
    rewrite_config(folder, architectures=["GPT2LMHeadModel"], model_type="gpt2")
    expect_error(folder, "unsupported architecture", "GPT2LMHeadModel", "LlamaForCausalLM")


def test_shape_mismatch_names_tensor_and_both_shapes(broken_copy):
    folder = broken_copy()
    rewrite_config(folder, intermediate_size=48)
    expect_error(folder, "model.layers.0.mlp.gate_proj.weight", "(64, 32)", "(48, 32)")


def test_non_finite_weights_are_counted(broken_copy):
    folder = broken_copy()
    tensors = load_file(folder / "model.safetensors")
    poisoned = tensors["model.layers.1.self_attn.v_proj.weight"]
    poisoned[0, :3] = np.nan
    poisoned[1, 0] = np.inf
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, "model.layers.1.self_attn.v_proj.weight", "3 NaN", "1 inf")


def test_truncated_file(broken_copy):
    folder = broken_copy()
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    expect_error(folder, "model.safetensors is truncated", "fetch the file again")


def test_missing_tensor(broken_copy):
    folder = broken_copy()
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, "missing tensor 'model.layers.1.mlp.up_proj.weight'")


def test_missing_untied_lm_head(broken_copy):
    folder = broken_copy()
    tensors = load_file(folder / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, "missing tensor 'lm_head.weight'")


def test_shard_index_pointing_at_missing_shard(broken_copy):
    folder = broken_copy("llama_sharded")
    weight_map = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    shard = weight_map["model.layers.1.mlp.up_proj.weight"]
    (folder / shard).unlink()
    expect_error(folder, "model.safetensors.index.json", shard, "missing")


def test_unsupported_storage_dtype(broken_copy):
    folder = broken_copy()
    tensors = load_file(folder / "model.safetensors")
    tensors["model.norm.weight"] = tensors["model.norm.weight"].astype(np.int32)
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, "'model.norm.weight'", "I32", "BF16")


def test_tensor_spark_nb_does_not_implement(broken_copy):
    folder = broken_copy()
    tensors = load_file(folder / "model.safetensors")
    tensors["model.layers.0.self_attn.o_proj.bias"] = np.zeros(32, np.float32)
    save_file(tensors, folder / "model.safetensors")
    expect_error(folder, "model.layers.0.self_attn.o_proj.bias", "does not use")


def test_tokenizer_larger_than_the_embedding(broken_copy):
    folder = broken_copy()
    rewrite_config(folder, vocab_size=200)
    expect_error(folder, "300 tokens", "vocab_size is 200")


# ---------------------------------------------------------------------------------------------------------------
# int8
# ---------------------------------------------------------------------------------------------------------------


def test_int8_error_is_at_most_half_a_step_per_row():
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((48, 64)) * rng.uniform(0.01, 3, (48, 1))).astype(np.float32)
    w[5] = 0.0
    q, scale = quantize_int8(w)
    assert q.dtype == np.int8 and q.shape == w.shape and scale.dtype == np.float32 and scale.shape == (48,)
    np.testing.assert_allclose(scale[np.arange(48) != 5], np.abs(w).max(axis=1)[np.arange(48) != 5] / 127, rtol=1e-6)
    assert scale[5] == 1.0 and not q[5].any()
    assert np.abs(q).max() == 127
    error = np.abs(w - q.astype(np.float32) * scale[:, None])
    assert (error <= scale[:, None] / 2 * (1 + 1e-5)).all()
    np.testing.assert_array_equal(dequantize(q, scale), q.astype(np.float32) * scale[:, None])


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(checkpoints) -> Tokenizer:
    return load_folder(checkpoints["llama"][0]).tokenizer


def test_encode_decode_round_trip_without_special_tokens(tokenizer):
    source = inspect.getsource(inspect.getmembers)
    ids = tokenizer.encode(source)
    assert tokenizer.decode(ids) == source
    assert len(ids) < 0.8 * len(source.encode())  # merges learnt on Python source, not bytes alone
    assert tokenizer.encode("<|im_end|>") == [tokenizer.token_to_id("<|im_end|>")]


def test_special_token_ids(tokenizer):
    assert tokenizer.vocab_size == 300
    # config.json's eos first, then the tokenizer's own
    assert tokenizer.eos_token_ids == (tokenizer.token_to_id("<|endoftext|>"), tokenizer.token_to_id("<|im_end|>"))
    assert tokenizer.bos_token_id == 0  # tokenizer_config.json has none, so config.json's
    assert tokenizer.token_to_id("no such token") is None


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_transformers(checkpoints, tokenizer, add_generation_prompt):
    messages = [
        {"role": "user", "content": "Add a docstring:\n\ndef f(x):\n    return x * 2"},
        {"role": "assistant", "content": 'def f(x):\n    """Double x. 😀"""\n    return x * 2'},
        {"role": "user", "content": "Now type hints."},
    ]
    reference = transformers.AutoTokenizer.from_pretrained(checkpoints["llama"][0])
    expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt) == expected
    assert expected.startswith("<|im_start|>system\n")


def test_chat_template_raise_exception_helper(tokenizer):
    import jinja2

    with pytest.raises(jinja2.TemplateError, match="unknown role robot"):
        tokenizer.apply_chat_template([{"role": "robot", "content": "hi"}])


@pytest.mark.parametrize(
    "text",
    [
        "def greet():\n    return '😀 héllo wörld ✓'\n",
        "# 日本語のコメント 🐍🚀\nx = '∑'  # ok",
        "👩‍👩‍👧 family emoji and plain ascii",
    ],
)
def test_stream_decoder_deltas_add_up_to_decode(tokenizer, text):
    ids = tokenizer.encode(text)
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # the test is only worth it with split characters
    stream = tokenizer.stream_decoder()
    deltas = [stream.push(i) for i in ids]
    assert "".join(deltas) + stream.flush() == tokenizer.decode(ids) == text
    assert not any("\ufffd" in delta for delta in deltas)


def test_stream_decoder_with_sentencepiece_style_byte_fallback():
    """Llama/Mistral tokenizers: '▁' marks spaces, stripped at the start; unknown characters fall back to bytes."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {f"<0x{byte:02X}>": byte for byte in range(256)}
    vocab |= {piece: 256 + i for i, piece in enumerate("▁abcdefghijklmnopqrstuvwxyz")}
    backend = Backend(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer = Tokenizer(backend)
    text = "héllo wörld 😀 ok"
    ids = tokenizer.encode(text)
    stream = tokenizer.stream_decoder()
    deltas = [stream.push(i) for i in ids]
    assert "".join(deltas) == tokenizer.decode(ids) == text
    assert "😀" in deltas


def test_stream_decoder_flushes_an_unfinished_character(tokenizer):
    ids = tokenizer.encode("a😀")
    stream = tokenizer.stream_decoder()
    deltas = [stream.push(i) for i in ids[:-1]]
    assert "".join(deltas) == "a"
    assert stream.flush() == tokenizer.decode(ids[:-1])[1:]


def test_config_eos_list_is_read(tmp_path, tokenizer_json):
    write_tokenizer(tmp_path, tokenizer_json)
    config = ModelConfig.from_dict(
        {"architectures": ["LlamaForCausalLM"], **TINY, "num_hidden_layers": 1, "eos_token_id": [0, 7, 2]}
    )
    # a list in config.json, the tokenizer's <|im_end|> (id 2) not repeated
    assert Tokenizer.from_folder(tmp_path, config).eos_token_ids == (0, 7, 2)
