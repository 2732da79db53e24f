"""`spark-nb bench --gguf`: a tiny GGUF file (written here with gguf.GGUFWriter) beside a stand-in llama-bench that
prints what the real one prints with `-o json`; the shapes, threads and file it was asked for are checked, and the
ratios and roofline fractions come out of the numbers given."""
from __future__ import annotations

import json
import stat
import sys

import gguf
import pytest
from gguf import GGMLQuantizationType as T

from gguf_files import tiny_qwen2
from spark_nb import cli, gguf_bench

SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=1024)  # room for pp512 + tg64
FAKE = """#!{python}
import json, sys
args = sys.argv[1:]
open({log!r}, "w").write(json.dumps(args))
held = bytearray(64 << 20)  # 64 MB resident for a while: what its peak must show
import time
time.sleep(0.3)
p, n = int(args[args.index("-p") + 1]), int(args[args.index("-n") + 1])
rows = []
for t in map(int, args[args.index("-t") + 1].split(",")):  # prefill fastest on the most threads, decode on one
    rows += [dict(build_commit="abc", n_threads=t, n_prompt=p, n_gen=0, avg_ts=100.0 - 10 * (2 - t)),
             dict(build_commit="abc", n_threads=t, n_prompt=0, n_gen=n, avg_ts=20.0 - 10 * (t - 1))]
print(json.dumps(rows))
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return tiny_qwen2(tmp_path_factory.mktemp("gguf_bench") / "tiny.gguf", [T.Q8_0, T.Q4_K], **SHAPE)


@pytest.fixture
def fake_llama_bench(tmp_path):
    log = tmp_path / "args.json"
    binary = tmp_path / "llama-bench"
    binary.write_text(FAKE.format(python=sys.executable, log=str(log)))
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    return binary, log


@pytest.fixture
def fast_bandwidth(monkeypatch):
    monkeypatch.setattr(gguf_bench.bench, "measure_bandwidth", lambda: dict(gb_per_s=10.0))


def test_file_decode_bytes_reads_one_embedding_row(model_file):
    tensors = {t.name: t for t in gguf.GGUFReader(model_file).tensors}
    embed = tensors["token_embd.weight"]
    row = int(embed.n_bytes) // int(embed.shape[-1])
    assert "output.weight" in tensors
    assert gguf_bench.file_decode_bytes(model_file) == sum(int(t.n_bytes) for t in tensors.values()) - embed.n_bytes + row


def test_side_by_side(model_file, fake_llama_bench, fast_bandwidth):
    binary, log = fake_llama_bench
    result = gguf_bench.run(model_file, str(binary), prompt=16, generate=4, repeats=1, progress=False)
    args = json.loads(log.read_text())
    assert args[args.index("-m") + 1] == str(model_file)
    assert (args[args.index("-p") + 1], args[args.index("-n") + 1]) == ("16", "4")
    threads = gguf_bench._threads()
    assert args[args.index("-t") + 1] == ",".join(map(str, range(1, threads + 1)))
    ours, theirs = result["spark_nb"], result["llama_cpp"]
    assert theirs["decode_tok_per_s"] == 20.0 and theirs["decode_threads"] == 1  # the fastest of each
    assert theirs["prefill_threads"] == threads
    assert ours["prefill_tok_per_s"] > 0 and ours["decode_tok_per_s"] > 0
    assert result["ratios"]["decode_tok_per_s"] == pytest.approx(ours["decode_tok_per_s"] / 20.0)
    assert theirs["roofline_fraction"] == pytest.approx(20.0 * theirs["decode_bytes"] / 10e9)
    assert 64 << 20 < theirs["peak_resident_bytes"] < 1 << 30  # its own peak, not this process's (the fork's)
    # in a process that ran other tests before, what the load added can be less than what it handed back
    assert isinstance(ours["resident_bytes"], int) and ours["process_resident_bytes"] > 0
    table = gguf_bench.format_table(result)
    assert "llama.cpp's process at its peak" in table
    assert f"llama.cpp (-t {threads}/1)" in table and "spark-nb / llama.cpp" in table and "pp16 tok/s" in table


def test_without_llama_bench(model_file, fast_bandwidth, monkeypatch):
    monkeypatch.setenv("PATH", "")
    result = gguf_bench.run(model_file, prompt=8, generate=2, repeats=1, progress=False)
    assert result["llama_cpp"] is None and "ratios" not in result
    assert "no llama-bench on PATH" in gguf_bench.format_table(result)


@pytest.mark.parametrize("dtype", [None, "auto"])
def test_cli(model_file, fake_llama_bench, fast_bandwidth, capsys, dtype):
    options = ["--dtype", dtype] if dtype else []
    assert cli.main(["bench", "--gguf", str(model_file), "--llama-bench", str(fake_llama_bench[0]), "--json",
                     *options]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["llama_cpp"]["decode_tok_per_s"] == 20.0
    assert result["spark_nb"]["dtype"] == (dtype or gguf_bench.DTYPE)
