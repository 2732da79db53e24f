"""Bad model folders: each way a checkpoint can be damaged or mismatched gives one ModelLoadError naming the file,
what is wrong and what to do; nothing in the folder is executed; and in a real kernel `%spark load` prints that
one error and the next cell runs.

Every case starts from a copy of conftest's tiny Llama (transformers' save_pretrained + the synthetic tokenizer)
and damages one thing. The messages are checked for the file they name and for the words that say what to do.
"""
from __future__ import annotations

import json
import pickle
import queue
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer as Backend

import spark_nb
from spark_nb.model import ModelLoadError

Q_PROJ = "model.layers.0.self_attn.q_proj.weight"  # (64, 64) float32 in conftest's tiny Llama


# -- damaging a copy of a good folder ------------------------------------------------------------------------------


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_tensors(folder: Path, change) -> None:
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")


def edit_bytes(folder: Path, change) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(change(path.read_bytes()))


def edit_header(change):
    """A change to the parsed safetensors header; the file is rewritten around the same data bytes."""

    def rewrite(data: bytes) -> bytes:
        n = int.from_bytes(data[:8], "little")
        header = change(json.loads(data[8 : 8 + n]))
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        return len(text).to_bytes(8, "little") + text + data[8 + n :]

    return lambda folder: edit_bytes(folder, rewrite)


def edit_entry(name: str, **fields):
    def change(header):
        header[name].update(fields)
        return header

    return edit_header(change)


def drop_field(name: str, key: str):
    def change(header):
        del header[name][key]
        return header

    return edit_header(change)


