"""The models already on the machine: each store's real on-disk layout with tiny models in temp dirs, listed by
spark_nb.model.stores.available() and `spark-nb models`, resolved by name, and loaded through a name by every
loader (spark_nb.load, get_engine, spark-nb demo)."""
from __future__ import annotations

import json
import shutil

import pytest
from gguf import GGMLQuantizationType as T
from store_layouts import folder_files, hub_repo, ollama_model, tiny_folder, tiny_gguf

import spark_nb
from spark_nb import cli
from spark_nb.edits import get_engine
from spark_nb.model import ModelLoadError, load_checkpoint, stores
from spark_nb.model.gguf_file import metadata, open_gguf
from spark_nb.model.stores.header import read_header


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny models, written once: a chat GGUF (Q8_0/F16), a base GGUF (F32), a model folder."""
    tmp = tmp_path_factory.mktemp("tiny")
    return dict(chat=tiny_gguf(tmp / "chat.gguf").read_bytes(),
                base=tiny_gguf(tmp / "base.gguf", arch="llama", chat=False, kinds=(T.F32,)).read_bytes(),
                folder=tiny_folder(tmp / "folder"))


@pytest.fixture
def machine(tmp_path, monkeypatch, files):
    """Every store laid out under tmp_path (HOME, HF_HOME, OLLAMA_MODELS, SPARK_NB_MODELS point there);
    returns name -> the path it must resolve to."""
    home = tmp_path / "home"
    home.mkdir()
    for var in ("HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    paths = {}
    hub = tmp_path / "hf" / "hub"
    snapshot = hub_repo(hub, "tiny-org/Tiny-Coder-Instruct", folder_files(files["folder"]))
    paths["tiny-org/Tiny-Coder-Instruct"] = snapshot
    snapshot = hub_repo(hub, "tiny-org/Tiny-Coder-GGUF", {"tiny-coder-q8_0.gguf": files["chat"],
                                                          "tiny-coder-f32.gguf": files["base"],
                                                          "README.md": b"# tiny"})
    paths["tiny-org/Tiny-Coder-GGUF/tiny-coder-q8_0.gguf"] = snapshot / "tiny-coder-q8_0.gguf"
    paths["tiny-org/Tiny-Coder-GGUF/tiny-coder-f32.gguf"] = snapshot / "tiny-coder-f32.gguf"
    ollama = tmp_path / "ollama"
    paths["qwen2.5-coder:0.5b"] = ollama_model(ollama, "qwen2.5-coder:0.5b", files["chat"])
    paths["someone/tiny:latest"] = ollama_model(ollama, "someone/tiny:latest", files["base"])
    paths["hf.co/tiny-org/Tiny-GGUF:Q8_0"] = ollama_model(ollama, "tiny-org/Tiny-GGUF:Q8_0", files["chat"],
                                                          host="hf.co")
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-Coder-GGUF"
    lms.mkdir(parents=True)
    (lms / "Tiny-Coder-Q8_0.gguf").write_bytes(files["chat"])
    (lms / "mmproj-Tiny-Coder-F16.gguf").write_bytes(files["base"])  # a vision projector, not a model
    paths["lmstudio-community/Tiny-Coder-GGUF/Tiny-Coder-Q8_0.gguf"] = lms / "Tiny-Coder-Q8_0.gguf"
    mine = tmp_path / "mine"
    shutil.copytree(files["folder"], mine / "my-folder")
    (mine / "my-model.gguf").write_bytes(files["base"])
    (mine / "notes.txt").write_text("not a model")
    single = tmp_path / "single.gguf"
    single.write_bytes(files["chat"])
    monkeypatch.setenv("SPARK_NB_MODELS", f"{mine}:{single}")
    paths.update({"my-folder": mine / "my-folder", "my-model.gguf": mine / "my-model.gguf", "single.gguf": single})
    return paths


def test_every_store_is_listed(machine):
    listed = {m.name: m for m in stores.available()}
    assert set(machine) <= set(listed), sorted(listed)
    assert not any("mmproj" in name for name in listed) and "notes.txt" not in listed
    for name, path in machine.items():
        assert listed[name].path == path and listed[name].problem is None, listed[name]
    folder = listed["tiny-org/Tiny-Coder-Instruct"]
    assert (folder.source, folder.architecture, folder.quantization, folder.chat_template, folder.runs) == (
        "hugging face", "qwen2", "float32", False, True)
    assert folder.size == sum(f.stat().st_size for f in folder.path.iterdir())
    chat = listed["qwen2.5-coder:0.5b"]
    assert (chat.source, chat.architecture, chat.chat_template, chat.runs, chat.size) == (
        "ollama", "qwen2", True, True, machine["qwen2.5-coder:0.5b"].stat().st_size)
    assert chat.quantization in ("Q8_0/F16", "F16/Q8_0")
    base = listed["someone/tiny:latest"]
    assert (base.architecture, base.quantization, base.chat_template) == ("llama", "F32", False)
    assert "someone/tiny" in base.aliases
    assert listed["lmstudio-community/Tiny-Coder-GGUF/Tiny-Coder-Q8_0.gguf"].source == "lm studio"
    assert listed["my-model.gguf"].source == listed["single.gguf"].source == "SPARK_NB_MODELS"
    if "builtin" in listed:
        assert listed["builtin"].source == "built-in"


def test_names_resolve_to_their_files(machine):
    for name, path in machine.items():
        assert stores.resolve(name) == path
    aliases = {"someone/tiny": "someone/tiny:latest", "Tiny-Coder-Q8_0.gguf":
               "lmstudio-community/Tiny-Coder-GGUF/Tiny-Coder-Q8_0.gguf", "lmstudio-community/Tiny-Coder-GGUF":
               "lmstudio-community/Tiny-Coder-GGUF/Tiny-Coder-Q8_0.gguf", "my-model": "my-model.gguf",
               "single": "single.gguf"}
    for alias, name in aliases.items():
        assert stores.resolve(alias) == machine[name]
    path = machine["my-model.gguf"]
    assert stores.resolve(path) == path and stores.resolve(str(path)) == path  # a path is itself


def test_unknown_or_ambiguous_name_is_one_clear_error(machine):
    with pytest.raises(ModelLoadError) as caught:
        spark_nb.load("qwen2.5-coder:7b")
    message = str(caught.value)
    assert "'qwen2.5-coder:7b'" in message and "qwen2.5-coder:0.5b" in message and "spark-nb models" in message
    with pytest.raises(ModelLoadError, match="2 models"):  # two repos' GGUF files, neither alone in its repo
        stores.resolve("tiny-org/Tiny-Coder-GGUF")
    with pytest.raises(ModelLoadError, match="does not exist"):  # a path stays a path: the loader's own error
        load_checkpoint(machine["single.gguf"].parent / "missing.gguf")


def test_every_loader_takes_a_name(machine, capsys):
    engine = spark_nb.load("qwen2.5-coder:0.5b", dtype="fp32")
    assert engine.path == machine["qwen2.5-coder:0.5b"] and engine.tokenizer.chat_template
    assert repr(engine).startswith("Engine(qwen2.5-coder:0.5b: ")  # the name, not the blob's sha256-...
    assert repr(spark_nb.load(machine["qwen2.5-coder:0.5b"], dtype="fp32")).startswith(
        f"Engine({machine['qwen2.5-coder:0.5b'].name}: ")  # a path: its file's name
    assert get_engine("tiny-org/Tiny-Coder-Instruct", dtype="fp32").path == machine["tiny-org/Tiny-Coder-Instruct"]
    assert get_engine("tiny-org/Tiny-Coder-Instruct", dtype="fp32") is get_engine(
        str(machine["tiny-org/Tiny-Coder-Instruct"]), dtype="fp32")  # one engine, whatever it was called
    assert load_checkpoint("my-folder").path == machine["my-folder"]
    assert cli.main(["demo", "--model", "lmstudio-community/Tiny-Coder-GGUF/Tiny-Coder-Q8_0.gguf",
                     "--max-tokens", "2", "--dtype", "fp32"]) == 0
    assert cli.main(["demo", "--model", "no-such-model"]) == 2
    assert "spark-nb models" in capsys.readouterr().err


def test_models_command(machine, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in machine:
        assert name in out
    assert cli.main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["qwen2.5-coder:0.5b"]["path"] == str(machine["qwen2.5-coder:0.5b"])


def test_an_unreadable_file_is_listed_with_its_problem(machine, tmp_path, monkeypatch):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(machine["single.gguf"].read_bytes()[:100])
    monkeypatch.setenv("SPARK_NB_MODELS", str(broken))
    [model] = [m for m in stores.available() if m.source == "SPARK_NB_MODELS"]
    assert model.problem and not model.runs and "broken.gguf" in model.problem


def test_empty_machine(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "XDG_CACHE_HOME", "SPARK_NB_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    assert [m.source for m in stores.available()] in ([], ["built-in"])


def test_header_reader_reads_what_gguf_reads(machine):
    path = machine["single.gguf"]
    full = open_gguf(path)
    meta, tensors = read_header(path)
    expected = metadata(full, str(path))
    assert {k: v for k, v in expected.items() if not isinstance(v, list)} == {
        k: v for k, v in meta.items() if not isinstance(v, list)}
    assert [(t.name, t.tensor_type, list(t.shape)) for t in tensors] == [
        (t.name, t.tensor_type, list(t.shape)) for t in full.tensors]


def test_a_dangling_link_or_a_failing_store_hides_nothing_else(machine, monkeypatch):
    lms = machine["lmstudio-community/Tiny-Coder-GGUF/Tiny-Coder-Q8_0.gguf"].parent
    (lms / "Gone-Q4_K_M.gguf").symlink_to(lms / "nowhere.gguf")  # a model moved away behind a link
    assert "lmstudio-community/Tiny-Coder-GGUF/Gone-Q4_K_M.gguf" not in {m.name for m in stores.find()}

    def unreadable():
        raise PermissionError("no access")

    monkeypatch.setattr(stores, "STORES", (unreadable, *stores.STORES))
    assert stores.resolve("qwen2.5-coder:0.5b") == machine["qwen2.5-coder:0.5b"]
