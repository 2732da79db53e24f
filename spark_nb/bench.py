"""The engine benchmark behind `spark-nb bench`: spark-nb against transformers on the same random weights.

    from spark_nb import bench
    result = bench.run()                  # a JSON-ready dict: machine, settings, bandwidth, one row per shape x dtype
    print(bench.format_table(result))

For every shape (the built-in model as shipped, or a random-weight model written once into a temporary folder)
and dtype it measures, in this order:
1. prefill tok/s: one full causal forward over P tokens with logits at every position (`Engine.logits`; on the
   transformers side `model(ids)`, which computes the same [P, vocab] logits);
2. decode tok/s at a context of C prompt tokens: `Engine.stream(C random ids, ignore_eos=True)`, rate from
   `Done.stats.tok_per_s`; transformers: a greedy loop over a DynamicCache, timed per token after the first.
   TTFT comes from the same runs at the largest context: prefill + the first greedy token on both sides;
3. the memory-bandwidth roofline: bandwidth measured here by `stream_sum` over a buffer far larger than the
   last-level cache, divided by the bytes one decode step reads (`decode_bytes`);
4. the wafer projection (`spark_nb.project`) for the same config and dtype.

Both sides run with the same thread count, after a warm-up, best of a few repeats taken the same way. Machines are
noisy, so speeds are reported next to the transformers run of the same process as a ratio, never asserted.
Nothing here imports torch at import time: transformers is optional, and without it the reference columns read
"n/a (pip install 'spark-nb[test]')".
"""
from __future__ import annotations

import datetime
import gc
import itertools
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from numba import njit, prange

# -- settings ----------------------------------------------------------------------------------------------------

BUILT_IN = "built-in"  # the shipped edit model itself, its own weights (every other shape: random weights)
SHAPES = (BUILT_IN, "llama-10m", "qwen2.5-0.5b")  # BUILT_IN or names in spark_nb.model.synthetic.SHAPES
DTYPES = ("int8", "fp32")
PREFILL_TOKENS = (128, 512)
DECODE_CONTEXTS = (64, 512)  # prompt tokens before decoding starts; TTFT is measured at the largest
DECODE_TOKENS = 32  # generated per decode run; the rate counts the steps after the first token
REPEATS = 3  # best of this many timed runs per measurement, after one warm-up ...
BUDGET_S = 15.0  # ... but no new repeat once a measurement has taken this long (keeps the 0.5B shape in minutes)
BANDWIDTH_BYTES = 1 << 30  # far larger than any last-level cache, so the sum streams from DRAM
BANDWIDTH_REPEATS = 5
WAFER = "wse3"
NO_REFERENCE = "n/a (pip install 'spark-nb[test]')"

# quick=True: a tiny model and a few tokens, for tests and CI smoke runs (seconds, not minutes)
TINY = {"tiny": dict(family="llama", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=512, max_position_embeddings=256)}
QUICK = dict(prefill_tokens=(16, 48), decode_contexts=(8, 48), decode_tokens=8, repeats=2,
             bandwidth_bytes=64 << 20, bandwidth_repeats=2)


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


def _fmt(x: float) -> str:
    """A speed or a time with three significant digits at most, thousands separated: 12,345 / 123 / 4.56 / 0.123."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _best(fn: Callable[[], float], repeats: int, budget_s: float, higher: bool = True) -> float:
    """Best of up to `repeats` calls of fn (a rate if higher, else a time); no new call once budget_s is spent."""
    values, t0 = [], time.perf_counter()
    for _ in range(repeats):
        values.append(fn())
        if time.perf_counter() - t0 > budget_s:
            break
    return max(values) if higher else min(values)


# -- memory bandwidth ---------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def stream_sum(buf, partial):
    """Sum buf[n] in len(partial) contiguous chunks, one per prange iteration; the memory-bound loop whose rate
    is the roofline's bandwidth. partial: scratch [chunks]."""
    n = buf.shape[0]
    chunks = partial.shape[0]
    per = (n + chunks - 1) // chunks
    for c in prange(chunks):
        partial[c] = buf[c * per : min(n, (c + 1) * per)].sum()  # numba's sum vectorises better than a plain loop
    return partial.sum()


