"""Cold start: from a fresh Python process to the built-in model's first token, and to its second (the first
decode step), with a warm numba cache and with an empty one.

    python bench/cold_start.py [--runs 3]

Each run is a new interpreter (`python -c`: import spark_nb, load the built-in model, stream two tokens), timed
from before it starts to each token it reports, so Python's own start-up counts. Warm: numba's usual cache, filled
first by `spark-nb warmup`. Empty: NUMBA_CACHE_DIR pointing at a new temporary folder, so every kernel compiles.
Prints the median and the range of each; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TWO_TOKENS = ("import time, spark_nb; e = spark_nb.load(); "
              "s = iter(e.stream('def add(a, b):', max_new_tokens=2, ignore_eos=True)); "
              "next(s); print(time.time()); next(s); print(time.time())")


def token_times_s(env: dict) -> tuple[float, float]:
    """Seconds from before the process starts to its first and to its second token."""
    t0 = time.time()  # wall clock: compared with the child's own
    out = subprocess.run([sys.executable, "-c", TWO_TOKENS], env=env, check=True, capture_output=True, text=True)
    first, second = (float(line) - t0 for line in out.stdout.split())
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "spark_nb.cli", "warmup"], check=True, capture_output=True)
    warm = [token_times_s(dict(os.environ)) for _ in range(args.runs)]
    empty = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            empty.append(token_times_s({**os.environ, "NUMBA_CACHE_DIR": cache}))
    for name, runs in (("warm numba cache", warm), ("empty numba cache", empty)):
        for which, times in (("first", [r[0] for r in runs]), ("second", [r[1] for r in runs])):
            print(f"{name}: {which} token {statistics.median(times):.2f} s median "
                  f"({min(times):.2f}-{max(times):.2f} s over {len(times)} fresh processes)")


if __name__ == "__main__":
    main()
