"""The remote path's cost: spark-nb's backend against the bare `openai` client on the same `spark-nb serve`, and
that server against the engine in-process (a benchmark: medians printed, nothing asserted).

    python bench/remote_overhead.py [TOKENS] [REPEATS]

The server runs in a subprocess (`spark-nb serve --port 0`, the built-in model); the in-process engine runs in this
process, in the same rotation. Every request streams TOKENS tokens (/v1/completions with ignore_eos, greedy).
TTFT: request sent to first text; tok/s: the tokens after the first over the time they took — the same
definitions as the engine's Stats. Each round runs the engine in-process first, then the bare client and the
backend, which of the two goes first alternating: the engine's threads may still hold a core right after it ran,
and drifting load on the machine falls on both alike; medians and bests (the least disturbed run) are printed. On a shared machine wall-clock rates swing with the other
load, so the CPU each side spends is printed too: `client_cpu_ms` (per request: the calling thread's for the two
clients, what spark-nb's backend adds over the bare client, without the engine's helper threads that may still spin
after its turn; the whole process's for the engine in-process) and `server_cpu_ms` (the server process, per
request, against the engine's own CPU in-process: what serving adds).
"""
import json
import os
import statistics
import subprocess
import sys
import time

import openai

from spark_nb.backends import remote_engine
from spark_nb.edits import get_engine

PROMPT = "def fibonacci(n):\n"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def bare(client, tokens):
    t0 = time.perf_counter()
    first = last = 0.0
    n = 0
    for chunk in client.completions.create(model="builtin", prompt=PROMPT, max_tokens=tokens, stream=True,
                                           extra_body={"ignore_eos": True}):
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter() - t0
            first = first or last
            n += 1
    return first, (n - 1) / (last - first)


def through(engine, tokens):  # the remote backend or the engine in this process: the same call, the same Stats
    *_, done = engine.stream(PROMPT, max_new_tokens=tokens, ignore_eos=True)
    return done.stats.ttft_s, done.stats.tok_per_s


def main(tokens=200, repeats=15):
    proc = subprocess.Popen([sys.executable, "-m", "spark_nb.cli", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().split(" at ")[1].split()[0]
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        engine = remote_engine(f"openai:builtin@{url}")
        in_process = get_engine(None)
        runs = {"bare": lambda: bare(client, tokens), "remote": lambda: through(engine, tokens),
                "in-process": lambda: through(in_process, tokens)}
        rows = {name: [] for name in runs}
        for i in range(repeats + 2):  # two warm-ups (numba loads its kernels, connections open)
            for name in ("in-process", "bare", "remote") if i % 2 else ("in-process", "remote", "bare"):
                clock = time.process_time if name == "in-process" else time.thread_time
                c0, s0 = clock(), cpu_of(proc.pid)
                ttft, rate = runs[name]()
                cpu = dict(client_cpu_ms=(clock() - c0) * 1e3, server_cpu_ms=(cpu_of(proc.pid) - s0) * 1e3)
                if i >= 2:
                    rows[name].append(dict(ttft_ms=ttft * 1e3, tok_s=rate, **cpu))
    finally:
        proc.terminate()
        proc.wait(10)
    out = {}
    for stat, pick in (("median", statistics.median), ("best", None)):
        o = {name: {key: (pick or (max if key == "tok_s" else min))(r[key] for r in rs) for key in rs[0]}
             for name, rs in rows.items()}
        b, r, p = o["bare"], o["remote"], o["in-process"]
        o["remote_over_bare"] = {"ttft_ms": r["ttft_ms"] - b["ttft_ms"], "tok_s_ratio": r["tok_s"] / b["tok_s"],
                                 "client_cpu_ms": r["client_cpu_ms"] - b["client_cpu_ms"]}
        o["served_over_in_process"] = {"tok_s_ratio": b["tok_s"] / p["tok_s"], "ttft_ms": b["ttft_ms"] - p["ttft_ms"],
                                       "server_cpu_ms_over_engine": b["server_cpu_ms"] - p["client_cpu_ms"]}
        out[stat] = {k: {a: round(v, 3) for a, v in d.items()} for k, d in o.items()}
    out["settings"] = dict(tokens=tokens, repeats=repeats, cpus=os.cpu_count(), load=os.getloadavg())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
