"""Same input, same answer: greedy decoding of the built-in model gives the same logits (bit for bit) and the same
edits on every CPU path, with one or two threads, from a cold or a warm numba cache, whatever ran before, in a
script or in a kernel.

The CPU paths: this host's best int8 kernels (AVX-512 VNNI or AMX where it has them), the portable path
(SPARK_NB_NO_VNNI=1), and the whole program compiled for another x86 target (NUMBA_CPU_NAME: AVX2 vectors of 256
bits, AVX-512 ones of 512). With fast-math reassociation LLVM summed each reduction in as many running sums as
the target's vectors have lanes, so an AVX-512 target and an AVX2 one disagreed in the last bits of a norm or a
softmax, and a notebook's saved edit came out differently on the next machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import llvmlite.binding
import pytest

import spark_nb

# (cell, instruction): a few edits whose tokens depend on many logits (several lines, inserted lines), all asked of
# the model (exact=False: "remove the debug prints" would otherwise be an exact refactor, no model involved)
EDITS = [
    ("def area(w, h):\n    return w*h\n", "add type hints"),
    ("def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n",
     "add docstrings"),
    ("import sys\nimport os\n\ndef f(values):\n    print(values)\n    total = sum(values)\n    return total\n",
     "remove the debug prints"),
]
PROMPT = "def average(values):\n    total = 0\n    for v in values:\n        total += v\n" * 6

SCRIPT = """
import hashlib, json, sys
import spark_nb
from spark_nb.wafer import kernels
engine = spark_nb.load()
logits = engine.logits(engine.encode(sys.argv[2]))
edits = [spark_nb.edit(code, instruction, exact=False).text for code, instruction in json.loads(sys.argv[1])]
print(json.dumps({"logits": hashlib.sha256(logits.tobytes()).hexdigest(), "edits": edits,
                  "vnni": kernels.HOST_VNNI}))
"""


def answers(cache, **env):
    """The logits' hash and the edits' texts from a fresh process with `env`, kernels compiled into `cache`."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(EDITS), PROMPT], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def host_has(*features):
    have = llvmlite.binding.get_host_cpu_features()
    return all(have.get(f) for f in features)


# Whole-program targets this host can run: the same source compiled for other vector widths
TARGETS = [name for name, needs in [("x86-64-v3", ("avx2", "fma")),
                                    ("x86-64-v4", ("avx512f", "avx512bw", "avx512vl", "avx512dq"))]
           if host_has(*needs)]


@pytest.mark.slow
def test_every_cpu_path_thread_count_and_cache_state_gives_the_same_tokens(tmp_path):
    cold = answers(tmp_path / "host")
    runs = {
        "warm cache": answers(tmp_path / "host"),
        "one thread": answers(tmp_path / "host", NUMBA_NUM_THREADS="1"),
        "portable int8": answers(tmp_path / "portable", SPARK_NB_NO_VNNI="1"),
    }
    for target in TARGETS:  # the portable int8 path: vpdpbusd is not in every target
        runs[target] = answers(tmp_path / target, SPARK_NB_NO_VNNI="1", NUMBA_CPU_NAME=target, NUMBA_CPU_FEATURES="")
    assert not runs["portable int8"]["vnni"]
    for name, run in runs.items():
        assert run["logits"] == cold["logits"], f"{name}: logits differ from the host's"
        assert run["edits"] == cold["edits"], f"{name}: edits differ from the host's"


def test_an_edit_does_not_depend_on_what_ran_before():
    first = [spark_nb.edit(code, instruction, exact=False) for code, instruction in EDITS]
    # other requests in between: a sampled edit, a stopped one, a long stream, a different cell
    spark_nb.edit(EDITS[1][0], "rename x to value", temperature=0.8, seed=3, exact=False)
    stop = __import__("threading").Event()
    stop.set()
    spark_nb.edit(EDITS[0][0], "add a docstring", cancel=stop)
    engine = spark_nb.load()
    for _ in engine.stream(PROMPT * 3, max_new_tokens=40, ignore_eos=True):
        pass
    again = [spark_nb.edit(code, instruction, exact=False) for code, instruction in reversed(EDITS)][::-1]
    assert [r.text for r in again] == [r.text for r in first]
    assert [r.code for r in again] == [r.code for r in first]


@pytest.mark.slow
def test_a_kernel_gives_what_a_script_gives(tmp_path):
    """The same edits in a Jupyter kernel (after other cells ran there) as in a fresh script."""
    from jupyter_client.manager import start_new_kernel

    script = answers(tmp_path / "cache")
    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    try:
        code = ("import json, spark_nb\n"
                "spark_nb.edit('x = 1\\n', 'add a comment')\n"  # something ran before
                f"print(json.dumps([spark_nb.edit(c, i, exact=False).text for c, i in {EDITS!r}]))")
        out = []
        reply = kc.execute_interactive(code, timeout=300, store_history=False,
                                       output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        km.shutdown_kernel(now=True)
    assert json.loads("".join(out).strip().splitlines()[-1]) == script["edits"]


def test_forward_pass_cache_is_keyed_by_every_source_it_embeds(tmp_path):
    """forward.py's compiled code embeds kernels.py and workers.py, and through the kernels' dispatch on block
    tiles block_matrix.py, quant_kernels.py and blocks.py: its numba cache lives in a folder named for the hash of
    them all, so a change to any kernel can never be answered by machine code of the old one."""
    import hashlib
    from pathlib import Path

    from spark_nb.wafer import block_matrix, blocks, forward, kernels, quant_kernels, workers

    embedded = (forward, kernels, workers, block_matrix, quant_kernels, blocks)
    digest = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in embedded))
    where = Path(forward.run._cache._impl.locator.get_cache_path())
    assert f"wafer-{digest.hexdigest()[:16]}" in where.parts

    from numba import njit

    from spark_nb.wafer.jit_cache import keyed_by_sources

    sources = [tmp_path / "a.py", tmp_path / "b.py"]
    for path in sources:
        path.write_text("x = 1\n")
    first = keyed_by_sources([njit(cache=True)(lambda: 1)], sources)
    assert keyed_by_sources([], sources) == first
    sources[1].write_text("x = 2\n")  # an edit of an embedded source, the cached file itself untouched
    assert keyed_by_sources([], sources) != first
