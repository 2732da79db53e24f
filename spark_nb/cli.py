"""spark-nb: the command line.

    spark-nb demo [--model PATH]        the built-in model edits a sample cell (or stream from PATH), with tok/s
    spark-nb bench [--json] [--quick]   engine benchmark against transformers on the same weights
    spark-nb bench --edits              edits of held-out cells: plain greedy against speculative
    spark-nb bench --gguf FILE          pp512/tg64 on a GGUF file beside llama.cpp's llama-bench (--llama-bench PATH)
    spark-nb eval [--model PATH]        edits per family on library code and notebook cells (table or --json)
    spark-nb eval --completion          inline completion on held-out library code: exact next line, accepted chars
    spark-nb models [--json]            the models on this machine spark-nb can load, by the names --model takes
    spark-nb pull REPO [--file F.gguf]  download a model folder or one GGUF file from the Hugging Face hub
    spark-nb warmup                     compile every numba kernel into the on-disk cache
    spark-nb project CONFIG             project decode tok/s and TTFT on a wafer from a config alone
    spark-nb serve [--model M]          the engine behind an OpenAI-compatible server on 127.0.0.1
    spark-nb install-kernel [--user]    install the "Python 3 (spark)" Jupyter kernel (magics preloaded)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

WAFERS = ("wse3", "wse2", "mini")

DEMO_CELL = """def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
"""


def cmd_demo(args) -> int:
    import spark_nb

    if args.model is None:
        return _demo_edit(args)
    engine = spark_nb.load(Path(args.model), wafer=args.wafer, dtype=args.dtype)
    print(engine, file=sys.stderr)
    stream = engine.stream(args.prompt, max_new_tokens=args.max_tokens, temperature=args.temperature,
                           seed=args.seed)
    for event in stream:
        if hasattr(event, "stats"):
            print(f"\n\n[{event.reason}] {_speed(event.stats)}", file=sys.stderr)
        else:
            print(event.text, end="", flush=True)
    return 0


def _demo_edit(args) -> int:
    """The built-in model edits a sample cell, streaming its changed lines as they are written; then the report a
    notebook shows: which exact refactor made the edit or the model's speed, the diff and the guard's verdict."""
    import spark_nb
    from .notebook.view import text_report

    print(DEMO_CELL, file=sys.stderr)

    def progress(partial, tokens, host_s, wafer_s):
        print(f"\r{tokens} tokens, {host_s * 1e3:.0f} ms", end="", file=sys.stderr, flush=True)

    result = spark_nb.edit(DEMO_CELL, args.instruction, wafer=args.wafer, dtype=args.dtype,
                           temperature=args.temperature, seed=args.seed, on_token=progress)
    print("\n", file=sys.stderr)
    print(text_report(args.instruction, DEMO_CELL, result, "would replace the cell" if result.ok else "not applied"),
          end="")
    return 0


def _speed(s) -> str:
    return (f"{s.tokens} tokens | host: TTFT {s.ttft_s * 1e3:.1f} ms, {s.tok_per_s:,.0f} tok/s | projected "
            f"{s.wafer}: TTFT {s.wafer_ttft_s * 1e3:.2f} ms, {s.wafer_tok_per_s:,.0f} tok/s")


def cmd_bench(args) -> int:
    from . import bench

    if args.gguf:
        from . import gguf_bench

        result = gguf_bench.run(args.gguf, args.llama_bench, dtype=args.dtype or gguf_bench.DTYPE,
                                progress=not args.json)
        print(json.dumps(result, indent=2) if args.json else gguf_bench.format_table(result))
        return 0
    if args.edits:
        from .edits import bench as edits_bench

        log = None if args.json else (lambda msg: print(msg, file=sys.stderr))
        result = edits_bench.run(args.model, data=args.data, limit=args.limit, log=log)
        print(json.dumps(result, indent=2) if args.json else edits_bench.format_table(result))
        return 0
    result = bench.run(quick=args.quick, reference=not args.no_reference)
    print(json.dumps(result, indent=2) if args.json else bench.format_table(result))
    return 0


def cmd_eval(args) -> int:
    from . import evaluate

    log = None if args.json else (lambda msg: print(msg, file=sys.stderr))
    if args.completion:
        from .evaluate.completion import completion, format_completion

        result = completion(args.model, data=args.data, split=args.split, n=args.n, style=args.prompts,
                            max_tokens=args.max_tokens or 48, log=log, wafer=args.wafer, dtype=args.dtype)
        print(json.dumps(result, indent=2) if args.json else format_completion(result))
        return 0
    sets = evaluate.SETS if args.set == "all" else (args.set,)
    if args.card:
        from .edits import BUILTIN

        card = evaluate.card_of(args.model or BUILTIN)  # before the evaluation: one without a card fails at once
    result = evaluate.run(args.model, sets=sets, data=args.data, split=args.split, limit=args.limit,
                          model_only=args.model_only, log=log, wafer=args.wafer, dtype=args.dtype,
                          max_new_tokens=args.max_tokens)
    print(json.dumps(result, indent=2) if args.json else evaluate.format_table(result))
    if args.card:
        print(f"wrote the table into {evaluate.write_card(card, result)}", file=sys.stderr)
    return 0


def cmd_models(args) -> int:
    from .model import stores

    models = stores.available()
    if args.json:
        print(json.dumps([{**vars(m), "path": str(m.path)} for m in models], indent=2))
    elif not models:
        print("no models found (built-in, Hugging Face cache, Ollama, LM Studio, SPARK_NB_MODELS); "
              "`spark-nb pull REPO` downloads one", file=sys.stderr)
    else:
        print(stores.table(models))
        for m in models:
            if m.problem:
                print(f"{m.name}: {m.problem}", file=sys.stderr)
    return 0


def cmd_pull(args) -> int:
    from .model.stores.pull import pull

    name, path = pull(args.repo, args.file, revision=args.revision)
    print(f"{path}\nuse it as: spark-nb demo --model {name}   (or spark_nb.load({name!r}), %%spark --model {name})")
    return 0


def cmd_warmup(args) -> int:
    """Compile the kernels for every dtype and both forward shapes (T = 1 and T > 1); numba caches them on disk,
    and the cached code serves any model size."""
    import spark_nb
    from .model.synthetic import write_random_model

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_random_model(tmp, {"family": "qwen2", "vocab_size": 512})
        for dtype in ("int8", "fp32"):
            engine = spark_nb.load(folder, dtype=dtype, context=64)
            engine.logits(list(range(8)))
            for _ in engine.stream([1, 2, 3], max_new_tokens=2, ignore_eos=True):
                pass
    print(f"numba kernels compiled and cached in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_project(args) -> int:
    import spark_nb
    from .model.synthetic import SHAPES, config_dict

    config = args.config
    if config in SHAPES:
        shape = dict(SHAPES[config])
        config = config_dict(shape.pop("family"), **shape)
    projection = spark_nb.project(config, wafer=args.wafer, n_wafers=args.n_wafers, dtype=args.dtype,
                                  context=args.context, prompt=args.prompt)
    print(projection.explain() if args.explain else projection)
    return 0


def cmd_install_kernel(args) -> int:
    from .notebook.kernelspec import install_kernel_spec

    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = install_kernel_spec(args.name, user=prefix is None, prefix=prefix)
    print(f"installed kernelspec {args.name!r} (Python 3 (spark), {sys.executable}) in {path}")
    return 0


def cmd_serve(args) -> int:
    from .serve import serve

    serve(args.model, host=args.host, port=args.port, api_key_env=args.api_key_env, queue_limit=args.queue,
          wafer=args.wafer, dtype=args.dtype, name=args.name, api_key_keyring=args.api_key_keyring)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark-nb", description="Real-time AI code editing on an emulated wafer.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the built-in model edits a sample cell on the emulated wafer (or, with "
                          "--model, streams from a prompt), with host and wafer speed")
    demo.add_argument("--model", help="a Hugging Face model folder to stream --prompt from (default: the built-in "
                      "model edits a sample cell as --instruction says)")
    demo.add_argument("--instruction", default="add type hints", help="for the built-in model's edit")
    demo.add_argument("--prompt", default="def fibonacci(n):\n", help="prompt text (with --model)")
    demo.add_argument("--max-tokens", type=int, default=200, help="tokens to stream (with --model)")
    demo.add_argument("--temperature", type=float, default=0.0)
    demo.add_argument("--seed", type=int)
    demo.add_argument("--wafer", choices=WAFERS, default="wse3")
    demo.add_argument("--dtype", choices=("int8", "fp32"), default="int8")
    demo.set_defaults(run=cmd_demo)

    bench = sub.add_parser("bench", help="engine benchmark (the built-in model, 10M and 0.5B random-weight shapes): "
                           "prefill, TTFT, decode vs transformers and roofline; --edits: held-out edits, plain vs "
                           "speculative")
    bench.add_argument("--json", action="store_true", help="print the full result as JSON")
    bench.add_argument("--quick", action="store_true", help="a tiny shape and few tokens (a smoke test)")
    bench.add_argument("--no-reference", action="store_true", help="skip transformers")
    bench.add_argument("--gguf", metavar="FILE", help="a GGUF file instead: spark-nb's prefill (pp512) and decode "
                       "(tg64) beside llama.cpp's llama-bench on the same file and cores, as ratios and %% of the "
                       "memory roofline")
    bench.add_argument("--llama-bench", metavar="PATH", help="with --gguf: the llama-bench binary (default: "
                       "llama-bench on PATH; without one, spark-nb alone)")
    bench.add_argument("--dtype", choices=("int8", "auto"), help="with --gguf: the weights spark-nb computes in "
                       "(auto: the file's own block formats; default int8)")
    bench.add_argument("--edits", action="store_true", help="edits of held-out cells instead: plain greedy against "
                       "speculative (identical outputs), effective tok/s, acceptance, TTFT, and the ceiling speculation "
                       "could reach (the plain edit over its TTFT)")
    bench.add_argument("--model", help="with --edits: any model spark-nb loads (a folder, a .gguf file, a name "
                       "`spark-nb models` lists, an endpoint; default: the built-in model)")
    bench.add_argument("--data", help="with --edits: a data folder whose test.jsonl to use (default: the test "
                       "sample shipped in the model's folder, else the evaluation's notebook cells)")
    bench.add_argument("--limit", type=int, default=6, help="with --edits: tasks per edit family (default 6)")
    bench.set_defaults(run=cmd_bench)

    ev = sub.add_parser("eval", help="evaluate edits per family on held-out library code and notebook cells: the "
                        "shipped pipeline (exact refactors, the model for the rest) or, with --model-only, the model")
    ev.add_argument("--model", help="any model spark-nb loads: a model folder (the built-in format, or a Hugging Face "
                    "instruct checkpoint with a chat template), a .gguf file, a server (openai:MODEL@URL, or a name "
                    "in the JSON file $SPARK_NB_ENDPOINTS names) (default: the built-in model)")
    ev.add_argument("--model-only", action="store_true", help="send every request to the model, exact refactors "
                    "included (default: what users get, exact refactors done by spark_nb.refactors)")
    ev.add_argument("--set", default="all", choices=("library", "notebook", "all"), help="library: held-out files of "
                    "the training corpus; notebook: notebook cells (pandas, matplotlib, numpy); all (default): both, "
                    "reported apart")
    ev.add_argument("--data", help="with the library set: a data folder from `python -m spark_nb.train data` (default "
                    "artifacts/train/data when it exists, else the split is rebuilt from this machine's corpus)")
    ev.add_argument("--split", default="test", choices=("test", "validation"))
    ev.add_argument("--limit", type=int, help="at most N tasks per family and set (a seeded sample)")
    ev.add_argument("--max-tokens", type=int, help="generated tokens per edit (default: enough to rewrite the cell)")
    ev.add_argument("--wafer", choices=WAFERS, default="wse3")
    ev.add_argument("--dtype", choices=("int8", "fp32"), default="int8")
    ev.add_argument("--json", action="store_true", help="print the full result as JSON")
    ev.add_argument("--card", action="store_true", help="also write the table into the model's card (README.md)")
    ev.add_argument("--completion", action="store_true", help="evaluate inline completion instead of edits: cursors "
                    "in held-out library code (ends of names, open brackets, after `= `, block bodies, line starts), "
                    "completed as the server does; exact next line and accepted characters per suggestion")
    ev.add_argument("--n", type=int, default=300, help="with --completion: cursors, one per unit (default 300)")
    ev.add_argument("--prompts", choices=("auto", "continuation"), default="auto", help="with --completion: the "
                    "server's choice (FIM where the tokenizer has its tokens), or continuation of the text before "
                    "the cursor for any model")
    ev.set_defaults(run=cmd_eval)

    models = sub.add_parser("models", help="list the models on this machine spark-nb can load (built-in, Hugging "
                            "Face cache, Ollama, LM Studio, SPARK_NB_MODELS), by the names --model takes")
    models.add_argument("--json", action="store_true", help="print the list as JSON (with each model's path)")
    models.set_defaults(run=cmd_models)

    pull = sub.add_parser("pull", help="download a model from the Hugging Face hub into its cache (a model folder's "
                          "config, tokenizer and safetensors, or one GGUF file) and print the name to use")
    pull.add_argument("repo", help="a model repository, e.g. Qwen/Qwen2.5-Coder-0.5B-Instruct")
    pull.add_argument("--file", help="one GGUF file of the repo (needed when it holds several)")
    pull.add_argument("--revision", default="main", help="a branch, tag or commit (default: main)")
    pull.set_defaults(run=cmd_pull)

    warm = sub.add_parser("warmup", help="compile every numba kernel into the on-disk cache")
    warm.set_defaults(run=cmd_warmup)

    proj = sub.add_parser("project", help="project decode tok/s and TTFT on a wafer from a model config")
    proj.add_argument("config", help="config.json, a model folder, or a shape name (llama-10m, qwen2.5-0.5b)")
    proj.add_argument("--wafer", choices=WAFERS, default="wse3")
    proj.add_argument("--n-wafers", type=int, default=1)
    proj.add_argument("--dtype", choices=("fp16", "int8", "fp32"), default="fp16")
    proj.add_argument("--context", type=int, default=1024)
    proj.add_argument("--prompt", type=int, default=1024)
    proj.add_argument("--explain", action="store_true",
                      help="each op's cycles and share of a decode step, the design's mechanisms and every constant "
                           "with its source")
    proj.set_defaults(run=cmd_project)

    srv = sub.add_parser("serve", help="the in-process engine behind an OpenAI-compatible server (/v1/models, "
                         "/v1/chat/completions, /v1/completions, streamed or not), wafer stats as extra fields")
    srv.add_argument("--model", help="any model spark-nb loads (default: the built-in model)")
    srv.add_argument("--name", help="the model name clients send (default: builtin, or the folder's name)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port, printed)")
    srv.add_argument("--api-key-env", help="require the API key held in this environment variable")
    srv.add_argument("--api-key-keyring", metavar="NAME", help="... or, when that is unset, the key in the system "
                     "keyring's entry spark-nb/NAME (`keyring set spark-nb NAME`; needs the keyring package)")
    srv.add_argument("--queue", type=int, default=8, help="requests waiting or running before more are refused "
                     "with 429 (one runs at a time, first in, first out; default 8)")
    srv.add_argument("--wafer", choices=WAFERS, default="wse3")
    srv.add_argument("--dtype", choices=("int8", "fp32"), default="int8")
    srv.set_defaults(run=cmd_serve)

    kern = sub.add_parser("install-kernel", help='install the "Python 3 (spark)" Jupyter kernel, magics preloaded')
    where = kern.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user (the default)")
    where.add_argument("--sys-prefix", action="store_true", help="in this environment (sys.prefix), e.g. a venv")
    where.add_argument("--prefix", metavar="PATH", help="under PATH/share/jupyter/kernels")
    kern.add_argument("--name", default="spark", help="kernel name (default: spark)")
    kern.set_defaults(run=cmd_install_kernel)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:  # ModelLoadError, PlacementError, PromptTooLong are ValueErrors
        print(f"spark-nb {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
