"""What a stream yields: small immutable records that the UI, the CLI and the benchmarks all consume."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Token:
    """Text produced by one decode step. Times are seconds since the request started: `host_s` measured on this
    machine, `wafer_s` projected by the cycle model for the emulated wafer."""

    text: str  # the decoded delta (may be empty while a multi-byte character is incomplete)
    token_ids: tuple[int, ...]
    host_s: float
    wafer_s: float


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary of one request. Throughputs count decode steps after the first token, over the time they took."""

    prompt_tokens: int
    tokens: int  # generated tokens
    ttft_s: float  # host: request start to first token
    tok_per_s: float  # host decode throughput
    total_s: float
    wafer_ttft_s: float  # projected for the wafer
    wafer_tok_per_s: float
    wafer_total_s: float
    wafer: str  # preset name
    dtype: str
    drafted: int = 0  # speculative decoding: draft tokens proposed for verification
    accepted: int = 0  # ... and accepted (generated tokens that cost no decode step of their own)
    reused: int = 0  # prompt tokens whose keys and values the cache held from an earlier request (not run again)

    def __getitem__(self, key: str):
        return getattr(self, key)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Done:
    """The last event of a stream. `reason`: "eos", "stop" (a stop string), "length", "cancelled"."""

    text: str  # everything generated, stop string excluded
    token_ids: tuple[int, ...]
    reason: str
    stats: Stats
