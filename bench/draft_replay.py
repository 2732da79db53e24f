"""How far drafting could take speculative edits: the bench's greedy answers replayed against drafters, offline.

    python bench/draft_replay.py MODEL [--limit N] [--json FILE]

Runs `spark-nb bench --edits`'s tasks once with plain greedy decoding (each edit after the one before it, as the
bench does, so the prompt's fixed start is in the cache), keeping each edit's prompt tokens, its answer's tokens and
its TTFT, and times on this machine what a verification forward of r rows costs in decode steps. Then it replays
each answer against drafters, counting forwards and their rows exactly as `Engine.stream(speculative=True)` would
take them (greedy output is fixed, so acceptance is known without running the model again):

- "prompt lookup": `speculation.PromptLookup` as the engine uses it (its free rows the engine's own measure);
- "clairvoyant": each forward drafts exactly the longest run of tokens the answer copies next from anywhere
  earlier (the prompt or the answer so far): no drafter that looks only backwards does better.

The modelled speedup of an edit is (TTFT + its tokens' decode steps) / (TTFT + its forwards' cost), its median
over the edits what `spark-nb bench --edits` reports as measured (where it also pays Python's own time per token).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from spark_nb.edits import edit
from spark_nb.edits.bench import _tasks
from spark_nb.edits.edit import get_engine
from spark_nb.engine.events import Done
from spark_nb.engine.speculation import PromptLookup

ROWS = (1, 2, 4, 8, 16, 32, 64)  # verification forwards timed; costs between them interpolated


def capture(engine, tasks) -> list[dict]:
    """Each task's prompt ids, answer ids (the end-of-answer token appended) and TTFT, plain greedy."""
    answers, stream = [], engine.stream

    def kept(ids, *args, **kwargs):
        events = stream(ids, *args, **kwargs)
        inner = events._events

        def watched():
            for event in inner:
                if isinstance(event, Done):
                    prompt = engine.encode(ids) if isinstance(ids, str) else list(ids)
                    end = [] if event.reason == "length" else [engine.tokenizer.eos_token_ids[0]]
                    answers.append(dict(prompt=[int(t) for t in prompt], answer=[*event.token_ids, *end],
                                        ttft_s=event.stats.ttft_s))
                yield event

        events._events = watched()
        return events

    engine.stream = kept
    captured = []
    try:
        for i, task in enumerate(tasks):
            other = tasks[i - 1]
            edit(other.before, other.instruction, model=engine, context=other.context, max_new_tokens=1, exact=False)
            answers.clear()
            edit(task.before, task.instruction, model=engine, context=task.context, family=task.family,
                 speculative=False, exact=False)
            captured.append(dict(family=task.family, **answers[-1]))
    finally:
        engine.stream = stream
    return captured


def forward_costs(engine, repeats: int = 5) -> dict[int, float]:
    """rows -> a verification forward's time over a decode step's, medians of alternated runs."""
    pos = 64
    times = {r: [] for r in ROWS}
    for _ in range(repeats + 1):  # the first round compiles or loads the kernels
        for r in ROWS:
            t0 = time.perf_counter()
            if r == 1:
                engine._decode_step(0, pos)
            else:
                engine._prefill(np.zeros(r, np.int64), pos, np.arange(r))
            times[r].append(time.perf_counter() - t0)
    step = statistics.median(times[1][1:])
    return {r: statistics.median(t[1:]) / step for r, t in times.items()} | {"step_s": step}


def cost(costs: dict, rows: int) -> float:
    """A forward of `rows` rows in decode steps, interpolated between the timed row counts."""
    return float(np.interp(rows, ROWS, [costs[r] for r in ROWS]))


def replay(prompt: list[int], answer: list[int], costs: dict, drafter=None) -> tuple[int, float]:
    """(forwards, their cost in decode steps) to produce answer[1:] after the prompt's forward gave answer[0]:
    with `drafter` (a PromptLookup over the prompt) as the engine drafts, else clairvoyantly."""
    seen = [*prompt, answer[0]]
    if drafter is not None:
        drafter.extend(answer[:1])
    i, forwards, steps = 0, 0, 0.0
    while i < len(answer) - 1:
        rest = answer[i + 1 :]
        if drafter is not None:
            draft = drafter.draft()  # as long as the engine drafts: it does not know where the answer ends
        else:  # the longest run the answer copies next from anywhere before it
            longest = max((_common(seen, s, rest) for s in range(len(seen))), default=0)
            draft = rest[:longest]
        accepted = _common(draft, 0, rest)
        forwards, steps = forwards + 1, steps + cost(costs, len(draft) + 1)
        if drafter is not None:
            if draft:
                drafter.length.judge(len(draft), accepted)
            drafter.extend(rest[: accepted + 1])
        seen += rest[: accepted + 1]
        i += accepted + 1
    return forwards, steps


def _common(seq: list[int], start: int, rest: list[int]) -> int:
    n = 0
    while n < len(rest) and start + n < len(seq) and seq[start + n] == rest[n]:
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--limit", type=int, default=1, help="tasks per edit family (as bench --edits)")
    parser.add_argument("--json", help="write the captured answers, costs and results here")
    args = parser.parse_args()
    engine = get_engine(args.model)
    tasks, _ = _tasks(engine, None, args.limit)
    edit(tasks[0].before, tasks[0].instruction, model=engine, max_new_tokens=4, exact=False)  # kernels compiled
    captured = capture(engine, tasks)
    costs = forward_costs(engine)
    print(f"{engine.name} ({engine.dtype}), {len(captured)} edits, free rows {engine.free_rows}, decode step "
          f"{1e3 * costs['step_s']:.1f} ms; forward cost in steps: "
          + ", ".join(f"{r} rows {costs[r]:.2f}" for r in ROWS))
    results = {}
    for name in ("prompt lookup", "clairvoyant"):
        speedups, forwards = [], 0
        for c in captured:
            drafter = PromptLookup(c["prompt"], engine.free_rows) if name == "prompt lookup" else None
            n, steps = replay(c["prompt"], c["answer"], costs, drafter)
            plain = c["ttft_s"] + (len(c["answer"]) - 1) * costs["step_s"]
            speedups.append(plain / (c["ttft_s"] + steps * costs["step_s"]))
            forwards += n
        results[name] = dict(forwards=forwards, median=statistics.median(speedups),
                             p10=float(np.percentile(speedups, 10)), p90=float(np.percentile(speedups, 90)))
        r = results[name]
        print(f"{name:14s} {forwards:4d} forwards, modelled speedup median {r['median']:.2f}x "
              f"(p10 {r['p10']:.2f}x, p90 {r['p90']:.2f}x)")
    ttft = statistics.median(c["ttft_s"] for c in captured)
    print(f"TTFT median {1e3 * ttft:.0f} ms; plain decode {1 / costs['step_s']:.1f} tok/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(model=args.model, costs=costs, results=results, captured=captured), f)


if __name__ == "__main__":
    main()
