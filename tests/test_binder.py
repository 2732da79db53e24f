"""binder/ alone makes an environment that runs every notebook: what repo2docker does, in a fresh venv.

repo2docker installs binder/requirements.txt from the repository root, then runs binder/postBuild. Here the same two
steps build a virtual environment that shares nothing with the one running the tests; then the notebooks are
executed in it with nbval (the only things added are pytest and nbval, the test's own tools), against the package
as installed there, not the source tree. The install also brings spark-nb's JupyterLab extension, prebuilt.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_binder_environment_runs_the_notebooks(tmp_path):
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    venv = tmp_path / "binder-env"
    _run([sys.executable, "-m", "venv", venv])
    bin_ = venv / "bin"
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    env.pop("PYTHONPATH", None)
    _run([bin_ / "python", "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], cwd=ROOT, env=env)
    _run(["bash", "binder/postBuild"], cwd=ROOT, env=env)

    spec = json.loads((venv / "share" / "jupyter" / "kernels" / "spark" / "kernel.json").read_text())
    assert spec["argv"][0] == str(bin_ / "python") and spec["argv"][-2:] == ["--ext", "spark_nb"]
    assert any((tmp_path / "numba-cache").rglob("*.nbi")), "postBuild left the numba cache empty"
    where = _run([bin_ / "python", "-c", "import spark_nb, sys; print(spark_nb.__file__)"], cwd=tmp_path, env=env)
    assert where.startswith(str(venv)), where  # the installed package, not the source tree
    listed = subprocess.run([bin_ / "jupyter", "labextension", "list"], capture_output=True, text=True, cwd=tmp_path,
                            env=env)
    extensions = listed.stdout + listed.stderr  # jupyter prints the list on stderr
    assert any("spark-nb" in ln and "enabled" in ln and "OK" in ln for ln in extensions.splitlines()), extensions

    _run([bin_ / "python", "-m", "pip", "install", "-q", "pytest", "nbval"], env=env)
    out = _run([bin_ / "python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval", ROOT / "notebooks",
                "--nbval-sanitize-with", ROOT / "notebooks" / "nbval_sanitize.cfg", "--rootdir", tmp_path],
               cwd=tmp_path, env=env, timeout=1800)
    assert " passed" in out and "failed" not in out, out[-3000:]
