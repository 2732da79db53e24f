"""Every host computes the same int8 numbers: the AMX path (tdpbssd on tiles of 16 tokens, for prompts), the
AVX-512 VNNI path (vpdpbusd) and the portable path (the same integer sums formed in int32) give bit-identical
logits. Each path runs in its own process, because the choice is made once at import (SPARK_NB_NO_AMX=1 keeps to
vpdpbusd, SPARK_NB_NO_VNNI=1 forces the portable path)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from spark_nb.wafer import kernels

SCRIPT = """
import sys, numpy as np, spark_nb
from spark_nb.wafer import kernels
engine = spark_nb.load(sys.argv[1], dtype="int8", context=64)
np.save(sys.argv[2], engine.logits(list(range(3, 40))))
print(kernels.HOST_VNNI, kernels.HOST_AMX)
"""


def logits_in_subprocess(folder, out, tmp_path, **env):
    cache = tmp_path / ("cache-" + "-".join(env) if env else "cache")  # each path compiles its own kernels
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(folder), str(out)], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    vnni, amx = result.stdout.split()
    return np.load(out), vnni == "True", amx == "True"


@pytest.mark.skipif(not kernels.HOST_VNNI, reason="this host has no AVX-512 VNNI: only the portable path exists")
def test_amx_vnni_and_portable_int8_paths_agree_exactly(tmp_path):
    from spark_nb.model.synthetic import write_random_model

    # a model whose tiles are whole 64-byte rows (and 16-row groups), so the VNNI and AMX paths really run
    folder = write_random_model(tmp_path / "model", {"family": "qwen2", "hidden_size": 128, "intermediate_size": 256,
                                                     "vocab_size": 512})
    best, _, used_amx = logits_in_subprocess(folder, tmp_path / "best.npy", tmp_path)
    vnni, used_vnni, amx_anyway = logits_in_subprocess(folder, tmp_path / "vnni.npy", tmp_path, SPARK_NB_NO_AMX="1")
    portable, used_portable, _ = logits_in_subprocess(folder, tmp_path / "portable.npy", tmp_path,
                                                      SPARK_NB_NO_VNNI="1")
    assert used_vnni and not used_portable and not amx_anyway
    assert used_amx == kernels.HOST_AMX
    np.testing.assert_array_equal(vnni, portable)
    np.testing.assert_array_equal(best, vnni)
