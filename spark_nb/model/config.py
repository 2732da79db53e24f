"""ModelConfig: the decoder's hyper-parameters, read from a Hugging Face config.json.

One dataclass covers the three supported families. They differ only in details that appear as fields:
Qwen2 has biases on q/k/v (`attention_bias`), Mistral may limit attention to a `sliding_window`, and any of them
may tie the output projection to the embedding (`tie_word_embeddings`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelLoadError

ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "MistralForCausalLM": "mistral",
}


@dataclass(frozen=True)
class ModelConfig:
    family: str  # "llama" | "qwen2" | "mistral"
    vocab_size: int
    hidden_size: int  # d
    intermediate_size: int  # SwiGLU width
    n_layers: int
    n_heads: int
    n_kv_heads: int  # < n_heads means grouped-query attention
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = field(default=None, hash=False)  # {"rope_type": "llama3" | "linear", ...}
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # biases on q, k, v (Qwen2)
    sliding_window: int | None = None  # Mistral: attend to the last `sliding_window` positions only
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    @property
    def n_params(self) -> int:
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        attn = d * hd * (2 * self.n_heads + 2 * self.n_kv_heads)
        bias = hd * (self.n_heads + 2 * self.n_kv_heads) if self.attention_bias else 0
        layer = attn + bias + 3 * d * f + 2 * d
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return self.n_layers * layer + self.vocab_size * d + head + d

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        archs = raw.get("architectures") or []
        family = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
        if family is None:
            family = {"llama": "llama", "qwen2": "qwen2", "mistral": "mistral"}.get(raw.get("model_type", ""))
        if family is None:
            raise ModelLoadError(
                f"unsupported architecture {archs or raw.get('model_type')!r}: spark-nb runs "
                f"{', '.join(ARCHITECTURES)}; convert the model or pick one of those families"
            )
        try:
            n_heads = int(raw["num_attention_heads"])
            d = int(raw["hidden_size"])
            # transformers >= 5 folds rope_theta and the scaling into "rope_parameters"
            rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
            theta = float(rope.pop("rope_theta", raw.get("rope_theta", 10000.0)))
            rope_type = rope.get("rope_type", rope.get("type", "default"))
            eos = raw.get("eos_token_id")
            window = raw.get("sliding_window") if raw.get("use_sliding_window", family == "mistral") else None
            return cls(
                family=family,
                vocab_size=int(raw["vocab_size"]),
                hidden_size=d,
                intermediate_size=int(raw["intermediate_size"]),
                n_layers=int(raw["num_hidden_layers"]),
                n_heads=n_heads,
                n_kv_heads=int(raw.get("num_key_value_heads") or n_heads),
                head_dim=int(raw.get("head_dim") or d // n_heads),
                rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
                rope_theta=theta,
                rope_scaling=None if rope_type == "default" else {**rope, "rope_type": rope_type},
                max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
                tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
                attention_bias=bool(raw.get("attention_bias", family == "qwen2")),
                sliding_window=int(window) if window else None,
                bos_token_id=raw.get("bos_token_id"),
                eos_token_ids=tuple(eos if isinstance(eos, list) else [] if eos is None else [eos]),
            )
        except KeyError as missing:
            raise ModelLoadError(f"config.json lacks {missing}; it is needed to build a {family} decoder") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise ModelLoadError(f"missing {path}: a model folder needs config.json (a Hugging Face model folder)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ModelLoadError(f"{path} is not valid JSON ({err}); re-export the model folder") from None

    @classmethod
    def coerce(cls, config: "ModelConfig | dict | str | Path") -> "ModelConfig":
        """A config from a ModelConfig, a config.json dict, or the path of a config.json or model folder."""
        if isinstance(config, cls):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        if isinstance(config, (str, Path)):
            return cls.from_file(config)
        raise TypeError(f"expected a ModelConfig, a dict or a path to config.json, got {type(config).__name__}")

    def rope_inv_freq(self) -> np.ndarray:
        """Inverse frequencies of rotary embedding, [head_dim/2] float64, with the configured scaling."""
        hd = self.head_dim
        inv = 1.0 / self.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
        scaling = self.rope_scaling or {}
        kind = scaling.get("rope_type")
        if kind is None:
            return inv
        if kind == "linear":
            return inv / float(scaling["factor"])
        if kind == "llama3":
            # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
            factor = float(scaling["factor"])
            low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
            old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
            wavelen = 2 * math.pi / inv
            smooth = np.clip((old_ctx / wavelen - low) / (high - low), 0.0, 1.0)
            blended = (1 - smooth) * inv / factor + smooth * inv
            return np.where(wavelen > old_ctx / low, inv / factor, np.where(wavelen < old_ctx / high, inv, blended))
        raise ModelLoadError(f"unsupported rope scaling {kind!r}: spark-nb implements 'linear' and 'llama3'")
