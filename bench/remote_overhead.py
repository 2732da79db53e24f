"""The remote path's cost: spark-nb's backend against the bare `openai` client on the same `spark-nb serve`, and
that server against the engine in-process (a benchmark: medians printed, nothing asserted).

    python bench/remote_overhead.py [TOKENS] [REPEATS]

The server runs in a subprocess (`spark-nb serve --port 0`, the built-in model); the in-process engine runs in this
process, in the same rotation. `remote` is the backend as scripts and the CLI call it; `notebook` as an edit in a
notebook calls it, with heartbeats (the answer read on a helper thread, so the kernel stays responsive). Every
request streams TOKENS tokens (/v1/completions with ignore_eos, greedy). TTFT: request sent to first text; tok/s:
the tokens after the first over the time they took — the same definitions as the engine's Stats. Each round runs
the engine in-process first, then the three clients, their order reversed every other round: the engine's threads
may still hold a core right after it ran, and drifting load on the machine falls on every side alike; medians and
bests (the least disturbed run) are printed. On a shared machine wall-clock rates swing with the other load, so the
CPU each side spends is printed too: `client_cpu_ms` (per request: the calling thread's for the bare client and
`remote`, what spark-nb's backend adds, without the engine's helper threads that may still spin after its turn;
the whole process's for `notebook`, whose helper thread reads, and for the engine in-process) and `server_cpu_ms`
(the server process, per request, against the engine's own CPU in-process: what serving adds).
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
from spark_nb.edits.edit import HEARTBEAT_S

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
                                           stream_options={"include_usage": True}, extra_body={"ignore_eos": True}):
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter() - t0
            first = first or last
        if chunk.usage is not None:  # an event may carry several tokens: the server counts them
            n = chunk.usage.completion_tokens
    return first, (n - 1) / (last - first)


def through(engine, tokens, **options):  # the remote backend or the engine in-process: the same call and Stats
    *_, done = engine.stream(PROMPT, max_new_tokens=tokens, ignore_eos=True, **options)
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
                "notebook": lambda: through(engine, tokens, heartbeat=HEARTBEAT_S),
                "in-process": lambda: through(in_process, tokens)}
        rows = {name: [] for name in runs}
        for i in range(repeats + 2):  # two warm-ups (numba loads its kernels, connections open)
            for name in ("in-process", "bare", "remote", "notebook") if i % 2 else ("in-process", "notebook",
                                                                                    "remote", "bare"):
                clock = time.thread_time if name in ("bare", "remote") else time.process_time
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
        b, p = o["bare"], o["in-process"]
        for name in ("remote", "notebook"):
            r = o[name]
            o[f"{name}_over_bare"] = {"ttft_ms": r["ttft_ms"] - b["ttft_ms"], "tok_s_ratio": r["tok_s"] / b["tok_s"],
                                      "client_cpu_ms": r["client_cpu_ms"] - b["client_cpu_ms"]}
            if pick:  # the same round's two requests compared, then the median: less of the drifting load
                pairs = list(zip(rows[name], rows["bare"]))
                o[f"{name}_over_bare"].update(paired_ttft_ms=pick(x["ttft_ms"] - y["ttft_ms"] for x, y in pairs),
                                              paired_tok_s_ratio=pick(x["tok_s"] / y["tok_s"] for x, y in pairs))
        o["served_over_in_process"] = {"tok_s_ratio": b["tok_s"] / p["tok_s"], "ttft_ms": b["ttft_ms"] - p["ttft_ms"],
                                       "server_cpu_ms_over_engine": b["server_cpu_ms"] - p["client_cpu_ms"]}
        out[stat] = {k: {a: round(v, 3) for a, v in d.items()} for k, d in o.items()}
    out["settings"] = dict(tokens=tokens, repeats=repeats, cpus=os.cpu_count(), load=os.getloadavg())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
