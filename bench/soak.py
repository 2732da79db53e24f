"""Soak: many consecutive %%spark edits in one real kernel, watching for leaks and drift.

    python bench/soak.py [--edits 1000] [--warmup 200] [--every 100]

A kernel is started over the Jupyter protocol (jupyter_client, the venv's python3 kernel), `%load_ext spark_nb`,
and then runs `%%spark --no-context INSTRUCTION` cells with the built-in model, cycling through EDITS (a few small
cells and instructions). After `--warmup` edits the kernel process is measured, then again every `--every` edits
and at the end. The warm-up covers what fills once and then stays: numba's kernels, IPython's machinery, the
view.LIVE_VIEWS finished views kept live (older ones are frozen and freed), and the allocator's working set, which
settles a few hundred requests in (a 1,000-edit run with a 100-edit warm-up rose 3.6 % over its first 200 edits,
then 0.1 % over the next 800).

What is measured:

- RSS (/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd), OS threads (/proc/PID/status Threads) and
  Python threads (threading.enumerate() in the kernel), all at a quiet point: the engine's helper threads end
  after ~14 ms without a step and start again with the next one, so the probe first waits for them to end;
- every request's outcome (the model's output text, the code, what was applied) from `%spark`'s history: the
  same cell and instruction must give the same outcome every time (greedy decoding, no context).

Prints the measurements; tests/test_soak.py runs the same soak (1,000 edits after a 200-edit warm-up, about a
minute here at ~50 ms an edit) and asserts on them. --no-context keeps each prompt independent of the notebook's
earlier cells (with context, a repeated request legitimately sees different earlier cells).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import time
from dataclasses import dataclass, field

# (cell, instruction): small cells and instructions of different edit families. With the built-in model some
# replace the cell, some leave it unchanged and one is refused by the guard, so every ending of a request is soaked.
EDITS = [
    ("def add(a, b):\n    return a + b\n", "add missing docstrings"),
    ("def scale(vals, k):\n    out = []\n    for v in vals:\n        out.append(v * k)\n    return out\n",
     "use a list comprehension"),
    ("def greet(name):\n    return 'hello %s' % name\n", "use an f-string"),
    ("import sys\nimport os\nimport json\n\nprint(os.sep, sys.argv, json.dumps(1))\n", "Organise the import block."),
    ("def area(w, h):\n    return w * h\n", "add type hints"),
    ("def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    print(s)\n    return s\n",
     "remove debug prints"),
    ("def add_text(text):\n    return text + '!'\n", "rename add_text to shout"),
    ("def mean(xs):\n    return sum(xs) / len(xs\n", "fix syntax error"),
]

# Run in the kernel (silently: not in its history) before each measurement: wait for the engine's helper threads to
# end (they poll ~14 ms for a next step, then return), then report the threads that are left.
QUIET = """
import threading as _t, time as _time
for _ in range(500):
    if not any(th.name.startswith('spark-nb helper') for th in _t.enumerate()):
        break
    _time.sleep(0.01)
