"""Training configurations: `smoke` (seconds, tests), `cpu` (this 2-core machine, ~2.5 h), `gpu` (30 min on an H200).

One dataclass holds the model shape and the run.  Steps are fixed up front (the cosine schedule needs its end);
`max_minutes` stops one call (checkpointed; continue with `--resume`), e.g. under the device tool's 10-minute
command limit; `budget_minutes` instead measures tokens/s over the first steps and sets `steps` so the whole run
fits the budget (the GPU lease's fixed time; the chosen count is saved, so resuming stays bitwise exact).

The CPU numbers come from MODEL_NOTES.md: a 5.3M-parameter decoder trains at ~3,000 tokens/s here, so 2.5 h is
~27M tokens; edit examples average ~390 tokens (16 % of them supervised), plain units ~190, so a batch of 16 is
~5,000 tokens and 2.5 h is ~5,000 steps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """A stretch of training on one kind of data.  `fraction` of the total steps; `max_len` caps the examples
    (the curriculum: short snippets first)."""

    name: str
    kind: str  # "plain" (code, every token supervised) | "edit" (line-aligned edits) | "fim" (fill-in-the-middle, fim.py)
    fraction: float
    max_len: int


@dataclass(frozen=True)
class TrainConfig:
    name: str
    # -- model (Llama: RMSNorm, RoPE, SwiGLU, tied embeddings) --
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 4
    ffn: int = 704  # SwiGLU width (~2.75 d)
    vocab_size: int = 4096  # tokenizer size; the embedding is padded to a multiple of 64
    max_len: int = 1024  # longest training sequence; also max_position_embeddings (x2 for inference headroom)
    rope_theta: float = 10000.0
    init_std: float = 0.02
    # -- optimisation --
    steps: int = 5000
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    dtype: str = "bf16"  # autocast dtype: "bf16" | "fp32"
    device: str = "cpu"  # "cpu" | "cuda"
    threads: int = 0  # torch threads on CPU; 0 = leave torch's default
    compile: bool = False  # torch.compile the model (GPU)
    # -- data --
    phases: tuple[Phase, ...] = (
        Phase("plain", "plain", 0.15, 512),
        Phase("short-edits", "edit", 0.25, 384),
        Phase("edits", "edit", 0.60, 1024),
    )
    bucket_batches: int = 64  # examples are sorted by length within windows of this many batches
    # The FIM prompts' order (spark_nb.server.complete.FIM_ORDERS), saved as the tokenizer's "fim_order" so the
    # server lays them out the same way: "spm", where the middle continues the prefix (a 6M model never learned
    # where a PSM prefix ends).
    fim_order: str = "spm"
    # Edit families' shares of an epoch go as (family size) ** family_balance: 1 keeps the data's own mix; below 1
    # the small families (to_fstring, wrap_main: a tenth the size of rename) are drawn more often, repeats and all.
    family_balance: float = 1.0
    # -- bookkeeping --
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    eval_batches: int = 20
    ckpt_every: int = 200
    max_minutes: float = 0.0  # stop this call (checkpointed, resumable) after this long; 0 = never
    budget_minutes: float = 0.0  # >0: after a short calibration, set `steps` so the whole run takes this long

    def replace(self, **kw) -> "TrainConfig":
        if "phases" in kw and kw["phases"] and isinstance(kw["phases"][0], dict):
            kw["phases"] = tuple(Phase(**p) for p in kw["phases"])
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {"fim_order": "psm", **d}  # saved before the field: its FIM examples were PSM
        return cls(name=d["name"]).replace(**{k: v for k, v in d.items() if k in known and k != "name"})

    @property
    def padded_vocab(self) -> int:
        return (self.vocab_size + 63) // 64 * 64

    def phase_steps(self) -> list[int]:
        """Steps per phase, summing to `steps`."""
        raw = [p.fraction for p in self.phases]
        total = sum(raw)
        out = [int(round(self.steps * f / total)) for f in raw]
        out[-1] = self.steps - sum(out[:-1])
        return out


CONFIGS: dict[str, TrainConfig] = {
    # MODEL_NOTES shape: 5.3M parameters with a 2,048 vocab, ~6.3M with 4,096.
    # `steps` is replaced after 40 steps by what fills 150 minutes at the measured speed (~5,000 at 3,000 tok/s);
    # for an exactly repeatable run pass --steps N --set budget_minutes=0.
    "cpu": TrainConfig(name="cpu", threads=2, steps=5000, budget_minutes=150.0),
    # 16-bit export ~48 MB (the shipped folder must stay under 50 MB): d=512, 8 layers, GQA 8/4, SwiGLU 1280.
    "gpu": TrainConfig(name="gpu", d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, ffn=1280, max_len=1024,
                       steps=8000, batch_size=128, lr=2e-3, warmup_steps=200, device="cuda", compile=False,
                       eval_every=500, ckpt_every=250, log_every=25, budget_minutes=16.0, max_minutes=8.5),
    # seconds on one core: tests and pipeline checks
    "smoke": TrainConfig(name="smoke", d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn=160, vocab_size=512,
                         max_len=256, steps=30, batch_size=8, lr=3e-3, warmup_steps=5, dtype="fp32", threads=1,
                         phases=(Phase("plain", "plain", 0.3, 256), Phase("edits", "edit", 0.7, 256)),
                         bucket_batches=4, log_every=5, eval_every=15, eval_batches=2, ckpt_every=10),
}


def get_config(name: str, **overrides) -> TrainConfig:
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}: choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name].replace(**overrides) if overrides else CONFIGS[name]
