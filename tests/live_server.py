"""A real Jupyter server for a module of tests (test_browser's JupyterLab, test_server's `jupyter server`): a free
port, the token `tok`, stopped at the end; a server that does not start fails the test with its log."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


@contextlib.contextmanager
def running(app: str, root: Path, *args: str):
    """`jupyter APP` serving `root`; yields its base URL (append ?token=tok)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "jupyter", app, "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           "--IdentityProvider.token=tok", f"--ServerApp.root_dir={root}", *args]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = root / f"{app}.log"
    server = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token=tok", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail(f"jupyter {app} did not start: " + log.read_text()[-2000:])
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
