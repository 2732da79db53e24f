"""Tiny random checkpoints built with transformers, shared by the engine tests.

Each fixture saves a model with `save_pretrained` plus the synthetic BPE tokenizer and returns (folder, model), the
model in fp32 eval mode as the reference. transformers initialises RMSNorm weights to 1 and q/k/v biases to 0, which
would leave those paths untested, so both are randomised here.
"""
from __future__ import annotations

import pytest

from spark_nb.model.synthetic import write_tokenizer

VOCAB = 512
TINY = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=160,  # not a multiple of the 16-wide tiles in every direction: ragged edges get used
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # grouped-query attention: two query heads per kv head
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    initializer_range=0.1,  # larger than the default 0.02 so attention is far from uniform and logits spread out
    bos_token_id=0,
    eos_token_id=2,  # <|im_end|>, the tokenizer's eos
)


def _build(folder, family: str, seed: int, **overrides):
    torch = pytest.importorskip("torch")  # here, not at import, so tests that need no checkpoint run without it
    transformers = pytest.importorskip("transformers")
    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[family]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**TINY, **overrides}, attn_implementation="eager"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("proj.bias"):
                p.normal_(0.0, 0.5)
    model.eval()
    model.save_pretrained(folder)
    write_tokenizer(folder, vocab_size=VOCAB)
    return folder, model


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    """Llama: GQA, untied lm_head, llama3 rope scaling (original context 32, so positions past 32 are scaled)."""
    rope = dict(rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=32)
    return _build(tmp_path_factory.mktemp("llama"), "llama", 0, tie_word_embeddings=False, rope_parameters=rope)


@pytest.fixture(scope="session")
def qwen2(tmp_path_factory):
    """Qwen2: q/k/v biases (randomised), lm_head tied to the embedding."""
    return _build(tmp_path_factory.mktemp("qwen2"), "qwen2", 4, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def mistral(tmp_path_factory):
    """Mistral with a 16-position sliding window, shorter than the sequences the tests run."""
    return _build(tmp_path_factory.mktemp("mistral"), "mistral", 2, tie_word_embeddings=False, sliding_window=16)


def pytest_addoption(parser):
    # test_fault_campaign runs a bounded campaign by default; --fuzz runs a long, randomly seeded one (local use)
    parser.addoption("--fuzz", action="store_true", help="run the long fault campaign (tests/test_fault_campaign.py)")
