"""`spark-nb install-kernel`: the spec lands in a temporary prefix naming this interpreter, and the kernel it starts
has %%spark registered without a %load_ext."""
from __future__ import annotations

import json
import sys

import pytest

from spark_nb.cli import main
from spark_nb.notebook.kernelspec import template_dir

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402


def test_template_is_the_spark_kernel():
    spec = json.loads((template_dir() / "kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (spark)"
    assert spec["language"] == "python"
    assert spec["argv"] == ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext", "spark_nb"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    assert main(["install-kernel", "--prefix", str(prefix)]) == 0
    return KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])


def test_install_names_this_interpreter(installed):
    assert "spark" in installed.find_kernel_specs()  # beside the native python3, always listed
    spec = installed.get_kernel_spec("spark")
    assert spec.display_name == "Python 3 (spark)"
    assert spec.argv[0] == sys.executable
    assert spec.argv[-2:] == ["--ext", "spark_nb"]


def test_install_rejects_two_places(tmp_path):
    with pytest.raises(SystemExit):
        main(["install-kernel", "--sys-prefix", "--prefix", str(tmp_path)])


@pytest.mark.slow
def test_kernel_starts_with_magics_loaded(installed):
    km = jupyter_client.KernelManager(kernel_name="spark", kernel_spec_manager=installed)
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        outputs = []
        reply = kc.execute_interactive(
            "ip = get_ipython()\n"
            "print('spark' in ip.magics_manager.magics['cell'], 'spark' in ip.magics_manager.magics['line'])\n"
            "print('spark_nb' in ip.extension_manager.loaded)\n"
            "%spark config",
            timeout=60, output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok", reply["content"]
        text = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
        lines = text.splitlines()
        assert lines[0] == "True True"
        assert lines[1] == "True"
        assert any(line.startswith("Spark.") for line in lines[2:]), text
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=False)
    assert not km.is_alive()
