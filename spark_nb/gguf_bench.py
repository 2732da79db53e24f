"""`spark-nb bench --gguf FILE`: spark-nb next to llama.cpp's llama-bench, in one run, on the same file and cores.

    from spark_nb import gguf_bench
    result = gguf_bench.run("model.gguf", llama_bench="llama-bench")   # a JSON-ready dict
    print(gguf_bench.format_table(result))

Both sides measure what llama-bench calls pp512 and tg64:
- prefill: a prompt of 512 random tokens fed at once, the logits of its last position only (llama-bench's pp: one
  batch, one output row); spark-nb through `Session.feed`, a fresh prompt each repeat (nothing reused from its
  prefix cache);
- decode: 64 greedy tokens from a one-token prompt (llama-bench's tg starts from an empty context); spark-nb
  through `Engine.stream`, its rate from `Done.stats.tok_per_s`.
llama-bench runs first, at every thread count from 1 to the cores this process may use (`-t 1,2,..`), `-r`
repeats (it reports the mean), and each test counts at its fastest thread count: spark-nb picks its own decode
threads by speed, and on a busy 2-core machine llama.cpp's two threads, which spin at their barriers, decoded the
0.5B file at ~6 tok/s against ~39 on one. spark-nb then takes the best of as many repeats. The memory roofline divides the bandwidth measured here (bench.measure_bandwidth)
by the bytes a decode step reads: spark-nb's as it holds the model (bench.decode_bytes), llama.cpp's the file's
tensors (a row of the token embedding only, as llama.cpp reads it). Resident memory: what loading the model and
running both tests added to this process (its imports excluded), beside llama-bench's whole process at its peak.
Nothing is asserted: machines are noisy, and
the ratios come from one run on one machine. llama.cpp is a reference only, found on PATH or given.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from . import bench

PROMPT = 512  # llama-bench's pp512
POLL_S = 0.02  # how often llama-bench's peak resident memory is read while it runs
GENERATE = 64  # llama-bench's tg64
REPEATS = 3
DTYPE = "int8"  # the one low-bit layout spark-nb computes a whole model in today


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def file_decode_bytes(path: Path) -> int:
    """Bytes llama.cpp reads per decode step from a GGUF file: every tensor, but one row of the token embedding
    where a separate output matrix exists (a tied model reads its embedding whole, as the output)."""
    import gguf

    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    total = sum(int(t.n_bytes) for t in tensors.values())
    embed = tensors.get("token_embd.weight")
    if embed is not None and "output.weight" in tensors:
        total -= int(embed.n_bytes) - int(embed.n_bytes) // int(embed.shape[-1])
    return total


def llama_bench(binary: str, path: Path, threads: int, prompt: int, generate: int, repeats: int) -> dict:
    """llama-bench's pp{prompt} and tg{generate} in tok/s (its mean over `repeats`) at the fastest of 1..threads
    threads, and those thread counts, from its JSON output."""
    command = [binary, "-m", str(path), "-p", str(prompt), "-n", str(generate),
               "-t", ",".join(str(n) for n in range(1, threads + 1)), "-r", str(repeats), "-o", "json"]
    code, stdout, stderr, peak = _run_measured(command)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}): {stderr.strip()[-500:]}")
    rows = json.loads(stdout)
    best = {}
    for r in rows:
        test = "prefill" if r["n_gen"] == 0 else "decode"
        if test not in best or r["avg_ts"] > best[test]["avg_ts"]:
            best[test] = r
    build = rows[0].get("build_commit") if rows else None
    return dict(binary=binary, build=build, prefill_tok_per_s=float(best["prefill"]["avg_ts"]),
                decode_tok_per_s=float(best["decode"]["avg_ts"]), prefill_threads=int(best["prefill"]["n_threads"]),
                decode_threads=int(best["decode"]["n_threads"]), peak_resident_bytes=peak)


def _run_measured(command: list[str]) -> tuple[int, str, str, int | None]:
    """(exit code, stdout, stderr, peak resident bytes or None) of a command. The peak is the child's own high
    water mark (VmHWM in Linux's /proc), read every POLL_S while it runs the command: not its rusage, whose maxrss
    starts from this process's own at the fork (a test suite's 1.4 GB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        peak = None
        while child.poll() is None:
            peak = _high_water(child.pid, command[0]) or peak
            time.sleep(POLL_S)
        out.seek(0), err.seek(0)
        return child.returncode, out.read(), err.read(), peak


def _high_water(pid: int, program: str) -> int | None:
    """Process pid's peak resident bytes so far, once it runs `program` (before its exec it is still this
    process), or None."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if os.fsencode(program) not in f.read().split(b"\0"):
                return None
        with open(f"/proc/{pid}/status") as f:
            kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        return int(kb) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _resident_bytes() -> int | None:
    """This process's resident memory now (Linux's /proc), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def spark_nb(path: Path, dtype: str, prompt: int, generate: int, repeats: int, progress: bool) -> dict:
    """spark-nb's prefill and decode on the file, the same shapes as llama-bench's (module docstring)."""
    from .engine import Engine

    from .engine.engine import return_freed_memory

    return_freed_memory()  # as a load does at its end: what was freed before is not counted against the model
    before = _resident_bytes()  # the imports' (Python, numpy, numba, tokenizers): not the model's
    t0 = time.perf_counter()
    engine = Engine.load(path, dtype=dtype, context=prompt + generate + 8)
    load_s = time.perf_counter() - t0
    bench._log(progress, f"spark-nb {dtype}: loaded in {load_s:.1f} s")
    rng = np.random.default_rng(0)
    vocab = engine.config.vocab_size

    def prefill() -> float:
        session = engine.session()
        ids = rng.integers(0, vocab, prompt).tolist()  # a fresh prompt: nothing comes from the prefix cache
        t = time.perf_counter()
        session.feed(ids)
        return prompt / (time.perf_counter() - t)

    def decode() -> float:
        for event in engine.stream([int(rng.integers(0, vocab))], max_new_tokens=generate, ignore_eos=True):
            pass
        return event.stats.tok_per_s

    prefill(), decode()  # compile or load numba's cache, touch every page
    rates = dict(prefill_tok_per_s=bench._best(prefill, repeats, float("inf")),
                 decode_tok_per_s=bench._best(decode, repeats, float("inf")))
    bench._log(progress, f"spark-nb {dtype}: pp{prompt} {bench._fmt(rates['prefill_tok_per_s'])} tok/s, "
                         f"tg{generate} {bench._fmt(rates['decode_tok_per_s'])} tok/s")
    after = _resident_bytes()  # the model, its KV cache and buffers, numba's code, after both tests
    return dict(dtype=dtype, load_s=load_s, decode_bytes=bench.decode_bytes(engine, generate / 2),
                resident_bytes=None if after is None else after - before, process_resident_bytes=after, **rates)


