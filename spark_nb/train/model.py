"""The built-in model in torch: transformers' LlamaForCausalLM (RMSNorm, RoPE, SwiGLU, tied embeddings), and the
masked loss.  Training only: spark_nb runs the exported folder with its own kernels and never imports torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .configs import TrainConfig


def llama_config(cfg: TrainConfig, vocab_size: int, special: dict[str, int] | None = None):
    """A `transformers.LlamaConfig` for `cfg`; `vocab_size` is the tokenizer's, padded to a multiple of 64
    (rows past the tokenizer are never targets and never fed)."""
    from transformers import LlamaConfig

    special = special or {}
    padded = (vocab_size + 63) // 64 * 64
    return LlamaConfig(
        vocab_size=padded,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        hidden_act="silu",
        max_position_embeddings=2 * cfg.max_len,  # inference prompts may run longer than training rows
        rms_norm_eps=1e-6,
        rope_theta=cfg.rope_theta,
        initializer_range=cfg.init_std,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=special.get("<|end|>"),
        pad_token_id=special.get("<|pad|>"),
        use_cache=False,
        attn_implementation="sdpa",
    )


def build_model(cfg: TrainConfig, vocab_size: int, special: dict[str, int] | None = None):
    """A freshly initialised model; seed torch before calling for reproducible weights."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(llama_config(cfg, vocab_size, special))
    return model


def n_params(model) -> int:
    """Distinct parameters (the tied embedding counted once)."""
    return sum(p.numel() for p in model.parameters())


def forward_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over supervised targets (mask[:, t] = 1: ids[:, t] is generated).

    The output projection runs on the supervised positions only (~16 % of an edit example's tokens)."""
    hidden = model.model(input_ids=ids).last_hidden_state  # [B, T, d]
    m = mask[:, 1:].to(torch.bool)  # [B, T-1]: is ids[:, t+1] a target
    h = hidden[:, :-1][m]  # [N, d]
    logits = model.lm_head(h).float()  # [N, V]
    loss = F.cross_entropy(logits, ids[:, 1:][m], reduction="mean")
    return loss, int(m.sum())
