"""The "Python 3 (spark)" kernelspec: ipykernel started with `--ext spark_nb`, so the magics need no `%load_ext`.

    spark-nb install-kernel [--user | --sys-prefix | --prefix PATH] [--name NAME]

The template is `kernels/spark` in the source tree (`spark_nb/kernels/spark` in the wheel); its argv starts with a
placeholder "python", replaced on install by the interpreter that runs this, the one that has spark_nb installed.
jupyter_client is imported only when installing.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["template_dir", "write_kernel_spec", "install_kernel_spec"]

KERNEL_NAME = "spark"
_HERE = Path(__file__).resolve().parent
_TEMPLATES = (_HERE.parent / "kernels" / KERNEL_NAME,  # in the wheel (force-included)
              _HERE.parents[1] / "kernels" / KERNEL_NAME)  # in a source checkout or an editable install


def template_dir() -> Path:
    """The folder holding the kernel.json template."""
    for folder in _TEMPLATES:
        if (folder / "kernel.json").is_file():
            return folder
    raise FileNotFoundError(f"kernelspec template not found (looked in {', '.join(map(str, _TEMPLATES))})")


def write_kernel_spec(dest, python: str | None = None) -> Path:
    """Copy the template into `dest` with argv[0] set to `python` (default: this interpreter); returns `dest`."""
    dest = Path(dest)
    shutil.copytree(template_dir(), dest, dirs_exist_ok=True)
    spec = json.loads((dest / "kernel.json").read_text())
    spec["argv"][0] = python or sys.executable
    (dest / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
    return dest


def install_kernel_spec(name: str = KERNEL_NAME, user: bool = True, prefix: str | None = None) -> str:
    """Install the spec where Jupyter finds it: the user's data dir, or `prefix`/share/jupyter/kernels when a
    prefix is given (sys.prefix for a virtual environment). Replaces an earlier install; returns the folder."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        src = write_kernel_spec(Path(tmp) / name)
        return KernelSpecManager().install_kernel_spec(str(src), kernel_name=name, user=user and prefix is None,
                                                       prefix=prefix)
