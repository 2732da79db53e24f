"""The teaching notebooks run top to bottom and reproduce their saved outputs (nbval).

Outputs that change run to run (this machine's measured bandwidth) are masked by notebooks/nbval_sanitize.cfg,
not skipped; only the interactive widget cell is marked NBVAL_IGNORE_OUTPUT.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

pytest.importorskip("nbval")


def test_notebooks_reproduce_their_outputs():
    assert sorted(NOTEBOOKS.glob("*.ipynb")), "no notebooks found"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval", str(NOTEBOOKS),
         "--nbval-sanitize-with", str(NOTEBOOKS / "nbval_sanitize.cfg")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
