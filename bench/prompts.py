"""Chat prompt designs compared on a real instruct model with the project's evaluation (issue 20, deliverable 4).

    python bench/prompts.py MODEL.gguf [--designs baseline,system,...] [--limit N] [--library N]
                            [--families add_docstrings,...] [--out bench/results/NAME.json]

Each design is one way to build the chat messages (system prompt, optional worked example, the cell, the
instruction). The bench swaps it in for `spark_nb.edits.prompt.chat_messages`, then runs `evaluate.evaluate` with
`model_only=True` on the same tasks for every design: the notebook set's generative families (all their tasks),
a few mechanical ones, and `--library N` tasks per generative family of the library set. Per family it keeps the
useful, applied and parse rates and the median seconds per edit; the JSON is rewritten after every design, so a
long run can be read while it goes. A benchmark: nothing is asserted.

Designs (each one change from `baseline`, today's prompt at commit fa4a7de, unless its name joins several):
  baseline           system "apply the change and nothing else, keep everything else exactly as it is", the cell
                     in a fence, then "Instruction: ...".
  current            whatever spark_nb.edits.prompt.chat_messages is now (the chosen design once it is in).
  system             a system prompt that asks for the change to be made, forbids made-up imports/data/usage and
                     asks for the whole cell, no explanation.
  keep               a system prompt that says to copy every other line, the code after the functions included
                     (the 0.5B drops a cell's trailing calls and prints when it adds docstrings or comments).
  first              the instruction before the cell.
  example            one short worked example (a user/assistant pair before the real request): a docstring
                     added to a two-line function.
  callexample        the same example with a call after the function, kept in the answer.
  codeonly           "Reply with only the code block, no explanation." at the end of the user message.
  open               the prompt ends with the answer's opening fence (prompt.OPEN_ANSWER): the model starts
                     inside the code block, so it cannot answer with prose first.
  family             the worked example chosen by the family the instruction asks for (prompt.FAMILY_EXAMPLES,
                     `recognise`): comments, type hints, f-strings, removed comments shown on one small cell; other
                     instructions keep the design's own example.
Joined names (system+first, system+example, ...) apply several changes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import spark_nb
from spark_nb.edits import prompt
from spark_nb.edits.recognise import recognise
from spark_nb.evaluate.run import evaluate
from spark_nb.evaluate.sets import library_tasks, notebook_tasks, sample

GENERATIVE = ("add_docstrings", "add_comments", "add_type_hints", "add_error_handling")
MECHANICAL = ("to_fstring", "remove_comments", "rename_variable")

BASE_SYSTEM = ("You edit Python code in a Jupyter notebook cell. Apply the requested change and nothing else, keep "
               "everything else exactly as it is, and reply with the whole new cell in one ```python fenced block.")
NEW_SYSTEM = ("You edit one cell of a Jupyter notebook. Make the change the user asks for: the answer must differ "
              "from the cell wherever the instruction requires it. Do not add imports, example data or usage that "
              "the instruction does not ask for. Reply with the whole new cell in one ```python fenced block.")
KEEP_SYSTEM = ("You edit one cell of a Jupyter notebook. Make the change the instruction asks for, and copy every "
               "other line of the cell into your answer unchanged, including the code after the functions (calls, "
               "prints, plots): your answer is the whole new cell. Reply with it in one ```python fenced block.")
CALL_CELL = "def area(w, h):\n    return w * h\n\n\nprint(area(3, 4))\n"
CALL_ANSWER = 'def area(w, h):\n    """The area of a w by h rectangle."""\n    return w * h\n\n\nprint(area(3, 4))\n'
CODE_ONLY = "Reply with only the code block, no explanation."
EXAMPLE_CELL = "def area(w, h):\n    return w * h\n"
EXAMPLE_INSTRUCTION = "add a docstring"
EXAMPLE_ANSWER = 'def area(w, h):\n    """The area of a w by h rectangle."""\n    return w * h\n'


def _cell(code: str, label: str = "The cell:") -> str:
    fence = prompt._fence(code)
    return f"{label}\n\n{fence}python\n{code.rstrip()}\n{fence}"


def _context(context) -> list[str]:
    if not context:
        return []
    cells = "\n\n".join(f"{prompt._fence(c)}python\n{c.rstrip()}\n{prompt._fence(c)}" for c in context)
    return [f"Earlier cells of the notebook, for reference (do not repeat them):\n\n{cells}"]


def design(name: str):
    """A chat_messages(code, instruction, context) for the design `name` (joined with '+')."""
    if name == "current":
        return prompt.chat_messages
    changes = set(name.split("+")) - {"baseline"}
    unknown = changes - {"system", "keep", "first", "example", "callexample", "codeonly", "open", "family"}
    if unknown:
        raise ValueError(f"unknown design parts {sorted(unknown)}")

    def user(code, instruction, context):
        parts = _context(context)
        if "first" in changes:
            parts += [f"Instruction: {instruction}", _cell(code)]
        else:
            parts += [_cell(code), f"Instruction: {instruction}"]
        if "codeonly" in changes:
            parts.append(CODE_ONLY)
        return "\n\n".join(parts)

    def messages(code, instruction, context=()):
        system = KEEP_SYSTEM if "keep" in changes else NEW_SYSTEM if "system" in changes else BASE_SYSTEM
        out = [{"role": "system", "content": system}]
        own = prompt.FAMILY_EXAMPLES.get(recognise(instruction)) if "family" in changes else None
        generic = (("example", EXAMPLE_CELL, EXAMPLE_ANSWER), ("callexample", CALL_CELL, CALL_ANSWER))
        examples = [own] if own else [(cell, EXAMPLE_INSTRUCTION, answer) for part, cell, answer in generic
                                      if part in changes]
        for cell, ask, answer in examples:
            out += [{"role": "user", "content": user(cell, ask, ())},
                    {"role": "assistant", "content": f"```python\n{answer}```"}]
        return out + [{"role": "user", "content": user(code, instruction, context)}]

    return messages


def tasks(limit: int | None, library: int, families, notebook: bool = True) -> dict[str, list]:
    """{"notebook": tasks, "library": tasks}: the same for every design of a run. The library set is rebuilt from
    the packages installed on this machine: installing one changes it, so compare designs within one run."""
    sets = {}
    if notebook:
        nb, _ = notebook_tasks()
        sets["notebook"] = [t for t in sample(nb, limit) if t.family in families]
    if library:
        lib, _ = library_tasks(log=lambda s: print(s, file=sys.stderr, flush=True))
        sets["library"] = sample([t for t in lib if t.family in GENERATIVE and t.family in families], library)
    return sets


def summary(r: dict) -> dict:
    gen = [r["families"][f] for f in GENERATIVE if f in r["families"]]
    n_gen = sum(f["n"] for f in gen)
    return {"families": {f: {k: v[k] for k in ("n", "useful", "applied", "parse", "change", "median_s")}
                         for f, v in r["families"].items()},
            "generative_n": n_gen,
            "generative_useful": sum(f["useful"] * f["n"] for f in gen) / n_gen if n_gen else None,
            "median_s": r["all"]["median_s"], "seconds": r["seconds"]}


def _record(path):
    """Wrap spark_nb.edits.edit (what evaluate calls) so every edit's answer lands in a JSONL file."""
    import spark_nb.edits as edits

    plain = edits.edit
    log = open(path, "a", encoding="utf-8")

    def edit(code, instruction, **options):
        r = plain(code, instruction, **options)
        if options.get("max_new_tokens") != 2:  # not evaluate's warm-up
            log.write(json.dumps({"design": _record.design, "family": options.get("family"),
                                  "instruction": instruction, "before": code, "text": r.text, "ok": r.ok,
                                  "error": r.error, "tokens": r.stats.tokens if r.stats else None}) + "\n")
            log.flush()
        return r

    edits.edit = edit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--designs", default="baseline,system,first,example,codeonly")
    ap.add_argument("--limit", type=int, default=None, help="notebook tasks per family (default: all)")
    ap.add_argument("--library", type=int, default=10, help="library tasks per generative family (0: none)")
    ap.add_argument("--no-notebook", action="store_true", help="the library set only")
    ap.add_argument("--families", default=",".join(GENERATIVE + MECHANICAL))
    ap.add_argument("--out", default=None)
    ap.add_argument("--dump", default=None, help="a JSONL file: every edit's instruction, answer and error")
    args = ap.parse_args(argv)
    families = args.families.split(",")
    t = time.perf_counter()
    engine = spark_nb.load(args.model)
    print(f"load {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    sets = tasks(args.limit, args.library, families, notebook=not args.no_notebook)
    print(", ".join(f"{k}: {len(v)} tasks" for k, v in sets.items()), file=sys.stderr, flush=True)
    out = Path(args.out) if args.out else None
    results = {"model": args.model, "tasks": {k: len(v) for k, v in sets.items()}, "designs": {}}
    original = prompt.chat_messages, prompt.OPEN_ANSWER
    if args.dump:
        _record(args.dump)
    for name in args.designs.split(","):
        _record.design = name
        prompt.chat_messages = design(name)
        if name != "current":
            prompt.OPEN_ANSWER = "open" in name.split("+")
        try:
            rows = {k: summary(evaluate(engine, v, model_only=True)) for k, v in sets.items()}
        finally:
            prompt.chat_messages, prompt.OPEN_ANSWER = original
        results["designs"][name] = rows
        for k, row in rows.items():
            print(f"{name:22} {k:8} generative useful {row['generative_useful']:.2f}  median {row['median_s']:.2f}s  "
                  + "  ".join(f"{f}={v['useful']:.2f}" for f, v in row["families"].items()), flush=True)
        if out:
            out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
