"""spark-nb pull against a small hub on 127.0.0.1 (HF_ENDPOINT): the endpoints huggingface_hub calls, in the hub's
layout — /api/models/REPO/revision/REV (file list and commit), /api/models/REPO/tree/REV (sizes, for
snapshot_download), HEAD and GET /REPO/resolve/REV/FILE (X-Repo-Commit, ETag, Content-Length) and the hub's
X-Error-Code on a 404 — serving tiny models; HF_HOME is a temp dir. Then the pulled name lists and loads."""
from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest
from store_layouts import folder_files, tiny_folder, tiny_gguf

import spark_nb
from spark_nb import cli
from spark_nb.model import stores

COMMIT = hashlib.sha1(b"tiny").hexdigest()


class Hub(BaseHTTPRequestHandler):
    repos: dict[str, dict[str, bytes]] = {}
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.serve(body=False)

    def do_GET(self):
        self.serve(body=True)

    def serve(self, body: bool):
        self.requests.append(f"{self.command} {self.path}")
        parts = unquote(urlsplit(self.path).path).strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo, rest = ("/".join(parts[2:4]), parts[4:]) if api else ("/".join(parts[:2]), parts[2:])
        if repo not in self.repos:
            return self.reply(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
        files = self.repos[repo]
        kind, revision, path = (rest + ["main", "main"])[0], (rest + ["main", "main"])[1], "/".join(rest[2:])
        if revision not in ("main", COMMIT):
            return self.reply(404, b"{}", {"X-Error-Code": "RevisionNotFound"})
        if api and kind == "revision":
            info = {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
            return self.reply(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
        if api and kind == "tree":
            tree = [{"type": "file", "oid": hashlib.sha1(data).hexdigest(), "size": len(data), "path": name}
                    for name, data in files.items()]
            return self.reply(200, json.dumps(tree).encode(), {"Content-Type": "application/json"})
        if not api and kind == "resolve":
            if path not in files:
                return self.reply(404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
            data = files[path]
            return self.reply(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'},
                              body)
        return self.reply(404, b"{}")

    def reply(self, status: int, data: bytes, headers: dict | None = None, body: bool = True):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(data)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    chat = tiny_gguf(tmp / "chat.gguf").read_bytes()
    Hub.repos = {
        "tiny-org/Tiny-Coder-GGUF": {"tiny-coder-q8_0.gguf": chat, "tiny-coder-f16.gguf": chat, "README.md": b"#"},
        "tiny-org/One-GGUF": {"one-q8_0.gguf": chat, "README.md": b"#"},
        "tiny-org/Tiny-Coder-Instruct": {**folder_files(tiny_folder(tmp / "folder")), "README.md": b"#",
                                         "pytorch_model.bin": b"not wanted"},
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(hub, tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "XDG_CACHE_HOME", "SPARK_NB_MODELS", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setenv("HF_ENDPOINT", hub)
    Hub.requests.clear()
    return tmp_path


def pulled(capsys, *argv) -> str:
    """Run spark-nb pull; the name it says to use."""
    assert cli.main(["pull", *argv]) == 0
    out = capsys.readouterr().out
    return out.split("--model ", 1)[1].split()[0]


def test_pull_one_gguf_file(env, capsys):
    name = pulled(capsys, "tiny-org/Tiny-Coder-GGUF", "--file", "tiny-coder-q8_0.gguf")
    assert name == "tiny-org/Tiny-Coder-GGUF/tiny-coder-q8_0.gguf"
    path = stores.resolve(name)
    assert path.read_bytes() == Hub.repos["tiny-org/Tiny-Coder-GGUF"]["tiny-coder-q8_0.gguf"]
    assert (env / "hf" / "hub") in path.parents
    assert any(r.startswith("GET /tiny-org/Tiny-Coder-GGUF/resolve/") for r in Hub.requests)
    [listed] = [m for m in stores.available() if m.name == name]
    assert (listed.source, listed.architecture, listed.chat_template) == ("hugging face", "qwen2", True)
    assert spark_nb.load(name, dtype="fp32").tokenizer.chat_template


def test_pull_a_model_folder(env, capsys):
    name = pulled(capsys, "tiny-org/Tiny-Coder-Instruct")
    assert name == "tiny-org/Tiny-Coder-Instruct"
    folder = stores.resolve(name)
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                                  "tokenizer_config.json"}  # no README, no .bin
    assert spark_nb.load(name, dtype="fp32").config.family == "qwen2"


def test_pull_the_only_gguf_file_of_a_repo(env, capsys):
    assert pulled(capsys, "tiny-org/One-GGUF") == "tiny-org/One-GGUF/one-q8_0.gguf"
    assert stores.resolve("tiny-org/One-GGUF").name == "one-q8_0.gguf"


@pytest.mark.parametrize("argv, fragments", [
    (["no-org/no-repo"], ["no model repository 'no-org/no-repo'"]),
    (["tiny-org/Tiny-Coder-GGUF", "--file", "tiny-coder-q4.gguf"], ["no file 'tiny-coder-q4.gguf'",
                                                                   "tiny-coder-q8_0.gguf"]),
    (["tiny-org/Tiny-Coder-GGUF"], ["2 GGUF files", "--file", "tiny-coder-f16.gguf"]),
    (["tiny-org/Tiny-Coder-GGUF", "--revision", "v9"], ["no such revision"]),
])
def test_clear_errors(env, capsys, argv, fragments):
    assert cli.main(["pull", *argv]) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert not (env / "hf" / "hub").exists() or not any((env / "hf" / "hub").rglob("*.gguf"))


def test_no_network(env, capsys, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert cli.main(["pull", "tiny-org/One-GGUF"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach" in err and "spark-nb models" in err
