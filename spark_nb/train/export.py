"""Export a training checkpoint as a Hugging Face model folder that spark_nb.load and transformers both read.

    export(out_dir / "checkpoint.pt", "spark_nb/models/spark-edit", data_dir=data_dir)

The folder: config.json (LlamaForCausalLM, tied embeddings), generation_config.json, model.safetensors (fp32, or
fp16/bf16 to halve it), tokenizer.json + tokenizer_config.json (eos <|end|>), manifest.json (the corpus' sources
and licences, when the data folder is given), training.json (config and counters) and a README.md model card whose
metrics section the evaluation fills in later (between the EVAL markers).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .configs import TrainConfig
from .model import build_model, n_params
from ..server.complete import FIM_ORDERS
from .tokenizer import save_tokenizer
from .train import LOG, load_checkpoint

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SAMPLE_PER_FAMILY = 12  # held-out test tasks shipped beside the model
EVAL_BEGIN, EVAL_END = "<!-- EVAL:BEGIN -->", "<!-- EVAL:END -->"


def export(checkpoint, folder, dtype: str = "fp32", data_dir=None, log=print) -> Path:
    from tokenizers import Tokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    checkpoint, folder = Path(checkpoint), Path(folder)
    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"])
    tok = Tokenizer.from_str(ckpt["tokenizer_json"])
    vocab = tok.get_vocab_size(with_added_tokens=True)
    model = build_model(cfg, vocab, ckpt["special"])
    model.load_state_dict(ckpt["model"])
    model.config.use_cache = True  # inference default for transformers users
    model.generation_config.eos_token_id = ckpt["special"]["<|end|>"]
    model.generation_config.pad_token_id = ckpt["special"]["<|pad|>"]
    model = model.to(DTYPES[dtype]).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    save_tokenizer(tok, folder, cfg.fim_order)  # the order its FIM examples were trained in
    data_dir = Path(data_dir) if data_dir else None
    manifest = stats = None
    if data_dir and (data_dir / "manifest.json").exists():
        shutil.copy(data_dir / "manifest.json", folder / "manifest.json")
        manifest = json.loads((data_dir / "manifest.json").read_text())
    if data_dir and (data_dir / "test.jsonl").exists():  # for `spark-nb bench --edits` and the notebooks
        from ..edits.bench import SAMPLE
        from .tasks import read_split, select, write_jsonl

        write_jsonl(select(read_split(data_dir, "test"), SAMPLE_PER_FAMILY), folder / SAMPLE)
    if data_dir and (data_dir / "stats.json").exists():
        stats = json.loads((data_dir / "stats.json").read_text())
    log_path = checkpoint.parent / LOG
    losses = _final_losses(log_path) if log_path.exists() else {}
    training = {"config": ckpt["config"], "state": ckpt["state"], "params": n_params(model), "dtype": dtype,
                "final_losses": losses}
    (folder / "training.json").write_text(json.dumps(training, indent=1) + "\n")
    (folder / "README.md").write_text(model_card(cfg, training, manifest, stats))
    for path in folder.iterdir():  # safetensors writes 0600: a model shipped in a package must be readable by all
        if path.is_file():
            path.chmod(0o644)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    log(f"exported {n_params(model) / 1e6:.2f}M parameters ({dtype}) to {folder}: {size / 1e6:.1f} MB")
    return folder


def _final_losses(log_path: Path) -> dict:
    out = {}
    for line in log_path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out.update({k: r[k] for k in r if (k == "loss" or k.startswith("val_")) and r[k] is not None})
    return out


def model_card(cfg: TrainConfig, training: dict, manifest: dict | None, stats: dict | None) -> str:
    st = training["state"]
    lines = [
        "---", "license: mit", "library_name: transformers", "pipeline_tag: text-generation",
        "tags: [code, python, code-editing, spark-nb]", "---", "",
        "# spark-nb built-in edit model", "",
        "A small Llama-architecture decoder that spark-nb trains itself, offline, on permissively licensed Python "
        "already on the machine, to make line-aligned edits of notebook cells (`%%spark`). Read by "
        "`spark_nb.load()` and by `transformers.AutoModelForCausalLM`.", "",
        "## Architecture", "",
        f"- Llama (`LlamaForCausalLM`): d={cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads "
        f"({cfg.n_kv_heads} key/value), SwiGLU {cfg.ffn}, RMSNorm, RoPE (theta {cfg.rope_theta:g}), tied embeddings",
        f"- {training['params'] / 1e6:.2f}M parameters, weights in {training['dtype']}",
        f"- byte-level BPE tokenizer, {cfg.vocab_size}-token budget, with the edit-format special tokens",
        "",
        "## Prompt format", "",
        "Line-aligned (see `spark_nb/train/format.py`): `[<|context|> cell]* <|instruction|> text <|code|> cell "
        "<|edit|>`, then per input line the model emits `<|line|>`, the driver feeds the line, and the model emits "
        "`<|keep|>`, `<|delete|>` or `<|replace|>` + text, optionally followed by `<|insert|>` + text lines; "
        "`<|end|>` ends the edit. Input lines are fed, not generated: speed figures report generated and output "
        "tokens separately.", "",
        *([f"Inline completion (fill-in-the-middle, `spark_nb/train/fim.py`), {cfg.fim_order.upper()} order "
           "(`fim_order` in tokenizer_config.json): " + " ".join(f"`{p}`" if p.startswith("<|") else p
                                                                 for p in FIM_ORDERS[cfg.fim_order])
           + ", then the middle and `<|end|>` (head: the earlier cells, a blank line, the text before the cursor).",
           ""] if any(p.kind == "fim" for p in cfg.phases) else []),
        "## Training", "",
        f"- config `{cfg.name}`: {cfg.steps} steps, batch {cfg.batch_size}, AdamW lr {cfg.lr:g} (warmup "
        f"{cfg.warmup_steps}, cosine to {cfg.min_lr_ratio:g}x), weight decay {cfg.weight_decay:g}, grad clip "
        f"{cfg.grad_clip:g}, {cfg.dtype} autocast on {cfg.device}, seed {cfg.seed}",
        "- phases: " + "; ".join(f"{p.name} ({p.kind}, {p.fraction:.0%} of steps, <= {p.max_len} tokens)"
                                 for p in cfg.phases)
        + (f"; edit families drawn as size ** {cfg.family_balance:g}" if cfg.family_balance != 1.0 else ""),
        f"- trained {st['step']} steps, {st['tokens'] / 1e6:.1f}M tokens ({st['targets'] / 1e6:.1f}M supervised), "
        f"{st['elapsed'] / 3600:.2f} h",
        "- final losses (target tokens): " + (", ".join(f"{k} {v:.4f}" for k, v in
                                                        training["final_losses"].items()) or "n/a"),
        "",
        "## Data and licences", "",
    ]
    if manifest:
        lines += [f"{manifest['total_units']:,} cell-sized units from {manifest['total_files']:,} files "
                  f"(Python {manifest['python']}), split train / validation / test by file. Sources "
                  "(`manifest.json` lists them all):", "",
                  "| source | version | licence | files | units |", "|---|---|---|---|---|"]
        lines += [f"| {e['source']} | {e['version']} | {e['license']} | {e['files']} | {e['units']} |"
                  for e in manifest["sources"]]
    else:
        lines.append("(manifest not given at export)")
    lines += ["", "## Edit families", ""]
    if stats and stats.get("families", {}).get("train"):
        lines += ["| family | train tasks | test tasks |", "|---|---|---|"]
        test = stats["families"].get("test", {})
        lines += [f"| {f} | {n:,} | {test.get(f, 0):,} |" for f, n in stats["families"]["train"].items()]
    else:
        lines.append("(family counts not given at export)")
    lines += ["", "## Metrics", "", EVAL_BEGIN,
              "Not evaluated yet: `spark-nb eval` fills this section (per family, on the test split: parses, "
              "semantics preserved, requested change present, exact match, tok/s).", EVAL_END, "",
              "## Limits", "",
              "- A model this small edits short cells best; long cells and rare families fail more often.",
              "- Only Python. Outputs are checked by spark-nb's guard (must parse) before a cell is replaced.",
              "- Trained on library code, not notebooks: notebook idioms are under-represented.", ""]
    return "\n".join(lines)