"""
PROBE = {
    "pid": "__import__('os').getpid()",
    "threads": "sorted(th.name for th in __import__('threading').enumerate())",
}
# as JSON text: IPython's repr of a long list would stop at 1,000 items ("...")
HISTORY = ("__import__('json').dumps([(r.instruction, r.original, r.applied, r.error, "
           "r.result.text if r.result else None, r.result.code if r.result else None) "
           "for r in get_ipython().magics_manager.registry['SparkMagics'].session.history])")


@dataclass
class Sample:
    edits: int  # edits done after the warm-up when it was taken
    rss_kib: int
    fds: int
    os_threads: int
    threads: list[str]  # Python thread names in the kernel

    HEADER = f"{'edits':>6} {'RSS MiB':>8} {'fds':>4} {'OS thr':>6} {'py thr':>6}"

    def line(self) -> str:
        return f"{self.edits:>6} {self.rss_kib / 1024:>8.1f} {self.fds:>4} {self.os_threads:>6} {len(self.threads):>6}"


@dataclass
class Report:
    samples: list[Sample] = field(default_factory=list)  # the first is after the warm-up
    outcomes: dict = field(default_factory=dict)  # (cell, instruction) -> set of (applied, error, text, code)
    errors: list[str] = field(default_factory=list)  # stderr of %%spark cells, failed replies
    edit_s: float = 0.0  # mean seconds per edit after the warm-up, as the client sees it
    recorded: int = 0  # requests in %spark's history (warm-up included)

    @property
    def baseline(self) -> Sample:
        return self.samples[0]

    def rss_growth(self) -> float:
        """Relative RSS growth from the baseline to the largest later sample."""
        return max(s.rss_kib for s in self.samples) / self.baseline.rss_kib - 1

    def lines(self) -> list[str]:
        out = [Sample.HEADER] + [s.line() for s in self.samples]
        out.append(f"RSS growth after warm-up: {self.rss_growth() * 100:+.2f} % (max over samples vs the first)")
        out.append(f"python threads at quiet points: {self.baseline.threads}")
        varied = {k: v for k, v in self.outcomes.items() if len(v) != 1}
        out.append(f"{self.recorded} requests recorded; {len(self.outcomes)} distinct (cell, instruction) pairs, "
                   f"{len(varied)} of them with more than one outcome")
        out.append(f"{self.edit_s * 1e3:.1f} ms per edit (client round trip, after the warm-up); "
                   f"{len(self.errors)} errors")
        return out


def _proc(pid: int) -> tuple[int, int, int]:
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    rss_kib = int(status["VmRSS"].split()[0])
    return rss_kib, len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"])


def _user(kc, code: str = "", **expressions) -> dict:
    reply = kc.execute_interactive(code, silent=True, user_expressions=expressions, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    values = reply["content"]["user_expressions"]
    failed = {k: v for k, v in values.items() if v["status"] != "ok"}
    assert not failed, failed
    return {k: ast.literal_eval(v["data"]["text/plain"]) for k, v in values.items()}


def _sample(kc, pid: int, edits: int) -> Sample:
    threads = _user(kc, QUIET, **PROBE)["threads"]
    return Sample(edits, *_proc(pid), threads)


def soak(edits: int = 1000, warmup: int = 200, every: int = 100, log=None) -> Report:
    import jupyter_client

    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    report = Report()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("%load_ext spark_nb", timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        pid = _user(kc, **PROBE)["pid"]

        def run(i: int) -> None:
            cell, instruction = EDITS[i % len(EDITS)]
            stderr = []

            def hook(msg):
                if msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
                    stderr.append(msg["content"]["text"])

            reply = kc.execute_interactive(f"%%spark --no-context {instruction}\n{cell}", timeout=120,
                                           output_hook=hook)
            if reply["content"]["status"] != "ok":
                report.errors.append(f"edit {i}: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
            report.errors.extend(f"edit {i}: {text.strip()}" for text in stderr)

        for i in range(warmup):
            run(i)
        report.samples.append(_sample(kc, pid, 0))
        if log:
            log(Sample.HEADER)
            log(report.baseline.line())
        t0 = time.perf_counter()
        for i in range(warmup, warmup + edits):
            run(i)
            done = i + 1 - warmup
            if done % every == 0 or done == edits:
                pause = time.perf_counter()
                report.samples.append(_sample(kc, pid, done))
                t0 += time.perf_counter() - pause  # the probe's own time is not an edit's
                if log:
                    log(report.samples[-1].line())
        report.edit_s = (time.perf_counter() - t0) / max(edits, 1)
        history = json.loads(_user(kc, history=HISTORY)["history"])
        report.recorded = len(history)
        for instruction, original, applied, error, text, code in history:
            report.outcomes.setdefault((original, instruction), set()).add((applied, error, text, code))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=1000, help="edits measured after the warm-up")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--every", type=int, default=100, help="edits between measurements")
    args = parser.parse_args()

    report = soak(args.edits, args.warmup, args.every, log=lambda line: print(line, flush=True))
    print("\n".join(report.lines()[len(report.samples) + 1 :]))  # the table was printed as it was measured
    for error in report.errors[:10]:
        print("error:", error)
    for (cell, instruction), seen in report.outcomes.items():
        print(f"{instruction!r}: {len(seen)} distinct outcome(s); {sorted({s[0] for s in seen})}")


if __name__ == "__main__":
    main()
