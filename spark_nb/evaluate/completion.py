"""Inline completion on held-out library code: `spark-nb eval --completion`.

    result = completion()                       # built-in model, 300 cursors of the test split
    print(format_completion(result))

Cursors are drawn in the held-out units as spark_nb.train.fim draws them for training (the end of a name, an open
bracket, after `= `, the first lines of a block, the start of a line), one per unit, seeded, spread over the split;
the unit before it in the same file is the earlier cell. Each is completed the way the server completes
(spark_nb.server.complete: FIM in the model's order where the tokenizer has its tokens, else continuation of the
text before the cursor; greedy; the suggestion cut where `Boundary` ends it) and scored against the text that was
there:

    exact line  the suggestion's first line equals the middle's first line (the rest of the cursor's line, or a
                block's first body line), trailing spaces aside
    accepted    characters a user accepts: the common prefix of the suggestion and the middle
    (also: the share of suggestions that are empty, and of middles matched whole)
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from ..server.complete import Suggestion, fim_order
from ..train import fim

__all__ = ["completion", "completion_cases", "score_suggestion", "suggest", "format_completion", "test_units"]

MAX_TOKENS = 48  # per suggestion: enough for a line or three


def test_units(data=None, split: str = "test", log: Callable[[str], None] | None = None) -> tuple[list[dict], str]:
    """({"text", "source", "path"} units of the split in file order, where they came from): the data folder's
    plain_{split}.jsonl (default artifacts/train/data when it has it), else the split rebuilt from the corpus."""
    from .sets import DATA
    from ..train.train import read_records

    if data is None and any((DATA / f"plain_{split}.jsonl{gz}").exists() for gz in ("", ".gz")):
        data = DATA
    if data is not None:
        return read_records(Path(data) / f"plain_{split}.jsonl"), f"{Path(data) / f'plain_{split}.jsonl'}"
    from ..train.corpus import build_corpus

    if log:
        log(f"no data folder ({DATA}): building the {split} split from this machine's corpus ...")
    corpus = build_corpus()
    units = [{"text": u.text, "source": u.source, "path": u.path} for u in corpus.split(split)]
    return units, f"the {split} split rebuilt from this machine's corpus ({corpus.n_files:,} files)"


def completion_cases(units: list[dict], n: int = 300, seed: int = 0) -> list[fim.FimExample]:
    """n cursors, at most one per unit, from units spread over the whole split (a seeded sample), each with the unit
    before it in the same file as its earlier cell."""
    rng = random.Random(seed)
    order = list(range(len(units)))
    rng.shuffle(order)
    cases = []
    for i in order:
        u = units[i]
        c = fim.draw(fim.cursors(u["text"]), rng)
        if c is None:
            continue
        prev = units[i - 1] if i > 0 else None
        same = prev is not None and (prev.get("source"), prev.get("path")) == (u.get("source"), u.get("path"))
        cases.append(fim.example(u["text"], c, prev["text"] if same else ""))
        if len(cases) == n:
            break
    return cases


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def score_suggestion(suggestion: str, middle: str) -> dict:
    """One suggestion against the text that was there: exact first line, accepted characters, whole middle."""
    first = suggestion.split("\n", 1)[0].rstrip()
    return {"exact_line": first == middle.split("\n", 1)[0].rstrip(),
            "accepted": _common_prefix(suggestion, middle),
            "whole": suggestion.rstrip() == middle.rstrip(),
            "empty": not suggestion.strip(),
            "chars": len(suggestion), "middle_chars": len(middle)}


def suggest(engine, case: fim.FimExample, max_tokens: int = MAX_TOKENS, style: str = "auto") -> tuple[str, int]:
    """(the suggestion as the server shows it, tokens generated). style: "auto" (the server's choice), or
    "continuation" (the text before the cursor only, even for a FIM model)."""
    tokenizer = _NoFim() if style == "continuation" else engine.tokenizer
    suggestion = Suggestion(tokenizer, case.prefix, case.suffix, case.context)
    n = 0
    stream = engine.stream(suggestion.text, max_new_tokens=max_tokens)
    for event in stream:
        if hasattr(event, "reason"):
            break
        n += 1
        if suggestion.add(event.text)[1]:
            stream.cancel()
            break
    return suggestion.shown, n


class _NoFim:
    def token_to_id(self, token):
        return None


def completion(model=None, data=None, split: str = "test", n: int = 300, seed: int = 0, style: str = "auto",
               max_tokens: int = MAX_TOKENS, log: Callable[[str], None] | None = None, **options) -> dict:
    """Complete n cursors of the split with `model` (an Engine, a model folder, None: the built-in model) and
    aggregate, overall and per cursor kind."""
    from ..edits import get_engine

    engine = get_engine(model, options.pop("wafer", "wse3"), options.pop("dtype", "int8"))
    units, source = test_units(data, split, log)
    cases = completion_cases(units, n, seed)
    order = fim_order(engine.tokenizer) if style == "auto" else None
    used = f"fim ({order})" if order else "continuation"
    if log:
        log(f"{len(cases)} cursors from {source}; prompts: {used}")
    suggest(engine, cases[0], 2, style)  # compile the kernels before anything is timed
    rows = []
    t0 = time.perf_counter()
    for i, case in enumerate(cases):
        start = time.perf_counter()
        text, tokens = suggest(engine, case, max_tokens, style)
        rows.append({"kind": case.kind, **score_suggestion(text, case.middle), "tokens": tokens,
                     "seconds": time.perf_counter() - start, "suggestion": text, "middle": case.middle})
        if log and (i + 1) % 100 == 0:
            log(f"{i + 1}/{len(cases)} cursors ({time.perf_counter() - t0:.0f} s)")
    kinds = {k: _aggregate([r for r in rows if r["kind"] == k]) for k in fim.KINDS if any(r["kind"] == k for r in rows)}
    return {"model": str(getattr(engine, "path", engine)), "prompts": used, "split": split, "source": source,
            "seed": seed, "max_tokens": max_tokens, "all": _aggregate(rows), "kinds": kinds, "rows": rows,
            "seconds": time.perf_counter() - t0}


def _aggregate(rows: list[dict]) -> dict:
    n = len(rows)
    if not n:
        return {"n": 0}
    return {"n": n, "exact_line": sum(r["exact_line"] for r in rows) / n,
            "accepted": sum(r["accepted"] for r in rows) / n,
            "accepted_share": sum(r["accepted"] for r in rows) / max(1, sum(r["middle_chars"] for r in rows)),
            "whole": sum(r["whole"] for r in rows) / n, "empty": sum(r["empty"] for r in rows) / n,
            "chars": sum(r["chars"] for r in rows) / n, "middle_chars": sum(r["middle_chars"] for r in rows) / n}


def format_completion(result: dict) -> str:
    """A Markdown table: per cursor kind and overall."""
    lines = [f"`spark-nb eval --completion` on the {result['split']} split ({result['all']['n']} cursors, "
             f"{result['prompts']} prompts, greedy, at most {result['max_tokens']} tokens, cut at the server's "
             "boundary):", "",
             "| cursor | n | exact line | accepted chars | of the middle | whole middle | empty | suggestion chars |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name, a in [*result["kinds"].items(), ("**all**", result["all"])]:
        lines.append(f"| {name} | {a['n']} | {a['exact_line']:.1%} | {a['accepted']:.1f} | {a['accepted_share']:.0%} "
                     f"| {a['whole']:.1%} | {a['empty']:.0%} | {a['chars']:.1f} |")
    return "\n".join(lines)