def sharded(weight_map_change=None, index_text=None):
    """Move the weights to a shard and describe them with model.safetensors.index.json (optionally broken)."""

    def damage(folder: Path):
        names = list(load_file(folder / "model.safetensors"))
        (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
        weight_map = {name: "model-00001-of-00001.safetensors" for name in names}
        if weight_map_change:
            weight_map_change(weight_map)
        text = index_text if index_text is not None else json.dumps({"metadata": {}, "weight_map": weight_map})
        (folder / "model.safetensors.index.json").write_text(text)

    return damage


def tokenizer_with(folder: Path, *tokens: str) -> None:
    backend = Backend.from_file(str(folder / "tokenizer.json"))
    backend.add_special_tokens(list(tokens))
    backend.save(str(folder / "tokenizer.json"))


def bigger_tokenizer(folder: Path) -> None:
    from spark_nb.model.synthetic import write_tokenizer

    write_tokenizer(folder, vocab_size=1024)


def set_nan(tensors):
    tensors[Q_PROJ][3, :2] = np.nan


def set_inf(tensors):
    tensors["model.embed_tokens.weight"][7, 5] = -np.inf


def cut_rows(tensors):
    tensors[Q_PROJ] = tensors[Q_PROJ][:32]


def overlap(header):
    """q_proj's offsets point at another tensor's bytes (the sizes still match)."""
    other = next(name for name, info in header.items() if name not in ("__metadata__", Q_PROJ)
                 and info["shape"] == [64, 64])
    header[Q_PROJ]["data_offsets"] = header[other]["data_offsets"]
    return header


CONFIG, WEIGHTS, TOKENIZER, TOKENIZER_CONFIG = "config.json", "model.safetensors", "tokenizer.json", \
    "tokenizer_config.json"
INDEX = "model.safetensors.index.json"

# id -> (damage(folder), the file the message names, fragments it must contain: what is wrong, what to do)
CASES = {
    # safetensors: truncated, corrupt header, offsets past the end, wrong shapes, non-finite values
    "truncated": (lambda f: edit_bytes(f, lambda b: b[: len(b) // 2]), WEIGHTS,
                  ["is truncated", "tensor data ends at byte", "fetch the file again"]),
    "shorter_than_a_header": (lambda f: edit_bytes(f, lambda b: b[:5]), WEIGHTS,
                              ["truncated (5 bytes", "copy it again"]),
    "header_length_past_the_end": (lambda f: edit_bytes(f, lambda b: (2**62).to_bytes(8, "little") + b[8:]),
                                   WEIGHTS, ["header claims 4611686018427387904 bytes", "fetch the file again"]),
    "header_not_json": (lambda f: edit_bytes(f, lambda b: b[:8] + b"\xff" * 40 + b[48:]), WEIGHTS,
                        ["corrupt safetensors header", "fetch the file again"]),
    "header_a_list": (edit_header(lambda h: [1, 2, 3]), WEIGHTS, ["corrupt safetensors header (a JSON list"]),
    "header_entry_without_offsets": (drop_field(Q_PROJ, "data_offsets"), WEIGHTS,
                                     ["corrupt safetensors header", Q_PROJ, "data_offsets", "fetch the file again"]),
    "header_negative_offsets": (edit_entry(Q_PROJ, data_offsets=[-64, 16320]), WEIGHTS,
                                ["corrupt safetensors header", Q_PROJ, "non-negative whole numbers"]),
    "header_shape_not_a_list": (edit_entry(Q_PROJ, shape="64x64"), WEIGHTS, ["corrupt safetensors header", Q_PROJ]),
    "offsets_past_the_end": (edit_entry(Q_PROJ, data_offsets=[10**9, 10**9 + 64 * 64 * 4]), WEIGHTS,
                             ["is truncated", "ends at byte 10000", "fetch the file again"]),
    "offsets_overlap": (edit_header(overlap), WEIGHTS, ["corrupt header", "overlaps", "fetch the file again"]),
    "span_does_not_match_shape": (edit_entry(Q_PROJ, dtype="F16"), WEIGHTS,
                                  ["corrupt header", Q_PROJ, "spans 16384 bytes", "needs 8192"]),
    "bytes_after_the_last_tensor": (lambda f: edit_bytes(f, lambda b: b + b"\0" * 64), WEIGHTS,
                                    ["64 bytes after its last tensor", "fetch it again"]),
    "unknown_dtype": (edit_entry(Q_PROJ, dtype="Q4_K"), WEIGHTS,
                      [Q_PROJ, "stored as Q4_K", "dequantize or convert the model"]),
    "wrong_tensor_shape": (lambda f: edit_tensors(f, cut_rows), WEIGHTS,
                           [Q_PROJ, "shape (32, 64)", "implies (64, 64)", "keep them together"]),
    "nan_weights": (lambda f: edit_tensors(f, set_nan), WEIGHTS,
                    [Q_PROJ, "2 NaN and 0 inf", "use an earlier checkpoint"]),
    "inf_weights": (lambda f: edit_tensors(f, set_inf), WEIGHTS,
                    ["model.embed_tokens.weight", "0 NaN and 1 inf", "use an earlier checkpoint"]),
    # sharded weights
    "index_not_json": (sharded(index_text="{"), INDEX, ["not a valid shard index", "re-export"]),
    "index_weight_map_a_list": (sharded(index_text='{"weight_map": []}'), INDEX, ["weight_map is a JSON list"]),
    "index_points_outside_the_folder": (sharded(lambda m: m.update({Q_PROJ: "../../elsewhere.safetensors"})),
                                        INDEX, ["not a file name in the model folder", "re-export"]),
    "index_names_a_missing_shard": (sharded(lambda m: m.update({Q_PROJ: "model-00002-of-00002.safetensors"})),
                                    INDEX, ["model-00002-of-00002.safetensors", "missing", "copy every shard"]),
    # config.json that lies about sizes, or is not a config at all
    "config_hidden_size": (lambda f: edit_json(f / CONFIG, hidden_size=128), WEIGHTS,
                           ["model.embed_tokens.weight", "implies (512, 128)", "config.json"]),
    "config_more_layers": (lambda f: edit_json(f / CONFIG, num_hidden_layers=3), WEIGHTS,
                           ["missing tensor 'model.layers.2.", "re-export"]),
    "config_fewer_layers": (lambda f: edit_json(f / CONFIG, num_hidden_layers=1), WEIGHTS,
                            ["model.layers.1.", "does not use", "too few layers"]),
    "config_vocab_smaller_than_tokenizer": (lambda f: edit_json(f / CONFIG, vocab_size=256), TOKENIZER,
                                            ["512 tokens", "vocab_size is 256", "belongs to another model"]),
    "config_vocab_larger_than_weights": (lambda f: edit_json(f / CONFIG, vocab_size=1024), WEIGHTS,
                                         ["model.embed_tokens.weight", "implies (1024, 64)"]),
    "config_heads_do_not_divide_hidden": (lambda f: edit_json(f / CONFIG, num_attention_heads=6, head_dim=None),
                                          CONFIG,
                                          ["hidden_size 64 is not divisible by num_attention_heads 6", "re-export"]),
    "config_kv_heads_do_not_divide_heads": (lambda f: edit_json(f / CONFIG, num_key_value_heads=3), CONFIG,
                                            ["num_attention_heads 4 is not a multiple of num_key_value_heads 3"]),
    "config_zero_heads": (lambda f: edit_json(f / CONFIG, num_attention_heads=0), CONFIG,
                          ["num_attention_heads is 0", "at least 1"]),
    "config_size_a_string": (lambda f: edit_json(f / CONFIG, intermediate_size="160"), CONFIG,
                             ["intermediate_size is '160'", "whole number"]),
    "config_size_a_fraction": (lambda f: edit_json(f / CONFIG, hidden_size=64.5), CONFIG,
                               ["hidden_size is 64.5", "whole number"]),
    "config_rope_theta_zero": (lambda f: edit_json(f / CONFIG, rope_parameters={"rope_type": "default",
                                                                                 "rope_theta": 0.0}), CONFIG,
                               ["rope_theta 0.0", "non-finite", "re-export"]),
    "config_rms_norm_eps_nan": (lambda f: edit_json(f / CONFIG, rms_norm_eps=float("nan")), CONFIG,
                                ["rms_norm_eps is nan", "finite"]),
    "config_eos_beyond_vocab": (lambda f: edit_json(f / CONFIG, eos_token_id=50000), CONFIG,
                                ["eos_token_id 50000 is not a token id", "511"]),
    "config_tie_flag_a_string": (lambda f: edit_json(f / CONFIG, tie_word_embeddings="false"), CONFIG,
                                 ["tie_word_embeddings is 'false'", "true or false"]),
    "config_not_json": (lambda f: (f / CONFIG).write_text('{"hidden_size": 64,'), CONFIG,
                        ["is not valid JSON", "re-export"]),
    "config_not_utf8": (lambda f: (f / CONFIG).write_bytes(b"\xff\xfe{}"), CONFIG, ["is not valid JSON"]),
    "config_a_list": (lambda f: (f / CONFIG).write_text("[64, 2]"), CONFIG, ["a JSON list, not an object"]),
    # tokenizer that does not match the model
    "tokenizer_larger_than_embedding": (bigger_tokenizer, TOKENIZER,
                                        ["1024 tokens", "vocab_size is 512", "belongs to another model"]),
    "tokenizer_lacks_its_eos": (lambda f: edit_json(f / TOKENIZER_CONFIG, eos_token="<|eot|>"), TOKENIZER_CONFIG,
                                ["'<|eot|>' as its eos_token", "tokenizer.json has no such token", "re-export"]),
    "tokenizer_edit_format_incomplete": (lambda f: tokenizer_with(f, "<|edit|>"), TOKENIZER,
                                         ["<|edit|>", "lacks", "<|keep|>", "re-export"]),
    "tokenizer_not_json": (lambda f: (f / TOKENIZER).write_text('{"version": '), TOKENIZER,
                           ["cannot be read by the tokenizers library", "re-export"]),
    "tokenizer_config_not_json": (lambda f: (f / TOKENIZER_CONFIG).write_text("{"), TOKENIZER_CONFIG,
                                  ["is not valid JSON", "re-export"]),
    "tokenizer_config_eos_a_number": (lambda f: edit_json(f / TOKENIZER_CONFIG, eos_token=2), TOKENIZER_CONFIG,
                                      ["eos_token is 2", "not a token's text"]),
    "tokenizer_config_fim_order_unknown": (lambda f: edit_json(f / TOKENIZER_CONFIG, fim_order="pms"), TOKENIZER_CONFIG,
                                           ["fim_order is 'pms'", '"psm" or "spm"']),
    "chat_template_does_not_parse": (lambda f: edit_json(f / TOKENIZER_CONFIG, chat_template="{% for %}"),
                                     TOKENIZER_CONFIG, ["chat template does not parse", "fix the template"]),
    "chat_templates_malformed": (lambda f: edit_json(f / TOKENIZER_CONFIG, chat_template=[{"x": 1}]),
                                 TOKENIZER_CONFIG, ["chat_template is a list", "re-export"]),
}


@pytest.fixture
def damaged(tmp_path, llama):
    """A fresh copy of conftest's tiny Llama, damaged by `damage`."""

    def make(damage) -> Path:
        folder = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(llama[0], folder)
        damage(folder)
        return folder

    return make


def one_clear_error(folder: Path) -> str:
    """Load the folder the public way; it must raise a single ModelLoadError (no chained traceback beneath it)."""
    with pytest.raises(ModelLoadError) as caught:
        spark_nb.load(folder, dtype="fp32")
    err = caught.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), repr(err.__context__)
    return str(err)


def test_the_undamaged_copy_loads(damaged):
    engine = spark_nb.load(damaged(lambda folder: None), dtype="fp32")
    assert engine.config.n_layers == 2


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_gives_one_clear_error(damaged, case):
    damage, file, fragments = CASES[case]
    message = one_clear_error(damaged(damage))
    assert file in message, message
    for fragment in fragments:
        assert fragment in message, message


# -- nothing from the folder is executed ----------------------------------------------------------------------------


class Boom:
    """Unpickling this would create the marker file: proof that something ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_checkpoint_is_refused_unopened(damaged, tmp_path):
    marker = tmp_path / "unpickled"

    def pickle_only(folder: Path):
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Boom(str(marker))))

    message = one_clear_error(damaged(pickle_only))
    assert "pytorch_model.bin is a pickle, which spark-nb never loads" in message
    assert not marker.exists()


def test_remote_code_in_the_folder_is_never_run(damaged, tmp_path):
    """auto_map (trust_remote_code's hook) names a module of the folder; spark-nb implements the architecture
    itself, so it loads the weights and never imports the module."""
    marker = tmp_path / "imported"

    def remote_code(folder: Path):
        edit_json(folder / CONFIG, auto_map={"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
        (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w')\n")

    engine = spark_nb.load(damaged(remote_code), dtype="fp32")
    assert engine.config.family == "llama"
    assert not marker.exists()


# -- in a real kernel ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel():
    jupyter_client = pytest.importorskip("jupyter_client")
    pytest.importorskip("ipykernel")
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run(kc, code: str) -> tuple[dict, str, str, list[str]]:
    """Execute code; (reply content, stdout, stderr, types of the other iopub messages that carried output)."""
    out = {"stdout": [], "stderr": []}
    other = []

    def hook(msg):
        kind = msg["msg_type"]
        if kind == "stream":
            out[msg["content"]["name"]].append(msg["content"]["text"])
        elif kind in ("error", "display_data", "execute_result"):
            other.append(kind)

    try:
        reply = kc.execute_interactive(code, timeout=120, output_hook=hook)
    except (TimeoutError, queue.Empty):
        pytest.fail(f"the kernel hung on {code!r}")
    return reply["content"], "".join(out["stdout"]), "".join(out["stderr"]), other


@pytest.mark.slow
def test_spark_load_in_a_kernel_prints_one_error_and_the_kernel_goes_on(kernel, damaged):
    content, *_ = run(kernel, "%load_ext spark_nb")
    assert content["status"] == "ok", content
    for case in ("truncated", "nan_weights", "config_heads_do_not_divide_hidden", "tokenizer_lacks_its_eos"):
        folder = damaged(CASES[case][0])
        content, stdout, stderr, other = run(kernel, f"%spark load {folder}")
        assert content["status"] == "ok", content  # no exception reached the cell
        assert other == [] and stdout == "", (other, stdout)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"spark: cannot load {folder}: "), stderr
        assert CASES[case][2][0] in lines[0] and "Traceback" not in stderr
        content, stdout, stderr, _ = run(kernel, textwrap.dedent("""
            import threading
            print(1 + 1, threading.active_count() > 0)
        """))
        assert content["status"] == "ok" and stdout == "2 True\n" and stderr == ""
    # the failed loads left nothing half-loaded: the default model is still the built-in one
    content, stdout, _, _ = run(kernel, "print(get_ipython().magics_manager.registry['SparkMagics'].session.model)")
    assert stdout == "builtin\n"