def run(path, llama_bench_binary: str | None = None, dtype: str = DTYPE, prompt: int = PROMPT,
        generate: int = GENERATE, repeats: int = REPEATS, progress: bool = True) -> dict:
    """Both sides on the GGUF file at `path` (llama.cpp where a llama-bench binary is given or on PATH), the
    bandwidth, and the ratios. A JSON-ready dict."""
    path = Path(path).expanduser()
    binary = llama_bench_binary or shutil.which("llama-bench")
    threads = _threads()
    result = dict(file=str(path), file_bytes=path.stat().st_size, prompt=prompt, generate=generate,
                  machine=bench.machine(), llama_cpp=None)
    if binary:
        bench._log(progress, f"llama-bench ({binary}), 1..{threads} threads")
        result["llama_cpp"] = llama_bench(binary, path, threads, prompt, generate, repeats)
        result["llama_cpp"]["decode_bytes"] = file_decode_bytes(path)
    result["spark_nb"] = spark_nb(path, dtype, prompt, generate, repeats, progress)
    result["bandwidth"] = bench.measure_bandwidth()
    gb_per_s = result["bandwidth"]["gb_per_s"] * 1e9
    for side in ("spark_nb", "llama_cpp"):
        if result[side]:
            roofline = gb_per_s / result[side]["decode_bytes"]
            result[side]["roofline_tok_per_s"] = roofline
            result[side]["roofline_fraction"] = result[side]["decode_tok_per_s"] / roofline
    if result["llama_cpp"]:
        ours, theirs = result["spark_nb"], result["llama_cpp"]
        result["ratios"] = {k: bench._ratio(ours[k], theirs[k]) for k in ("prefill_tok_per_s", "decode_tok_per_s")}
    return result


def format_table(result: dict) -> str:
    """The result as a few lines of plain text."""
    p, g = result["prompt"], result["generate"]
    ours, theirs = result["spark_nb"], result["llama_cpp"]
    lines = [f"{Path(result['file']).name} ({result['file_bytes'] / 1e6:,.0f} MB), "
             f"{result['machine']['cpu']}, {result['bandwidth']['gb_per_s']:.1f} GB/s measured",
             f"{'':22}{'pp' + str(p) + ' tok/s':>14}{'tg' + str(g) + ' tok/s':>14}{'MB/token':>10}{'roofline':>10}"]

    def row(name, side):
        lines.append(f"{name:22}{bench._fmt(side['prefill_tok_per_s']):>14}{bench._fmt(side['decode_tok_per_s']):>14}"
                     f"{side['decode_bytes'] / 1e6:>10,.0f}{side['roofline_fraction']:>10.0%}")

    row(f"spark-nb ({ours['dtype']})", ours)
    if theirs:
        row(f"llama.cpp (-t {theirs['prefill_threads']}/{theirs['decode_threads']})", theirs)
        r = result["ratios"]
        lines.append(f"{'spark-nb / llama.cpp':22}{r['prefill_tok_per_s']:>13.2f}x{r['decode_tok_per_s']:>13.2f}x")
    else:
        lines.append("llama.cpp: no llama-bench on PATH (give one with --llama-bench PATH)")
    size = result["file_bytes"]
    if ours["resident_bytes"] is not None:
        lines.append(f"resident: spark-nb {ours['resident_bytes'] / 1e6:,.0f} MB over its imports "
                     f"({ours['resident_bytes'] / size:.2f}x the file; the process {ours['process_resident_bytes'] / 1e6:,.0f} MB)"
                     + (f", llama.cpp's process at its peak {theirs['peak_resident_bytes'] / 1e6:,.0f} MB "
                        f"({theirs['peak_resident_bytes'] / size:.2f}x)" if theirs and theirs["peak_resident_bytes"]
                        else ""))
    return "\n".join(lines)
