"""Random-weight model folders in the Hugging Face layout, for benchmarks and tests.

`write_random_model(folder, "qwen2.5-0.5b")` writes config.json, model.safetensors and a small byte-level BPE
tokenizer, readable by spark_nb.load and by transformers alike, so both can be timed on the same weights.
Nothing is downloaded: weights come from a seeded generator, the tokenizer is trained on the standard library.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ARCHITECTURE = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Shapes the benchmarks use, in config.json's terms.
SHAPES = {
    "llama-10m": dict(family="llama", hidden_size=256, intermediate_size=768, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=4, vocab_size=8192, tie_word_embeddings=False,
                      max_position_embeddings=2048, rope_theta=10000.0),
    "qwen2.5-0.5b": dict(family="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         tie_word_embeddings=True, max_position_embeddings=32768, rope_theta=1000000.0),
}


def bpe_tokenizer(vocab_size: int = 512):
    """A byte-level BPE trained on Python source (the `inspect` module), with chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(inspect.getsource(inspect).splitlines(), trainer)
    return tokenizer


def config_dict(family: str = "llama", **shape) -> dict:
    """A config.json for `family` with the given sizes (any config.json key)."""
    shape = {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 512,
             "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False, **shape}
    return {"architectures": [ARCHITECTURE[family]], "model_type": family, "torch_dtype": "float32",
            "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 2, **shape}


def random_weights(config: dict, seed: int = 0, std: float = 0.02) -> dict[str, np.ndarray]:
    """Weights for config, named as in Hugging Face checkpoints."""
    rng = np.random.default_rng(seed)
    d, f, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim") or d // heads
    biased = config["model_type"] == "qwen2"

    def normal(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)

    tensors = {"model.embed_tokens.weight": normal(vocab, d), "model.norm.weight": np.ones(d, np.float32)}
    if not config["tie_word_embeddings"]:
        tensors["lm_head.weight"] = normal(vocab, d)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": 1 + normal(d),
            p + "self_attn.q_proj.weight": normal(heads * hd, d),
            p + "self_attn.k_proj.weight": normal(kv_heads * hd, d),
            p + "self_attn.v_proj.weight": normal(kv_heads * hd, d),
            p + "self_attn.o_proj.weight": normal(d, heads * hd),
            p + "post_attention_layernorm.weight": 1 + normal(d),
            p + "mlp.gate_proj.weight": normal(f, d),
            p + "mlp.up_proj.weight": normal(f, d),
            p + "mlp.down_proj.weight": normal(d, f),
        }
        if biased:
            tensors |= {p + f"self_attn.{x}_proj.bias": normal(n * hd) for x, n in
                        (("q", heads), ("k", kv_heads), ("v", kv_heads))}
    return tensors


def write_tokenizer(folder: Path, vocab_size: int = 512) -> None:
    bpe_tokenizer(vocab_size).save(str(folder / "tokenizer.json"))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>", "bos_token": None, "model_max_length": 2048}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))


def write_random_model(folder: str | Path, shape: str | dict = "llama-10m", seed: int = 0) -> Path:
    """Write a random-weight model folder: a named shape from SHAPES or a dict of config.json keys
    (with `family`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = dict(SHAPES[shape]) if isinstance(shape, str) else dict(shape)
    config = config_dict(spec.pop("family", "llama"), **spec)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(random_weights(config, seed), str(folder / "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer(folder, vocab_size=min(512, config["vocab_size"]))
    return folder
