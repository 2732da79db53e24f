"""`spark-nb bench --edits`: edits of held-out cells, plain greedy against speculative, on one engine.

    result = run(limit=6)                 # the built-in model on its test sample; a JSON-ready dict
    result = run("qwen2.5-coder:0.5b")    # a chat model on the evaluation's notebook cells
    print(format_table(result))

Every task is edited twice in the same process, plain (one decode step per generated token) then speculative
(drafts from the cell, verified in one forward), and the two outputs must be identical. Before each of the two,
the engine edits the task before it for one token, so both start from the cache a user's next edit finds: the
prompt's fixed start held (a chat model's system message and worked example), the cell not. Effective tok/s
counts the edited cell's tokens (generated and fed: what the user sees appear) over the whole edit, prompt
included; TTFT is the prompt's forward and the first token. The ceiling is what speculation could reach on an
edit if everything after the first token were free: the plain edit's time over its TTFT (the prompt holds the
whole cell, and no draft shortens its forward). Speeds are reported as medians, p90 and ratios, never asserted.

The tasks: a data folder's test split (--data), else the test sample shipped in the model's folder (the built-in
model), else the evaluation's notebook cells through every edit family that applies (written for the evaluation,
never trained on: any model).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["run", "format_table", "SAMPLE"]

SAMPLE = "test_sample.jsonl"  # the test-split sample export writes into a model folder
SHORT = 20  # lines: the cells the "one edit in a second" figure is about


def _tasks(engine, data, limit) -> tuple[list, str]:
    from ..evaluate.sets import notebook_tasks, sample
    from ..train.tasks import read_jsonl, read_split, select

    if data is not None:
        return select(read_split(data, "test"), limit), f"{Path(data) / 'test.jsonl'}"
    shipped = Path(getattr(engine, "path", "")) / SAMPLE
    if shipped.is_file():
        return select(read_jsonl(shipped), limit), str(shipped)
    tasks, where = notebook_tasks()
    return sample(tasks, limit), where


def run(model=None, data=None, limit: int | None = 6, log=None) -> dict:
    from . import edit
    from .edit import get_engine

    engine = get_engine(model)
    remote = getattr(engine, "remote", False)  # a server decodes its own way: its edits are timed, not compared
    tasks, where = _tasks(engine, data, limit)
    edit(tasks[0].before, tasks[0].instruction, model=engine, max_new_tokens=4, exact=False)  # kernels compiled
    rows = []
    for i, task in enumerate(tasks):
        timed = {}
        for mode in ("plain",) if remote else ("plain", "speculative"):
            other = tasks[i - 1]  # the edit before this one: its prompt in the cache, as a user's last edit leaves it
            edit(other.before, other.instruction, model=engine, context=other.context, max_new_tokens=1, exact=False)
            t0 = time.perf_counter()
            r = edit(task.before, task.instruction, model=engine, context=task.context, family=task.family,
                     speculative=mode == "speculative", exact=False)  # the model's speed: no exact refactors
            timed[mode] = (time.perf_counter() - t0, r)
        (t_plain, plain), (t_fast, fast) = timed["plain"], timed.get("speculative", timed["plain"])
        ps, fs = plain.stats, fast.stats  # None for an edit that failed before its first token: 0 below
        # a server streams chunks, not tokens: count the answer's tokens as the server's model would
        out = engine.count_tokens(plain.text) if remote else getattr(ps, "tokens", 0) + plain.fed_tokens
        ttft = getattr(ps, "ttft_s", 0.0)
        rows.append(dict(family=task.family, lines=task.before.count("\n") + 1, out_tokens=out,
                         generated=getattr(ps, "tokens", 0), error=plain.error,
                         identical=fast.text == plain.text and fast.proposed == plain.proposed,
                         plain_s=t_plain, speculative_s=t_fast, plain_tok_s=out / t_plain, speculative_tok_s=out / t_fast,
                         speedup=t_plain / t_fast, ceiling=t_plain / ttft if ttft else float("nan"), plain_ttft_s=ttft,
                         **{key: getattr(fs, key, 0) for key in ("ttft_s", "wafer_ttft_s", "prompt_tokens", "reused",
                                                                 "drafted", "accepted")}))
        if log and (i + 1) % 10 == 0:
            log(f"{i + 1}/{len(tasks)} edits")

    def stat(key, q, among=rows):
        values = [r[key] for r in among if r[key] == r[key]]  # not NaN
        return float(np.percentile(values, q)) if values else float("nan")

    drafted = sum(r["drafted"] for r in rows)
    short = [r for r in rows if r["lines"] <= SHORT]
    return dict(model=str(getattr(engine, "path", model)), dtype=getattr(engine, "dtype", ""), tasks=len(rows),
                source=where, remote=remote, failed=sum(r["error"] is not None for r in rows), identical=sum(r["identical"] for r in rows),
                plain_tok_s=dict(median=stat("plain_tok_s", 50), p90=stat("plain_tok_s", 90)),
                speculative_tok_s=dict(median=stat("speculative_tok_s", 50), p90=stat("speculative_tok_s", 90)),
                speedup=dict(median=stat("speedup", 50), p10=stat("speedup", 10), p90=stat("speedup", 90)),
                ceiling=dict(median=stat("ceiling", 50), p10=stat("ceiling", 10), p90=stat("ceiling", 90)),
                acceptance=sum(r["accepted"] for r in rows) / drafted if drafted else 0.0,
                edit_s=dict(plain=dict(median=stat("plain_s", 50), p90=stat("plain_s", 90)),
                            speculative=dict(median=stat("speculative_s", 50), p90=stat("speculative_s", 90)),
                            short_tasks=len(short), short_speculative_median=stat("speculative_s", 50, short)),
                ttft_ms=dict(median=1e3 * stat("ttft_s", 50), p90=1e3 * stat("ttft_s", 90)),
                plain_ttft_ms=dict(median=1e3 * stat("plain_ttft_s", 50), p90=1e3 * stat("plain_ttft_s", 90)),
                reused=sum(r["reused"] for r in rows) / max(1, sum(r["prompt_tokens"] for r in rows)),
                wafer_ttft_ms=dict(median=1e3 * stat("wafer_ttft_s", 50)), rows=rows)


def format_table(result: dict) -> str:
    p, s, x, c = result["plain_tok_s"], result["speculative_tok_s"], result["speedup"], result["ceiling"]
    e, t = result["edit_s"], result["ttft_ms"]
    head = f"edits: {result['tasks']} held-out tasks ({result['source']}), {result['model']} ({result['dtype']}); "
    if result["remote"]:  # one run per task: the server's own decoding, nothing to compare
        return "\n".join([
            head + f"a server's model, each edit run once; {result['failed']} failed",
            f"seconds per edit: median {e['plain']['median']:.2f} s (p90 {e['plain']['p90']:.2f}); effective tok/s "
            f"median {p['median']:,.0f} (p90 {p['p90']:,.0f}); TTFT median {result['plain_ttft_ms']['median']:.1f} ms "
            f"(p90 {result['plain_ttft_ms']['p90']:.1f}); speculative decoding is the server's own affair",
        ])
    return "\n".join([
        head + f"identical outputs {result['identical']}/{result['tasks']}",
        "| decoding | effective tok/s median | p90 |", "|---|--:|--:|",
        f"| plain greedy | {p['median']:,.0f} | {p['p90']:,.0f} |",
        f"| speculative | {s['median']:,.0f} | {s['p90']:,.0f} |",
        "",
        f"speculative / plain, per edit: median {x['median']:.2f}x (p10 {x['p10']:.2f}x, p90 {x['p90']:.2f}x); "
        f"draft tokens accepted {result['acceptance']:.0%}",
        f"ceiling, were every token after the first free (plain edit / its TTFT): median {c['median']:.2f}x "
        f"(p10 {c['p10']:.2f}x, p90 {c['p90']:.2f}x)",
        f"seconds per edit: plain median {e['plain']['median']:.2f} s (p90 {e['plain']['p90']:.2f}), speculative "
        f"median {e['speculative']['median']:.2f} s (p90 {e['speculative']['p90']:.2f}); cells of at most {SHORT} "
        f"lines ({e['short_tasks']}): speculative median {e['short_speculative_median']:.2f} s",
        f"TTFT: median {t['median']:.1f} ms, p90 {t['p90']:.1f} ms on this machine "
        f"({result['reused']:.0%} of prompt tokens reused from the cache); "
        f"{result['wafer_ttft_ms']['median']:.3f} ms projected on the wafer",
    ])
