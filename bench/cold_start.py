"""Cold start: from a fresh Python process to the built-in model's first token, with a warm numba cache and with
an empty one.

    python bench/cold_start.py [--runs 3]

Each run is a new interpreter (`python -c`: import spark_nb, load the built-in model, stream one token) timed
from outside, so Python's own start-up counts. Warm: numba's usual cache, filled first by `spark-nb warmup`.
Empty: NUMBA_CACHE_DIR pointing at a new temporary folder, so every kernel compiles. Prints the median and the
range of each; nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

FIRST_TOKEN = ("import spark_nb; e = spark_nb.load(); "
               "next(iter(e.stream('def add(a, b):', max_new_tokens=1)))")


def first_token_s(env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", FIRST_TOKEN], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "spark_nb.cli", "warmup"], check=True, capture_output=True)
    warm = [first_token_s(dict(os.environ)) for _ in range(args.runs)]
    empty = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            empty.append(first_token_s({**os.environ, "NUMBA_CACHE_DIR": cache}))
    for name, times in (("warm numba cache", warm), ("empty numba cache", empty)):
        print(f"{name}: first token {statistics.median(times):.2f} s median "
              f"({min(times):.2f}-{max(times):.2f} s over {len(times)} fresh processes)")


if __name__ == "__main__":
    main()
