"""python -m spark_nb.train: build the data, train, export.  Needs the [train] extra (torch, transformers).

    python -m spark_nb.train data --out artifacts/train/data
    python -m spark_nb.train fit --config cpu --data artifacts/train/data --out artifacts/train/cpu  # --resume
    python -m spark_nb.train export --checkpoint artifacts/train/cpu/checkpoint.pt --out artifacts/train/model
        (add --data artifacts/train/data for the manifest and family counts in the model card)
"""
from __future__ import annotations

import argparse
import json
import sys


def _data(a) -> int:
    from .train import prepare_data

    prepare_data(a.out, vocab_size=a.vocab_size, per_unit=a.per_unit, continuation=a.continuation,
                 limit_files=a.limit_files, include_packages=not a.no_packages,
                 max_files_per_dist=a.max_files_per_dist, seed=a.seed, tokenizer=a.tokenizer)
    return 0


def _fit(a) -> int:
    from .configs import get_config
    from .train import fit

    overrides = {k: v for k, v in (("steps", a.steps), ("max_minutes", a.max_minutes), ("seed", a.seed),
                                   ("device", a.device), ("batch_size", a.batch_size), ("lr", a.lr),
                                   ("threads", a.threads), ("budget_minutes", a.budget_minutes)) if v is not None}
    if a.steps is not None and a.budget_minutes is None:
        overrides["budget_minutes"] = 0.0  # an explicit step count wins over the config's time budget
    changes = {"steps": a.steps} if a.steps is not None else {}  # what a resumed run changes of its config
    for item in a.set or ():
        key, _, value = item.partition("=")
        overrides[key] = changes[key] = json.loads(value)
    cfg = get_config(a.config, **overrides)
    summary = fit(cfg, a.data, a.out, resume=a.resume, stop_after=a.stop_after, changes=changes if a.resume else None,
                  init=a.init)
    print(json.dumps(summary, indent=1))
    return 0 if summary["status"] in ("done", "paused") else 3


def _export(a) -> int:
    from .export import export

    export(a.checkpoint, a.out, dtype=a.dtype, data_dir=a.data)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m spark_nb.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="corpus -> edit tasks, plain units, manifest, tokenizer",
                       description="Build the training data folder from Python already on this machine.")
    d.add_argument("--out", required=True, help="data folder to write")
    d.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary incl. special tokens (4096)")
    d.add_argument("--per-unit", type=int, default=2, help="edit tasks per corpus unit, distinct families (2)")
    d.add_argument("--continuation", type=float, default=0.1, help="share of units that also give a "
                   "continue-the-cell task (0.1)")
    d.add_argument("--limit-files", type=int, default=None, help="cap files per source (quick builds)")
    d.add_argument("--max-files-per-dist", type=int, default=60, help="cap files per installed package (60)")
    d.add_argument("--no-packages", action="store_true", help="standard library only")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--tokenizer", help="reuse this tokenizer folder (e.g. an earlier data folder's tokenizer/) "
                   "instead of training one: to go on training a model on rebuilt data")
    d.set_defaults(func=_data)

    f = sub.add_parser("fit", help="train (or --resume) a config on a data folder",
                       description="Train; checkpoints to OUT/checkpoint.pt, logs to OUT/log.jsonl, plots "
                                   "OUT/loss.svg (and loss.png with matplotlib). SIGTERM / Ctrl-C checkpoint and "
                                   "stop; --resume continues bitwise where it stopped.")
    f.add_argument("--config", default="cpu", help="smoke | cpu | gpu (default cpu)")
    f.add_argument("--data", required=True, help="data folder from `data`")
    f.add_argument("--out", required=True, help="run folder")
    f.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (its config wins, but "
                   "for --max-minutes, --steps and --set: a longer schedule is a warm restart)")
    f.add_argument("--init", metavar="FOLDER", help="start from this model folder's weights (e.g. "
                   "spark_nb/models/builtin): a fine-tune; new tokens (the FIM ones) get fresh embedding rows")
    f.add_argument("--steps", type=int, help="total optimizer steps (sets the schedule's length; turns off the "
                   "config's time budget unless --budget-minutes is given too)")
    f.add_argument("--budget-minutes", type=float, help="measure tok/s over the first 40 steps, then set the step "
                   "count so the whole run takes this long (cpu: 150, gpu: 18)")
    f.add_argument("--max-minutes", type=float, help="checkpoint and stop after this long (resume later)")
    f.add_argument("--stop-after", type=int, help="stop this call after N steps (checkpointed)")
    f.add_argument("--batch-size", type=int)
    f.add_argument("--lr", type=float)
    f.add_argument("--seed", type=int)
    f.add_argument("--device", help="cpu | cuda")
    f.add_argument("--threads", type=int, help="torch CPU threads")
    f.add_argument("--set", action="append", metavar="KEY=JSON",
                   help="override any config field, e.g. --set eval_every=500 --set 'betas=[0.9,0.99]' "
                   "--set family_balance=0.5 (also on --resume: the run goes on with it)")
    f.set_defaults(func=_fit)

    e = sub.add_parser("export", help="checkpoint -> Hugging Face model folder",
                       description="Write config.json, model.safetensors, tokenizer files, manifest and a model "
                                   "card; readable by spark_nb.load and transformers.")
    e.add_argument("--checkpoint", required=True, help="RUN/checkpoint.pt")
    e.add_argument("--out", required=True, help="model folder to write")
    e.add_argument("--data", help="data folder (adds manifest.json and family counts to the card)")
    e.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="weight precision in model.safetensors (fp32)")
    e.set_defaults(func=_export)

    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
