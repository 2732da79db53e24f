"""Inline completion latency in a real browser: keystroke -> first ghost character, over spark-nb's persistent
WebSocket and over one HTTP request each, with the built-in model.

    python bench/completion_latency.py [--trials 40] [--pings 200]

Starts JupyterLab (spark-nb's server extension and labextension as installed), opens a notebook in Debian's headless
Chromium (tests/browser/completion.mjs, playwright-core), and types into a cell one key at a time (a character, then
Backspace, ...), each key given time for its suggestion, first with the provider's transport set to the socket,
then to HTTP. Per keystroke, in the page:

- ghost: keydown -> the first streamed character of the ghost text in the DOM (the debounce is 0: the full path,
  keystroke handler, request, prefill, first token, back, JupyterLab's inline completer, CodeMirror);
- per request: sent -> its first token arrived (round trip), and the engine's own TTFT (Stats.ttft_s); the
  difference is the overhead (the server's queueing, the socket or the POST, the browser's handling), split into
  the server's own part (the request's arrival -> its first token sent, from the done message) and the rest
  (browser <-> server: the transport, the browser's event loop);
- legs: where a keystroke's request spends its time (the page's clock beside the server's wall clock, one machine),
  and when the page's main thread was free meanwhile (a task posted after the send, the next frame);
- ping: the transport's own round trip on an idle page, no model: a ping on the provider's socket against a POST to
  /spark-nb/ping on a kept-alive connection, then on a new connection each (the server answers `Connection: close`);
- echo: keydown -> the key's own character in the cell's source, with completion on and off (typing must not slow);
- debounce: a burst of 6 keys 90 ms apart at debounce 0, 50, 100 and 200 ms: how many requests the burst sent (each
  cancels the one before it) and the last key -> its first ghost character.

Needs /usr/bin/chromium, node and `npm ci --prefix tests/browser`. tests/test_browser.py runs the same script
(fewer trials) and asserts on it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ROOT / "tests" / "browser"
CELLS = ("import math\n\nPI = math.pi", "def area(r):\n    return math.")  # context, the cell typed into
NOTEBOOK = "complete.ipynb"


def write_notebook(root: Path) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nbformat.write(nb, root / NOTEBOOK)
    return NOTEBOOK


def quiet_settings(root: Path) -> Path:
    """A settings folder with no news toast over the cells (the failed-model step counts toasts)."""
    news = root / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    return root / "settings"


def run(url: str, notebook: str, shots: Path, trials: int, pings: int = 200) -> dict:
    """completion.mjs against a running lab (url with ?token=...): what it saw, as a dict."""
    shots.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["node", str(BROWSER / "completion.mjs"), url, notebook, str(shots), str(trials),
                           str(pings)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _p(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarize(seen: dict) -> dict:
    """p50 / p90 (ms) of each measurement, per transport; `missed`: keystrokes whose suggestion showed nothing."""
    lat = seen["steps"]["latency"]
    out = {}
    for transport in ("websocket", "http"):
        keys = lat[transport]
        ghost = [k["ghost"] for k in keys if k["ghost"] is not None]
        reqs = [r for r in lat[f"{transport}_requests"] if r["first"] is not None and r["ttft"] is not None]
        trip = [r["first"] - r["sent"] for r in reqs]
        over = [r["first"] - r["sent"] - r["ttft"] for r in reqs]
        server = [r["server"] for r in reqs if r.get("server") is not None]
        wire = [r["first"] - r["sent"] - r["server"] for r in reqs if r.get("server") is not None]
        out[transport] = {
            "keystrokes": len(keys), "missed": len(keys) - len(ghost),
            "ghost_p50": _p(ghost, 50), "ghost_p90": _p(ghost, 90),
            "first_token_p50": _p(trip, 50), "first_token_p90": _p(trip, 90),
            "engine_ttft_p50": _p([r["ttft"] for r in reqs], 50),
            "overhead_p50": _p(over, 50), "overhead_p90": _p(over, 90),
            "server_first_token_p50": _p(server, 50), "wire_p50": _p(wire, 50), "wire_p90": _p(wire, 90),
            "echo_p50": _p([k["echo"] for k in keys if k["echo"] is not None], 50),
        }
    off = [k["echo"] for k in lat["off"] if k["echo"] is not None]
    out["off"] = {"keystrokes": len(lat["off"]), "echo_p50": _p(off, 50), "echo_p90": _p(off, 90)}
    out["debounce"] = seen["steps"].get("debounce", [])
    out["legs"] = legs(lat.get("trace"), lat)
    ping = seen["steps"].get("ping")
    if ping:
        out["ping"] = {k: {"n": len(v), "p50": _p(v, 50), "p90": _p(v, 90)}
                       for k, v in ping.items() if k != "connections"}
        out["ping"]["connections"] = ping["connections"]
    return out


LEGS = ("keydown -> provider asked", "asked -> sent", "sent -> server has it", "in the server",
        "server's first token -> page has it", "page has it -> ghost text's stream")
MAIN = ("keydown -> a task posted after the send ran", "keydown -> next frame began",
        "keydown -> that frame rendered", "keydown -> page has the first token")


def legs(trace: dict | None, lat: dict) -> dict:
    """p50 (ms) of each leg of a keystroke's request, per transport: the page's clock and the server's wall clock
    (on one machine) set side by side with the page's timeOrigin. The server's arrival is when its handler started
    the completion (after Tornado read and parsed the message)."""
    if not trace:
        return {}
    sent = {r["id"]: r for t in ("websocket", "http") for r in lat[f"{t}_requests"]}
    out = {}
    for t in trace["requests"]:
        r, done = sent.get(t.get("id")), t.get("done") or {}
        if r is None or r["first"] is None or t["push"] is None or done.get("server_received_at") is None:
            continue
        arrived = done["server_received_at"] - trace["time_origin"]
        first_out = arrived + done["server_first_token_ms"]
        points = (t["key"], t["asked"], r["sent"], arrived, first_out, t["push"], r["first"])
        main = [t[k] - t["key"] if t[k] is not None else float("nan") for k in ("task", "frame", "rendered")]
        out.setdefault(r["transport"], []).append([b - a for a, b in zip(points, points[1:])] + main
                                                  + [t["push"] - t["key"]])
    return {transport: {name: _p([row[i] for row in rows], 50) for i, name in enumerate(LEGS + MAIN)}
            | {"n": len(rows)} for transport, rows in out.items()} | {"long_tasks": len(trace["long_tasks"])}


def table(summary: dict) -> str:
    rows = ["| transport | keystroke -> first ghost char p50 / p90 | request -> first token p50 | engine TTFT p50 |"
            " overhead p50 / p90 | in the server p50 | browser <-> server p50 / p90 | missed |",
            "|---|---|---|---|---|---|---|---|"]
    for name in ("websocket", "http"):
        s = summary[name]
        rows.append(f"| {name} | {s['ghost_p50']:.1f} / {s['ghost_p90']:.1f} ms | {s['first_token_p50']:.1f} ms | "
                    f"{s['engine_ttft_p50']:.1f} ms | {s['overhead_p50']:.1f} / {s['overhead_p90']:.1f} ms | "
                    f"{s['server_first_token_p50']:.1f} ms | {s['wire_p50']:.1f} / {s['wire_p90']:.1f} ms | "
                    f"{s['missed']} of {s['keystrokes']} |")
    ws, http = summary["websocket"], summary["http"]
    rows.append("")
    rows.append(f"overhead, socket / HTTP (p50): {ws['overhead_p50'] / http['overhead_p50']:.2f}x; typing echo p50: "
                f"{ws['echo_p50']:.1f} ms with completion, {summary['off']['echo_p50']:.1f} ms without")
    if summary.get("legs"):
        rows += ["", "| a keystroke's request, p50 | " + " | ".join(LEGS) + " |", "|---" * (len(LEGS) + 1) + "|"]
        for name in ("websocket", "http"):
            if name in summary["legs"]:
                rows.append(f"| {name} | " + " | ".join(f"{summary['legs'][name][k]:.1f} ms" for k in LEGS) + " |")
        rows += ["", "| the page's main thread, p50 | " + " | ".join(MAIN) + " |", "|---" * (len(MAIN) + 1) + "|"]
        for name in ("websocket", "http"):
            if name in summary["legs"]:
                rows.append(f"| {name} | " + " | ".join(f"{summary['legs'][name][k]:.1f} ms" for k in MAIN) + " |")
        rows.append(f"long tasks (> 50 ms) on the page's main thread during the keystrokes: "
                    f"{summary['legs']['long_tasks']}")
    if summary.get("ping"):
        p = summary["ping"]
        rows += ["", "| no-op round trip on an idle page | p50 | p90 | n | connections |", "|---|---|---|---|---|"]
        for name, what in (("websocket", "ping on the persistent WebSocket"),
                           ("http", "POST /spark-nb/ping, kept-alive connection"),
                           ("http_new_connection", "POST /spark-nb/ping, a new connection each")):
            rows.append(f"| {what} | {p[name]['p50']:.2f} ms | {p[name]['p90']:.2f} ms | {p[name]['n']} | "
                        f"{p['connections'].get(name, 1)} |")
        rows.append(f"round trip, socket / HTTP (p50): {p['websocket']['p50'] / p['http']['p50']:.2f}x kept alive, "
                    f"{p['websocket']['p50'] / p['http_new_connection']['p50']:.2f}x new connections")
    for d in summary.get("debounce", []):
        rows.append(f"debounce {d['debounce']:>3} ms: a 6-key burst (90 ms apart) sent {d['requests']} requests; "
                    f"last key -> first ghost char {d['ghost']:.1f} ms" if d["ghost"] is not None else
                    f"debounce {d['debounce']:>3} ms: {d['requests']} requests, no ghost text")
    return "\n".join(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=40, help="keystrokes per transport")
    ap.add_argument("--pings", type=int, default=200, help="no-op round trips per transport")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from live_server import running

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        notebook = write_notebook(root)
        settings = quiet_settings(root)
        with running("lab", root, "--expose-app-in-browser", f"--LabApp.user_settings_dir={settings}",
                     f"--LabApp.workspaces_dir={root / 'workspaces'}") as url:
            seen = run(f"{url}/?token=tok", notebook, root / "shots", args.trials, args.pings)
    if "error" in seen:
        raise SystemExit(f"the browser run failed: {seen['error']}")
    summary = summarize(seen)
    print(table(summary))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
