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
    # {"rope_type": "llama3" | "linear" | "freq_factors" (GGUF's rope_freqs), ...}
    rope_scaling: dict | None = field(default=None, hash=False)
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
        if not isinstance(raw, dict):
            raise ModelLoadError(f"config.json holds a JSON {type(raw).__name__}, not an object of settings; "
                                 "re-export the model folder")
        archs = raw.get("architectures") or []
        archs = archs if isinstance(archs, list) else [archs]
        family = next((ARCHITECTURES[a] for a in archs if isinstance(a, str) and a in ARCHITECTURES), None)
        if family is None:
            family = {"llama": "llama", "qwen2": "qwen2", "mistral": "mistral"}.get(raw.get("model_type", ""))
        if family is None:
            raise ModelLoadError(
                f"config.json names an unsupported architecture {archs or raw.get('model_type')!r}: spark-nb runs "
                f"{', '.join(ARCHITECTURES)}; convert the model or pick one of those families"
            )
        # Every size is checked here, before any weights are read: a config.json that lies (a string, a fraction,
        # zero heads, heads that do not divide) would otherwise surface as a shape error naming the wrong thing,
        # a ZeroDivisionError, or a model that loads and then computes garbage.
        n_heads = _count(raw, "num_attention_heads", family)
        d = _count(raw, "hidden_size", family)
        n_kv = _count(raw, "num_key_value_heads", family, default=n_heads)
        head_dim = _count(raw, "head_dim", family, default=0)  # absent: hidden_size / num_attention_heads
        if not head_dim and d % n_heads:
            raise ModelLoadError(
                f"config.json's hidden_size {d} is not divisible by num_attention_heads {n_heads}, and there is "
                "no head_dim to say otherwise; config.json is wrong, re-export it with the weights"
            )
        if n_heads % n_kv:
            raise ModelLoadError(
                f"config.json's num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv}: "
                "grouped-query attention shares each kv head among a whole number of query heads; config.json is "
                "wrong, re-export it with the weights"
            )
        vocab = _count(raw, "vocab_size", family)
        # transformers >= 5 folds rope_theta and the scaling into "rope_parameters"
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise ModelLoadError(f"config.json's rope settings {rope!r} are not an object; re-export config.json")
        rope = dict(rope)
        theta = _real(rope.pop("rope_theta", raw.get("rope_theta", 10000.0)), "rope_theta")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        window = raw.get("sliding_window") if raw.get("use_sliding_window", family == "mistral") else None
        return cls(
            family=family,
            vocab_size=vocab,
            hidden_size=d,
            intermediate_size=_count(raw, "intermediate_size", family),
            n_layers=_count(raw, "num_hidden_layers", family),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            head_dim=head_dim or d // n_heads,
            rms_norm_eps=_real(raw.get("rms_norm_eps", 1e-6), "rms_norm_eps"),
            rope_theta=theta,
            rope_scaling=None if rope_type == "default" else {**rope, "rope_type": rope_type},
            # a model needs two positions to generate anything: the prompt's last token and the next one
            max_position_embeddings=_count(raw, "max_position_embeddings", family, default=2048, minimum=2),
            tie_word_embeddings=_flag(raw, "tie_word_embeddings", False),
            attention_bias=_flag(raw, "attention_bias", family == "qwen2"),
            sliding_window=_count(raw, "sliding_window", family) if window else None,
            bos_token_id=_token_ids(raw, "bos_token_id", vocab)[0] if raw.get("bos_token_id") is not None else None,
            eos_token_ids=_token_ids(raw, "eos_token_id", vocab),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise ModelLoadError(f"missing {path}: a model folder needs config.json (a Hugging Face model folder)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelLoadError(f"{path} is not valid JSON ({err}); re-export the model folder") from None
        return cls.from_dict(raw)

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

    def check_rotary(self) -> None:
        """Raise unless the rotary frequencies can be computed and are finite and positive. Loading a model checks
        this (a projection from config.json alone needs no frequencies): theta <= 0, a zero scaling factor or equal
        llama3 frequency factors give inf/NaN frequencies, i.e. NaN logits from the first token on."""
        try:
            with np.errstate(all="ignore"):
                inv_freq = self.rope_inv_freq()
        except ModelLoadError:
            raise  # an unsupported rope type: its message says so already
        except (KeyError, TypeError, ValueError) as err:
            raise ModelLoadError(f"config.json's rope scaling {self.rope_scaling!r} is incomplete or malformed "
                                 f"({err!r}); re-export config.json") from None
        if not (np.isfinite(inv_freq).all() and (inv_freq > 0).all()):
            raise ModelLoadError(
                f"config.json's rope settings (rope_theta {self.rope_theta}, scaling {self.rope_scaling}) give "
                "non-finite or non-positive rotary frequencies, so every logit would be NaN; config.json is wrong, "
                "re-export it with the weights"
            )

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
        if kind == "freq_factors":
            # a GGUF file's rope_freqs tensor: llama.cpp divides each frequency by its factor (Llama 3.1's scaling)
            return inv / np.asarray(scaling["factors"], dtype=np.float64)
        raise ModelLoadError(f"config.json asks for unsupported rope scaling {kind!r}: spark-nb implements 'linear' "
                             "and 'llama3'; pick a model that uses one of those")


# ---------------------------------------------------------------------------------------------------------------
# Checked reads of config.json values: each says which key is wrong and how
# ---------------------------------------------------------------------------------------------------------------

_REQUIRED = object()


def _count(raw: dict, key: str, family: str, default=_REQUIRED, minimum: int = 1) -> int:
    """raw[key] as a whole number >= minimum (64 or 64.0; never "64", true, 64.5 or null, which int() would take
    or truncate); `default` when the key is absent or null, a ModelLoadError when it is required."""
    value = raw.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ModelLoadError(f"config.json lacks {key!r}; it is needed to build a {family} decoder")
        return default
    whole = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value == int(value))
    if isinstance(value, bool) or not whole or value < minimum:
        raise ModelLoadError(
            f"config.json's {key} is {value!r}, but it must be a whole number of at least {minimum}; "
            "config.json is corrupt or was edited by hand, re-export it with the weights"
        )
    return int(value)


def _real(value, key: str) -> float:
    """A finite number >= 0 (rms_norm_eps, rope_theta); NaN, inf, negatives and strings are config errors."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise ModelLoadError(f"config.json's {key} is {value!r}, but it must be a finite number >= 0; "
                             "re-export config.json with the weights")
    return float(value)


def _flag(raw: dict, key: str, default: bool) -> bool:
    # bool("false") is True: a string here must be an error, not a silent true
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ModelLoadError(f"config.json's {key} is {value!r}, but it must be true or false; fix config.json")
    return value


def _token_ids(raw: dict, key: str, vocab_size: int) -> tuple[int, ...]:
    """bos_token_id / eos_token_id (one id or a list of them), each a real token id: an eos beyond the
    vocabulary could never be generated, so generation would never stop where the model means it to."""
    value = raw.get(key)
    ids = [] if value is None else value if isinstance(value, list) else [value]
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size:
            raise ModelLoadError(
                f"config.json's {key} {value!r} is not a token id of this model (ids run from 0 to "
                f"vocab_size - 1 = {vocab_size - 1}); config.json belongs to another model, re-export it"
            )
    return tuple(ids)
