"""What the live view costs: the same edits in a real kernel, with the streaming widget (%%spark) and without it
(spark_nb.edit in a cell), alternating, on the built-in model; and how long the first token takes to reach the
widgets.

    python bench/notebook_streaming.py [--rounds 5]

Prints decode tok/s (generated tokens, speculative decoding as the magic uses it) median over the rounds, both
ways, their ratio, and the first widget update's delay after the first token (median, max). A ratio, measured in
one kernel, never a wall-clock limit.
"""
from __future__ import annotations

import argparse
import ast
import statistics
import textwrap

import jupyter_client

CELLS = [
    ("add a docstring", "def moving_average(values, window):\n    result = []\n"
     "    for i in range(len(values) - window + 1):\n        result.append(sum(values[i:i + window]) / window)\n"
     "    return result\n"),
    ("add type hints", "def scale(points, factor, origin):\n    out = []\n    for x, y in points:\n"
     "        out.append(((x - origin[0]) * factor, (y - origin[1]) * factor))\n    return out\n"),
    ("use f-strings", "def report(name, done, total):\n    pct = 100.0 * done / total\n"
     "    return '%s: %d of %d (%.1f%%)' % (name, done, total, pct)\n"),
]

SETUP = textwrap.dedent("""
    %load_ext spark_nb
    import spark_nb
    from spark_nb.notebook import view as _view
    _first_updates = []
    _finish = _view.LiveEdit.finish
    def _recording_finish(self, *a, **k):
        _first_updates.append(self.first_update_ms)
        return _finish(self, *a, **k)
    _view.LiveEdit.finish = _recording_finish
    spark_nb.edit("x = 1\\n", "add a docstring")   # load the model and the kernels once
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        def run(code, **kw):
            reply = kc.execute_interactive(code, timeout=300, output_hook=lambda msg: None, **kw)
            assert reply["content"]["status"] == "ok", reply["content"]
            return reply["content"].get("user_expressions", {})

        def value(expr):  # floats, lists of them and None: their repr is a Python literal
            return ast.literal_eval(run("", user_expressions={"v": expr})["v"]["data"]["text/plain"])

        run(SETUP)
        plain, widget = [], []
        for _ in range(args.rounds):
            for instruction, cell in CELLS:
                run(f"_r = spark_nb.edit({cell!r}, {instruction!r}, exact=False)")
                plain.append(value("_r.stats.tok_per_s"))
                run(f"%%spark --preview --no-context --model-only {instruction}\n{cell}")
                widget.append(value("get_ipython().magics_manager.registry['SparkMagics'].session.history[-1]"
                                    ".result.stats.tok_per_s"))
        first = [x for x in value("_first_updates") if x is not None]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    p, w = statistics.median(plain), statistics.median(widget)
    print(f"{len(plain)} edits each way, decode tok/s median: without the view {p:,.0f}, with it {w:,.0f} "
          f"-> the view costs {100 * (1 - w / p):.1f}% of decode throughput")
    print(f"first widget update after the first token: median {statistics.median(first):.1f} ms, "
          f"max {max(first):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
