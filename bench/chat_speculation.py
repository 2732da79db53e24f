"""Chat edits on a real model, plain greedy then prompt-lookup speculation, in one process: the same answer?
how much faster per edit? (a benchmark: ratios printed, nothing asserted)

    python bench/chat_speculation.py MODEL.gguf [N_CELLS] [FIRST_CELL]

MODEL: anything spark_nb.load takes (a GGUF file, a folder with a chat template). The cells are the evaluation's
notebook cells of 6-20 lines, the instructions a docstring, f-strings, comments, type hints and a rename, in turn.
"""
import statistics
import sys
import time

import spark_nb
from spark_nb.evaluate.sets import notebook_cells

INSTRUCTIONS = ["add a docstring", "use f-strings", "add comments", "add type hints", "rename df to sales"]


def timed(cell, instruction, engine, speculative):
    t = time.perf_counter()
    result = spark_nb.edit(cell, instruction, model=engine, speculative=speculative, exact=False)
    return time.perf_counter() - t, result


def main(model, n=12, first=0):
    t = time.perf_counter()
    engine = spark_nb.load(model)
    print(f"load {time.perf_counter() - t:.1f}s", flush=True)
    cells = [c for c in notebook_cells() if 6 <= c.count("\n") <= 20][first:first + n]
    rows = []
    for i, cell in enumerate(cells):
        instruction = INSTRUCTIONS[i % len(INSTRUCTIONS)]
        (plain_s, plain), (fast_s, fast) = (timed(cell, instruction, engine, speculative) for speculative in (False, True))
        rows.append((plain_s, fast_s, fast.stats.drafted, fast.stats.accepted, plain.text == fast.text))
        print(f"{i:2} {instruction:18} tokens={fast.stats.tokens:3} plain={plain_s:5.2f}s speculative={fast_s:5.2f}s "
              f"x{plain_s / fast_s:4.2f} drafted={fast.stats.drafted} accepted={fast.stats.accepted} "
              f"same={plain.text == fast.text}", flush=True)
    ratios = sorted(p / f for p, f, *_ in rows)
    print(f"speculative/plain per edit: median {statistics.median(ratios):.2f}x, p10 {ratios[len(ratios) // 10]:.2f}x; "
          f"median edit {statistics.median(r[1] for r in rows):.2f}s against {statistics.median(r[0] for r in rows):.2f}s;"
          f" identical {sum(r[4] for r in rows)}/{len(rows)}; accepted {sum(r[3] for r in rows)}/"
          f"{sum(r[2] for r in rows)} drafted tokens")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
