"""How long each exact refactor (spark_nb.refactors) takes on a 50-line notebook cell: median and worst of 30 runs,
after one warm-up run, with route() included for the routed form.

    python bench/refactor_timing.py
"""
from __future__ import annotations

import statistics
import time

from spark_nb import refactors

CELL = '''import os
import sys
import json
import math
from collections import defaultdict, Counter
import pdb

DATA_DIR = os.path.join("data", "runs")


def load(path):
    with open(path) as fh:
        rows = json.load(fh)  # a list of dicts
    print("loaded %d rows from %s" % (len(rows), path))
    return rows


def summarise(rows, key="group", scale=1.0):
    total = 0
    groups = defaultdict(list)
    for row in rows:
        value = row["value"] * scale
        total += value
        groups[row[key]].append(value)
        print("row", row, "value", value)
    means = {g: sum(v) / len(v) for g, v in groups.items()}
    print("total is {} over {} groups".format(total, len(groups)))
    return total, means


def spread(values):
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return math.sqrt(var)


class Report:
    def __init__(self, title):
        self.title = title
        self.lines = []

    def add(self, label, number):
        self.lines.append("%-12s %8.3f" % (label, number))

    def show(self):
        print(self.title)
        for line in self.lines:
            print(line)

total, means = summarise(load(os.path.join(DATA_DIR, "a.json")), scale=2.0)
squares = []
for v in means.values():
    if v > 0.05:
        squares.append(v * v)
print(totl)
'''

CASES = [
    ("rename total -> grand_total (module)", lambda c: refactors.rename(c, "total", "grand_total", within="summarise")),
    ("rename scale -> factor (param + kw)", lambda c: refactors.rename(c, "scale", "factor")),
    ("rename method add -> push", lambda c: refactors.rename(c, "add", "push")),
    ("sort_imports", refactors.sort_imports),
    ("remove_unused_imports", refactors.remove_unused_imports),
    ("tidy_imports", refactors.tidy_imports),
    ("remove_debug", refactors.remove_debug),
    ("remove_comments", refactors.remove_comments),
    ("to_fstrings", refactors.to_fstrings),
    ("print_to_logging", refactors.print_to_logging),
    ("loop_to_comprehension", refactors.loop_to_comprehension),
    ("comprehension_to_loop (means = {...})", refactors.comprehension_to_loop),
    ("extract_constant 0.05 -> THRESHOLD", lambda c: refactors.extract_constant(c, "0.05", "THRESHOLD")),
    ("fix_misspelt_name (totl)", refactors.fix_misspelt_name),
    ("route + apply: 'use a list comprehension'", lambda c: refactors.route("use a list comprehension", c).apply(c)),
    ("route + apply: 'fix the typo'", lambda c: refactors.route("fix the typo", c).apply(c)),
    ("route + apply: 'rename scale to factor'", lambda c: refactors.route("rename scale to factor", c).apply(c)),
    ("route: 'add docstrings' (to the model)", lambda c: refactors.route("add docstrings", c)),
]


def main(runs: int = 30):
    print(f"a {len(CELL.splitlines())}-line cell, {runs} runs each\n{'refactor':44} {'median ms':>10} {'max ms':>8}")
    for name, fn in CASES:
        fn(CELL)  # warm-up: first use imports and compiles
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(CELL)
            times.append((time.perf_counter() - t0) * 1e3)
        print(f"{name:44} {statistics.median(times):10.1f} {max(times):8.1f}")


if __name__ == "__main__":
    main()
