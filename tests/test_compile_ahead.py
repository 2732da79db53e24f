"""On an empty numba cache the decode step compiles in a helper process (spark_nb/wafer/ahead.py) while the engine
compiles its prefill; the engine then loads the helper's machine code and decodes exactly as a warm engine does."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import spark_nb

pytestmark = pytest.mark.slow

PROMPT = "def add(a, b):\n    return"

SCRIPT = """
import json, sys, spark_nb
from spark_nb.wafer import forward
engine = spark_nb.load(sys.argv[1])
helper = engine._compiling
done = list(engine.stream(sys.argv[2], max_new_tokens=12, ignore_eos=True))[-1]
print(json.dumps(dict(helper=helper is not None and helper.returncode, compiled_here=sum(forward.decode.stats.cache_misses.values()),
                      tokens=list(done.token_ids))))
"""


def test_an_empty_cache_compiles_decode_in_a_helper_process(llama, tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(llama[0]), PROMPT], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    assert fresh["helper"] == 0  # started, and finished well
    assert fresh["compiled_here"] == 0  # loaded from the helper's work, not compiled again
    warm = spark_nb.load(llama[0]).stream(PROMPT, max_new_tokens=12, ignore_eos=True)
    assert fresh["tokens"] == list(list(warm)[-1].token_ids)