def measure_bandwidth(nbytes: int = BANDWIDTH_BYTES, repeats: int = BANDWIDTH_REPEATS) -> dict:
    """Read bandwidth in GB/s (1e9 bytes/s): best of `repeats` passes of stream_sum over an nbytes buffer, with
    numba's current thread count."""
    import numba

    buf = np.ones(nbytes // 4, np.float32)  # filled, so every page is really there
    partial = np.zeros(numba.get_num_threads() * 16, np.float32)
    stream_sum(buf[:1024], partial)  # compile (or load the cache) outside the timing
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stream_sum(buf, partial)
        seconds.append(time.perf_counter() - t0)
    del buf
    return dict(bytes=int(nbytes), repeats=repeats, best_s=min(seconds), gb_per_s=nbytes / min(seconds) / 1e9)


def decode_bytes(engine, kv_positions: float) -> int:
    """Bytes one decode step reads: every layer matrix and the lm_head as the engine holds them (PE tiles with
    their zero padding, and per-row scales), norms and q/k/v biases, one embedding row (a tied model's lm_head is
    read once, by the lm_head), and the KV cache (fp32 or fp16, as the engine keeps it) of kv_positions positions
    in every layer."""
    p, c = engine.placement, engine.config
    d, hd, L = c.hidden_size, c.head_dim, c.n_layers
    read = [m for m in p.matrices if m.name != "embedding"]  # a tied model has no separate embedding
    matrices = sum(m.pes * m.tile_bytes + 4 * m.rows for m in read)
    embedding = p.matrix("embedding")
    embed_row = embedding.gc * embedding.tn * embedding.dtype_bytes + 4
    vectors = 4 * (L * (2 * d + (c.n_heads + 2 * c.n_kv_heads) * hd) + d)  # norms and biases (zeros if none)
    kv = engine._k_cache.itemsize * 2 * L * c.n_kv_heads * hd * kv_positions
    return int(round(matrices + embed_row + vectors + kv))


# -- spark-nb side -----------------------------------------------------------------------------------------------


def _ours(folder: Path, dtype: str, s: dict, ids: np.ndarray, wafer: str, progress: bool) -> dict:
    from . import project
    from .engine import Engine

    t0 = time.perf_counter()
    context = max(max(s["prefill_tokens"]), max(s["decode_contexts"]) + s["decode_tokens"])
    engine = Engine.load(folder, wafer=wafer, dtype=dtype, context=context)
    row = dict(load_s=time.perf_counter() - t0, context=context, pes_used=engine.placement.pes_used)
    _log(progress, f"  spark-nb {dtype}: loaded in {row['load_s']:.1f} s; warming up")
    engine.logits(ids[:8])
    for _ in engine.stream(ids[:8].tolist(), max_new_tokens=3, ignore_eos=True):
        pass

    def prefill(P):
        t = time.perf_counter()
        engine.logits(ids[:P])
        return P / (time.perf_counter() - t)

    row["prefill"] = []
    for P in s["prefill_tokens"]:
        rate = _best(lambda: prefill(P), s["repeats"], s["budget_s"])
        row["prefill"].append(dict(tokens=P, tok_per_s=rate))
        _log(progress, f"  spark-nb {dtype}: prefill@{P} {_fmt(rate)} tok/s")
    row["top1"] = engine.logits(ids[: min(s["prefill_tokens"])]).argmax(-1).tolist()  # agreement with reference

    row["decode"] = []
    first_tokens = itertools.count(1)  # every run's prompt its own first token (below)
    for C in s["decode_contexts"]:
        runs = []

        def decode():
            # a first token of its own each run: the engine's cache would otherwise hold the whole prompt from the
            # run before, and TTFT would time one token's forward instead of the prompt's
            prompt = ids[:C].tolist()
            prompt[0] = (prompt[0] + next(first_tokens)) % engine.config.vocab_size
            for event in engine.stream(prompt, max_new_tokens=s["decode_tokens"], ignore_eos=True):
                pass
            runs.append(event.stats)
            return event.stats.tok_per_s

        rate = _best(decode, s["repeats"], s["budget_s"])
        kv_positions = C + s["decode_tokens"] / 2  # the timed steps run at positions C .. C + N - 2
        nbytes = decode_bytes(engine, kv_positions)
        row["decode"].append(dict(context=C, tokens=s["decode_tokens"], tok_per_s=rate,
                                  ttft_s=min(r.ttft_s for r in runs), reused=max(r.reused for r in runs),
                                  kv_positions=kv_positions,
                                  bytes_per_token=nbytes, wafer_tok_per_s=runs[-1].wafer_tok_per_s,
                                  wafer_ttft_s=runs[-1].wafer_ttft_s))
        ttft_ms = row["decode"][-1]["ttft_s"] * 1e3
        _log(progress, f"  spark-nb {dtype}: decode@{C} {_fmt(rate)} tok/s, ttft {_fmt(ttft_ms)} ms")

    C = max(s["decode_contexts"])
    projection = project(engine.config, wafer=wafer, dtype=dtype, context=C, prompt=C)
    row["wafer"] = dict(name=projection.wafer, context=C, prompt=C, decode_tok_per_s=projection.decode_tok_per_s,
                        ttft_s=projection.ttft_s, pes_used=projection.pes_used)
    return row


# -- transformers side -------------------------------------------------------------------------------------------


def reference_available() -> str | None:
    """None when torch and transformers import, else the message the reference columns show."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return NO_REFERENCE
    return None


def _theirs(folder: Path, s: dict, ids: np.ndarray, threads: int, progress: bool) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Loading weights" bar would interleave with our progress lines
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    out = dict(load_s=time.perf_counter() - t0)
    _log(progress, f"  transformers fp32: loaded in {out['load_s']:.1f} s; warming up")
    tokens = torch.from_numpy(ids).view(1, -1)

    def greedy(C: int, n: int) -> tuple[float, float]:
        """(ttft_s, decode tok/s): prefill C tokens into a cache and pick the first token, then n - 1 steps."""
        t = time.perf_counter()
        cache = DynamicCache(config=model.config)
        logits = model(input_ids=tokens[:, :C], past_key_values=cache, use_cache=True, logits_to_keep=1).logits
        token = int(logits[0, -1].argmax())
        ttft = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n - 1):
            step = torch.tensor([[token]])
            token = int(model(input_ids=step, past_key_values=cache, use_cache=True).logits[0, -1].argmax())
        return ttft, (n - 1) / (time.perf_counter() - t)

    def prefill(P):
        t = time.perf_counter()
        model(input_ids=tokens[:, :P], use_cache=False)
        return P / (time.perf_counter() - t)

    with torch.inference_mode():
        model(input_ids=tokens[:, :8], use_cache=False)
        greedy(8, 3)
        out["prefill"] = {}
        for P in s["prefill_tokens"]:
            out["prefill"][P] = _best(lambda: prefill(P), s["repeats"], s["budget_s"])
            _log(progress, f"  transformers fp32: prefill@{P} {_fmt(out['prefill'][P])} tok/s")
        out["top1"] = model(input_ids=tokens[:, : min(s["prefill_tokens"])]).logits[0].argmax(-1).tolist()
        out["decode"], out["ttft_s"] = {}, {}
        for C in s["decode_contexts"]:
            runs = []

            def decode():
                runs.append(greedy(C, s["decode_tokens"]))
                return runs[-1][1]

            out["decode"][C] = _best(decode, s["repeats"], s["budget_s"])
            out["ttft_s"][C] = min(r[0] for r in runs)
            _log(progress, f"  transformers fp32: decode@{C} {_fmt(out['decode'][C])} tok/s, "
                           f"ttft {_fmt(out['ttft_s'][C] * 1e3)} ms")
    del model
    gc.collect()
    return out


# -- the run -------------------------------------------------------------------------------------------------------


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours and theirs else None


def _shapes(shapes, quick: bool) -> dict[str, str | dict]:
    """{name: SHAPES name or config dict} from a list of SHAPES names or a {name: shape} mapping."""
    if shapes is None:
        return dict(TINY) if quick else {name: name for name in SHAPES}
    if isinstance(shapes, str):
        return {shapes: shapes}
    if isinstance(shapes, Mapping):
        return dict(shapes)
    return {name: name for name in shapes}


def machine() -> dict:
    """Facts that make a result comparable: CPU, cores, threads, versions, date."""
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    from . import __version__

    facts = dict(cpu=cpu, cores=os.cpu_count(), usable_cores=usable, numba_threads=numba.get_num_threads(),
                 python=platform.python_version(), platform=platform.platform(), numpy=np.__version__,
                 numba=numba.__version__, spark_nb=__version__,
                 date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    try:
        facts["numba_threading_layer"] = numba.threading_layer()  # known once a parallel kernel has run
    except ValueError:
        facts["numba_threading_layer"] = None
    if reference_available() is None:
        import torch
        import transformers

        facts |= dict(torch=torch.__version__, transformers=transformers.__version__,
                      torch_threads=torch.get_num_threads())
    return facts


def run(shapes=None, dtypes: Sequence[str] = DTYPES, reference: bool = True, quick: bool = False, *,
        prefill_tokens: Sequence[int] | None = None, decode_contexts: Sequence[int] | None = None,
        decode_tokens: int | None = None, repeats: int | None = None, budget_s: float = BUDGET_S,
        bandwidth_bytes: int | None = None, wafer: str = WAFER, workdir: str | Path | None = None,
        progress: bool = True, seed: int = 0) -> dict:
    """Benchmark spark-nb (and transformers, if reference and installed) and return a JSON-ready dict.

    shapes: BUILT_IN or names from spark_nb.model.synthetic.SHAPES, or {name: one of those or a config.json dict
    with `family`}; default SHAPES here (the built-in model, "llama-10m", "qwen2.5-0.5b"), or a tiny llama when
    quick. quick also shrinks every
    token count, the repeats and the bandwidth buffer, so the whole run takes seconds. Progress goes to stderr.
    Model folders are written under a temporary directory (inside workdir if given) and deleted afterwards.
    """
    import numba

    from .model import ModelConfig
    from .model.synthetic import write_random_model

    small = QUICK if quick else {}
    s = dict(prefill_tokens=tuple(prefill_tokens or small.get("prefill_tokens", PREFILL_TOKENS)),
             decode_contexts=tuple(decode_contexts or small.get("decode_contexts", DECODE_CONTEXTS)),
             decode_tokens=decode_tokens or small.get("decode_tokens", DECODE_TOKENS),
             repeats=repeats or small.get("repeats", REPEATS), budget_s=budget_s)
    if s["decode_tokens"] < 2:
        raise ValueError("decode_tokens must be at least 2: the rate counts the steps after the first token")
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    threads = numba.get_num_threads()
    missing = reference_available() if reference else None
    use_reference = reference and missing is None
    started = time.perf_counter()

    _log(progress, f"measuring memory bandwidth ({threads} threads)")
    bandwidth = measure_bandwidth(bandwidth_bytes or small.get("bandwidth_bytes", BANDWIDTH_BYTES),
                                  small.get("bandwidth_repeats", BANDWIDTH_REPEATS))
    _log(progress, f"bandwidth {bandwidth['gb_per_s']:.1f} GB/s")
    result = dict(
        machine=machine(), settings=dict(s, dtypes=list(dtypes), quick=quick, threads=threads, wafer=wafer),
        bandwidth=bandwidth,
        reference=dict(enabled=bool(reference), available=use_reference, note=missing,
                       name="transformers fp32" if use_reference else None),
        shapes={}, rows=[])
    result["settings"] |= dict(prefill_tokens=list(s["prefill_tokens"]), decode_contexts=list(s["decode_contexts"]))
    torch_threads = None
    if use_reference:
        import torch

        torch_threads = torch.get_num_threads()
    rng = np.random.default_rng(seed)
    try:
        for name, shape in _shapes(shapes, quick).items():
            with tempfile.TemporaryDirectory(prefix="spark-nb-bench-", dir=workdir) as tmp:
                t0 = time.perf_counter()
                if shape == BUILT_IN:
                    from .edits import BUILTIN as folder
                else:
                    _log(progress, f"{name}: writing random weights")
                    folder = write_random_model(Path(tmp) / "model", shape, seed=seed)
                write_s = time.perf_counter() - t0
                config = ModelConfig.coerce(folder)
                size = sum(f.stat().st_size for f in folder.iterdir())
                _log(progress, f"{name}: {config.n_params / 1e6:,.1f}M params, {size / 1e9:.2f} GB on disk, "
                               f"written in {write_s:.1f} s")
                ids = rng.integers(0, config.vocab_size, size=max(max(s["prefill_tokens"]),
                                                                  max(s["decode_contexts"]))).astype(np.int64)
                ours = {}
                for dtype in dtypes:
                    ours[dtype] = _ours(folder, dtype, s, ids, wafer, progress)
                    gc.collect()
                theirs = _theirs(folder, s, ids, threads, progress) if use_reference else None
                result["shapes"][name] = dict(params=config.n_params, family=config.family,
                                              disk_bytes=size, write_s=write_s,
                                              reference=_reference_summary(theirs))
                for dtype in dtypes:
                    result["rows"].append(_row(name, dtype, ours[dtype], theirs, bandwidth, s))
                _log(progress, f"{name}: done")
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
    result["elapsed_s"] = time.perf_counter() - started
    return result


def _reference_summary(theirs: dict | None) -> dict | None:
    if theirs is None:
        return None
    return dict(load_s=theirs["load_s"],
                prefill=[dict(tokens=P, tok_per_s=r) for P, r in theirs["prefill"].items()],
                decode=[dict(context=C, tok_per_s=r, ttft_s=theirs["ttft_s"][C]) for C, r in theirs["decode"].items()])


def _row(name: str, dtype: str, ours: dict, theirs: dict | None, bandwidth: dict, s: dict) -> dict:
    """One (shape, dtype) row: our numbers, the reference's next to them, ratios, the roofline, the wafer."""
    gbps = bandwidth["gb_per_s"]
    prefill = [dict(p, reference_tok_per_s=theirs and theirs["prefill"][p["tokens"]]) for p in ours["prefill"]]
    for p in prefill:
        p["ratio"] = _ratio(p["tok_per_s"], p["reference_tok_per_s"])
    decode = []
    for d in ours["decode"]:
        C = d["context"]
        roofline = gbps * 1e9 / d["bytes_per_token"]
        decode.append(dict(context=C, tokens=d["tokens"], tok_per_s=d["tok_per_s"],
                           reference_tok_per_s=theirs and theirs["decode"][C],
                           ratio=_ratio(d["tok_per_s"], theirs and theirs["decode"][C]),
                           kv_positions=d["kv_positions"], bytes_per_token=d["bytes_per_token"], reused=d["reused"],
                           roofline_tok_per_s=roofline, pct_roofline=100.0 * d["tok_per_s"] / roofline,
                           wafer_tok_per_s=d["wafer_tok_per_s"]))
    last = ours["decode"][-1]  # TTFT at the largest context, from the same runs
    ttft_ref = theirs and theirs["ttft_s"][last["context"]]
    ttft = dict(prompt=last["context"], s=last["ttft_s"], reference_s=ttft_ref, ratio=_ratio(ttft_ref, last["ttft_s"]),
                wafer_s=last["wafer_ttft_s"])
    agreement = None
    if theirs is not None:
        agreement = float(np.mean(np.array(ours["top1"]) == np.array(theirs["top1"])))
    return dict(shape=name, dtype=dtype, load_s=ours["load_s"], context=ours["context"], pes_used=ours["pes_used"],
                prefill=prefill, ttft=ttft, decode=decode, wafer=ours["wafer"], top1_agreement=agreement)


# -- the table -----------------------------------------------------------------------------------------------------


def format_table(result: dict) -> str:
    """One row per (shape, dtype); every speed with its ratio to transformers (x, higher is better for us; for
    TTFT the reference's time over ours), decode as % of the bandwidth roofline, and the wafer projection."""
    ref = result["reference"]
    settings = result["settings"]
    wafer = settings["wafer"]

    def ratio(r):
        if not ref["enabled"]:
            return ""
        if not ref["available"]:
            return " (n/a)"
        return f" ({r:.2f}x)" if r is not None else " (-)"

    contexts, prefills = settings["decode_contexts"], settings["prefill_tokens"]
    ttft_prompt = max(contexts)
    header = (["shape", "dtype"] + [f"prefill@{P} tok/s" for P in prefills] + [f"TTFT@{ttft_prompt} ms"]
              + [f"decode@{C} tok/s" for C in contexts] + ["% roofline " + "/".join(f"@{C}" for C in contexts)]
              + [f"{wafer} decode tok/s", f"{wafer} TTFT ms"])
    rows = [header]
    for row in result["rows"]:
        rows.append(
            [row["shape"], row["dtype"]]
            + [f"{_fmt(p['tok_per_s'])}{ratio(p['ratio'])}" for p in row["prefill"]]
            + [f"{_fmt(row['ttft']['s'] * 1e3)}{ratio(row['ttft']['ratio'])}"]
            + [f"{_fmt(d['tok_per_s'])}{ratio(d['ratio'])}" for d in row["decode"]]
            + ["/".join(f"{_fmt(d['pct_roofline'])}%" for d in row["decode"])]
            + [_fmt(row['wafer']['decode_tok_per_s']), _fmt(row['wafer']['ttft_s'] * 1e3)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    m, bw = result["machine"], result["bandwidth"]
    if not ref["enabled"]:
        versus = "reference run skipped"
    elif not ref["available"]:
        versus = f"(x transformers): {ref['note']}"
    else:
        versus = (f"(Nx) = spark-nb / transformers {m.get('transformers', '')} fp32 on the same weights, same run "
                  f"(TTFT: transformers time / ours)")
    lines += [
        "",
        versus,
        f"roofline: {bw['gb_per_s']:.1f} GB/s measured ({bw['bytes'] / 2**30:.2g} GiB read, {settings['threads']} "
        f"threads) / bytes read per decode token; {wafer} columns are projected by the cycle model "
        f"(decode at context {ttft_prompt}, TTFT for a {ttft_prompt}-token prompt)",
        f"{m['cpu']}, {m['usable_cores']} of {m['cores']} cores, numba {m['numba']} "
        f"({m['numba_threading_layer']}, {m['numba_threads']} threads), {m['date']}, {result['elapsed_s']:.0f} s",
    ]
    return "\n".join(lines)
