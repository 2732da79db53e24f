"""Run a notebook's cells in JupyterLab in headless Chromium and print what each printed: the numbers a user sees
there, which can differ from `jupyter nbconvert --execute` (the browser draws widgets on the same cores).

    python bench/notebook_in_lab.py notebooks/04-speed.ipynb 1,3,3,9,3 [--shots DIR] [--sessions N]

Each session starts JupyterLab afresh (as tests/test_browser.py does) on a copy of the notebook with its outputs
cleared, then tests/browser/run-cells.mjs runs the listed cells in order (repeats allowed) and screenshots each.
How #21's "first live-benchmark cell at 648 tok/s" was measured: cells 1, 3, 3, 9, 3 of 04-speed, several sessions.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def session(notebook: Path, cells: str, shots: Path) -> dict:
    import nbformat

    sys.path.insert(0, str(ROOT / "tests"))
    from live_server import running

    root = Path(tempfile.mkdtemp(prefix="spark-nb-lab-"))
    book = nbformat.read(notebook, 4)
    for cell in book.cells:  # no outputs, no execution counts: run-cells.mjs waits for a new count
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(book, root / notebook.name)
    news = root / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no toast over the cells
    shots.mkdir(parents=True, exist_ok=True)
    with running("lab", root, "--expose-app-in-browser", f"--LabApp.user_settings_dir={root / 'settings'}",
                 f"--LabApp.workspaces_dir={root / 'workspaces'}") as url:
        done = subprocess.run(["node", str(ROOT / "tests" / "browser" / "run-cells.mjs"), f"{url}/?token=tok",
                               notebook.name, str(shots), cells], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("cells", help="cell indices to run in order, comma-separated (repeats allowed)")
    parser.add_argument("--shots", type=Path, default=ROOT / "artifacts" / "notebook_in_lab")
    parser.add_argument("--sessions", type=int, default=1)
    args = parser.parse_args()
    for k in range(args.sessions):
        seen = session(args.notebook, args.cells, args.shots / f"session{k + 1}")
        print(f"== session {k + 1}")
        for cell in seen["cells"]:
            print(f"-- cell {cell['i']} ({cell['ms']} ms)\n{cell['text']}")
        if seen.get("error") or seen["page_errors"]:
            print("errors:", seen.get("error"), seen["page_errors"])


if __name__ == "__main__":
    main()
