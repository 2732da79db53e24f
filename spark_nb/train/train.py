"""Training loop for the built-in edit model: seeded, deterministic, resumable, logged.

    fit(get_config("cpu"), data_dir, out_dir)             # fresh run
    fit(get_config("cpu"), data_dir, out_dir, resume=True) # continue from out_dir/checkpoint.pt

Data (written by `python -m spark_nb.train data`) is encoded once per tokenizer and cached in out_dir/cache/
(so the data folder stays small enough to carry to a GPU machine).
Phases (configs.Phase) run one after another: plain code with every token supervised, then line-aligned edits
with short ones first (the curriculum).  Within a phase, each epoch is a seeded permutation (of edits drawn per
family by `family_balance`), cut into windows of `bucket_batches` batches that are sorted by length (little
padding), whose batches are then shuffled.  The data position is (phase, epoch, batch), so the order is a pure
function of the seed and a resumed run sees exactly the batches an uninterrupted one would: parameters after
resuming are bitwise those of a straight run.

Every `ckpt_every` steps, at the end, on SIGTERM / Ctrl-C and at `max_minutes`, out_dir/checkpoint.pt gets the
model, optimizer, scheduler, data position, step, counters and RNG states (written to a temporary file, then
renamed).  out_dir/log.jsonl gets train loss (target tokens only), lr, tokens and tok/s every `log_every` steps and
validation losses every `eval_every` steps; out_dir/loss.svg (always) and loss.png (with matplotlib) plot them.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from .configs import TrainConfig
from .format import EditFormat
from .model import build_model, forward_loss, n_params
from .tasks import EditTask
from .tokenizer import has_fim, load_tokenizer, save_tokenizer, special_ids, with_fim

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"


# ------------------------------------------------------------------------------------------------ data
def read_records(path: Path) -> list[dict]:
    """JSON lines from path, or from path + '.gz' when only the compressed file exists."""
    path = Path(path)
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Examples:
    """Encoded examples of one kind and split: a flat id array, a flat loss mask and offsets; for edits, each
    example's family (an index into `families`; plain code has none: -1)."""

    def __init__(self, ids: np.ndarray, mask: np.ndarray, offsets: np.ndarray, groups: np.ndarray | None = None,
                 families: tuple[str, ...] = ()):
        self.ids, self.mask, self.offsets = ids, mask, offsets
        self.lengths = np.diff(offsets)
        self.groups = np.full(len(self.lengths), -1, np.int16) if groups is None else groups
        self.families = tuple(families)

    def __len__(self) -> int:
        return len(self.lengths)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.mask[a:b]

    @classmethod
    def build(cls, pairs: list[tuple[np.ndarray, np.ndarray]], families: list[str] | None = None) -> "Examples":
        """From (ids, mask) pairs and, for edits, each pair's family name."""
        names = sorted(set(families)) if families else []
        groups = np.array([names.index(f) for f in families], np.int16) if families else None
        offsets = np.zeros(len(pairs) + 1, np.int64)
        offsets[1:] = np.cumsum([len(p[0]) for p in pairs])
        ids = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int32)
        ids = ids.astype(np.uint16 if ids.size == 0 or ids.max() < 2**16 else np.int32)  # half the cache
        mask = np.concatenate([p[1] for p in pairs]).astype(np.uint8) if pairs else np.zeros(0, np.uint8)
        return cls(ids, mask, offsets, groups, names)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ids=self.ids, mask=self.mask, offsets=self.offsets, groups=self.groups,
                 families=np.array(self.families, dtype=str))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Examples":
        z = np.load(path)
        return cls(z["ids"], z["mask"], z["offsets"], z["groups"], tuple(str(f) for f in z["families"]))


def _encode_tasks(fmt: EditFormat, tasks: list[EditTask], max_len: int) -> tuple[list, list[str]]:
    """(ids, mask) of the tasks that fit in max_len, and their families."""
    out, families, chunk = [], [], 512
    for a in range(0, len(tasks), chunk):
        part = tasks[a:a + chunk]
        encoded = fmt.encode_segments([fmt.edit_segments(t) for t in part])
        for t, (ids, mask) in zip(part, encoded):
            if len(ids) > max_len and t.context:  # too long: drop the notebook context first
                ids, mask = fmt.encode_example(EditTask(t.family, t.instruction, t.before, t.after, [], t.meta))
            if len(ids) <= max_len:
                out.append((ids, mask))
                families.append(t.family)
    return out, families


def _encode_plain(fmt: EditFormat, texts: list[str], max_len: int) -> list:
    out = []
    for a in range(0, len(texts), 512):
        for ids, mask in fmt.encode_segments([fmt.plain_segments(t) for t in texts[a:a + 512]]):
            out.append((ids[:max_len], mask[:max_len]))  # plain code may be cut: every token is a target
    return out


def _encode_fim(fmt: EditFormat, records: list[dict], max_len: int, seed: int, order: str) -> list:
    """Fill-in-the-middle examples (fim.py) from the plain units, one cursor per unit, prompts in `order`: those
    over max_len lose their context cells, then are dropped."""
    from . import fim

    out = []
    exs = fim.examples(records, seed)
    for a in range(0, len(exs), 512):
        part = exs[a:a + 512]
        for e, (ids, mask) in zip(part, fim.encode(fmt, part, order)):
            if len(ids) > max_len and e.context:
                ids, mask = fim.encode(fmt, [fim.FimExample(e.prefix, e.middle, e.suffix, "", e.kind)], order)[0]
            if len(ids) <= max_len:
                out.append((ids, mask))
    return out


FIM_LAYOUT = 1  # bump when fim.py draws or encodes differently: the cached examples are rebuilt


def load_examples(data_dir: Path, fmt: EditFormat, kind: str, split: str, max_len: int, cache_dir: Path | None = None,
                  log=print, seed: int = 0, fim_order: str = "psm") -> Examples:
    """Encoded `kind` ("edit" | "plain" | "fim") examples of `split`, cached in cache_dir (default data_dir/cache) by
    tokenizer, source file and max_len (and for fim, the seed that draws the cursors and the prompts' order)."""
    data_dir = Path(data_dir)
    name = f"{split}.jsonl" if kind == "edit" else f"plain_{split}.jsonl"  # fim: cursors drawn in the plain units
    src = data_dir / name if (data_dir / name).exists() else data_dir / (name + ".gz")
    if not src.exists():
        raise FileNotFoundError(f"{data_dir / name}: run `python -m spark_nb.train data --out {data_dir}` first")
    st = src.stat()
    layout = "families"  # caches written before examples carried their family are encoded again
    if kind == "fim":
        layout += f"|fim{FIM_LAYOUT}|{seed}" + (f"|{fim_order}" if fim_order != "psm" else "")  # psm: caches of before
    key = hashlib.sha1(f"{layout}|{fmt.tok.to_str()}|{src.name}|{st.st_size}|{st.st_mtime_ns}|{max_len}".encode())
    key = key.hexdigest()
    cache = Path(cache_dir or data_dir / "cache") / f"{kind}-{split}-{key[:12]}.npz"
    if cache.exists():
        return Examples.load(cache)
    t0 = time.perf_counter()
    records = read_records(src)
    if kind == "edit":
        ex = Examples.build(*_encode_tasks(fmt, [EditTask.from_dict(r) for r in records], max_len))
    elif kind == "fim":
        ex = Examples.build(_encode_fim(fmt, records, max_len, seed, fim_order), families=None)
    else:
        ex = Examples.build(_encode_plain(fmt, [r["text"] for r in records], max_len))
    cache.parent.mkdir(parents=True, exist_ok=True)
    ex.save(cache)
    log(f"encoded {len(ex):,} of {len(records):,} {kind} {split} examples ({int(ex.lengths.sum()):,} tokens) "
        f"in {time.perf_counter() - t0:.1f}s")
    return ex


def prepare_data(out_dir, vocab_size: int = 4096, per_unit: int = 2, continuation: float = 0.1,
                 limit_files: int | None = None, include_packages: bool = True, max_files_per_dist: int | None = 60,
                 seed: int = 0, tokenizer: str | Path | None = None, log=print) -> dict:
    """Corpus -> data folder: edit tasks and plain units per split, manifest, stats and the tokenizer.

    train.jsonl.gz / plain_train.jsonl.gz (gzip, deterministic bytes), validation and test as plain .jsonl (the
    evaluation reads test.jsonl with tasks.read_jsonl), manifest.json, stats.json, tokenizer/.  ``tokenizer`` (a
    folder with tokenizer.json: an earlier data folder's tokenizer/, a run's, a model's) is copied instead of
    training a new one, so that a model trained on older data can go on training on this."""
    from .corpus import SPLITS, build_corpus
    from .tasks import family_counts, split_tasks
    from .tokenizer import train_tokenizer, training_texts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corpus = build_corpus(limit_files=limit_files, include_packages=include_packages,
                          max_files_per_dist=max_files_per_dist)
    log(f"corpus: {corpus.n_files:,} files, " + ", ".join(f"{s} {len(corpus.split(s)):,}" for s in SPLITS)
        + f" units ({time.perf_counter() - t0:.0f}s)")
    stats = {"corpus": corpus.stats(), "families": {}, "seed": seed, "per_unit": per_unit}
    tasks = {}
    for split in SPLITS:
        units = corpus.split(split)
        tasks[split] = split_tasks(units, split, seed, per_unit=per_unit, continuation=continuation)
        stats["families"][split] = family_counts(tasks[split])
        gz = split == "train"
        _write_records(out / f"{split}.jsonl", (t.to_dict() for t in tasks[split]), gz)
        _write_records(out / f"plain_{split}.jsonl", ({"text": u.text, "source": u.source, "path": u.path,
                                                        "kind": u.kind} for u in units), gz)
        log(f"{split}: {len(tasks[split]):,} edit tasks ({time.perf_counter() - t0:.0f}s)")
    corpus.manifest.write(out / "manifest.json")
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
        special_ids(tok)  # an edit-format tokenizer, or a clear error
    else:
        tok = train_tokenizer(training_texts(corpus.train, tasks["train"]), vocab_size)
    save_tokenizer(tok, out / "tokenizer")
    stats["vocab_size"] = tok.get_vocab_size(with_added_tokens=True)
    (out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    log(f"tokenizer: {stats['vocab_size']} tokens; data in {out} ({time.perf_counter() - t0:.0f}s)")
    return stats


def _write_records(path: Path, records, gz: bool) -> None:
    for old in (path, Path(str(path) + ".gz")):  # never leave a stale copy in the other form
        old.unlink(missing_ok=True)
    if gz:
        with open(str(path) + ".gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            for r in records:
                f.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    else:
        with open(path, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------ batches
class Batcher:
    """Deterministic length-bucketed batches for each phase; `pos` = [phase, epoch, batch] is the whole state."""

    def __init__(self, cfg: TrainConfig, data: dict[str, Examples]):
        self.cfg, self.data = cfg, data
        self.pools = []
        for p in cfg.phases:
            ex = data[p.kind]
            pool = np.flatnonzero(ex.lengths <= p.max_len)
            if len(pool) == 0:
                raise ValueError(f"phase {p.name!r}: no {p.kind} example is at most {p.max_len} tokens")
            self.pools.append(pool)
        self._plan_key = None
        self._plan: list[np.ndarray] = []

    def plan(self, phase: int, epoch: int) -> list[np.ndarray]:
        if self._plan_key != (phase, epoch):
            ex = self.data[self.cfg.phases[phase].kind]
            bs, lengths = self.cfg.batch_size, ex.lengths
            rng = np.random.default_rng([self.cfg.seed, phase, epoch])
            pool = self.pools[phase]
            if self.cfg.family_balance != 1.0 and ex.families:
                pool = balanced(pool, ex.groups[pool], self.cfg.family_balance, rng)
            perm = rng.permutation(pool)
            window = bs * self.cfg.bucket_batches
            batches = []
            for a in range(0, len(perm), window):
                w = perm[a:a + window]
                w = w[np.argsort(lengths[w], kind="stable")]
                batches += [w[b:b + bs] for b in range(0, len(w), bs)]
            order = rng.permutation(len(batches))
            self._plan, self._plan_key = [batches[i] for i in order], (phase, epoch)
        return self._plan

    def next(self, pos: list[int], phase: int) -> np.ndarray:
        """The batch at pos (moved to `phase` if it changed), advancing pos in place."""
        if pos[0] != phase:
            pos[:] = [phase, 0, 0]
        plan = self.plan(pos[0], pos[1])
        if pos[2] >= len(plan):
            pos[1], pos[2] = pos[1] + 1, 0
            plan = self.plan(pos[0], pos[1])
        batch = plan[pos[2]]
        pos[2] += 1
        return batch


def balanced(pool: np.ndarray, groups: np.ndarray, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """An epoch of len(pool) examples in which each group's count goes as (its size in pool) ** alpha: a group
    drawn less than its size gets a random subset, one drawn more gets whole shuffled passes, then a subset."""
    names, sizes = np.unique(groups, return_counts=True)
    weight = sizes.astype(np.float64) ** alpha
    counts = np.floor(len(pool) * weight / weight.sum()).astype(np.int64)
    counts[np.argsort(-weight, kind="stable")[: len(pool) - counts.sum()]] += 1  # the remainder, largest first
    out = []
    for g, n in zip(names, counts):
        members = pool[groups == g]
        passes = [rng.permutation(members) for _ in range(-(-n // len(members)))]
        out.append(np.concatenate(passes)[:n])
    return np.concatenate(out)


def collate(ex: Examples, idx: np.ndarray, pad_id: int, multiple: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, T] int64 and loss mask [B, T] (padding: mask 0).  Causal attention never lets a real
    token see the padding after it, so no attention mask is needed."""
    T = int(ex.lengths[idx].max())
    T = (T + multiple - 1) // multiple * multiple
    ids = np.full((len(idx), T), pad_id, np.int64)
    mask = np.zeros((len(idx), T), np.uint8)
    for r, i in enumerate(idx):
        a, m = ex.get(int(i))
        ids[r, :len(a)], mask[r, :len(m)] = a, m
    return torch.from_numpy(ids), torch.from_numpy(mask)


# ------------------------------------------------------------------------------------------------ schedule
def lr_lambda(cfg: TrainConfig):
    """Linear warmup to 1, then cosine to min_lr_ratio at the last step (a factor on cfg.lr)."""

    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _autocast(cfg: TrainConfig):
    dev = "cuda" if cfg.device.startswith("cuda") else "cpu"
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=cfg.dtype == "bf16")


@torch.no_grad()
def evaluate(model, cfg: TrainConfig, ex: Examples, pad_id: int, device) -> float | None:
    """Mean target-token loss over the first `eval_batches` length-sorted batches of a fixed sample."""
    if len(ex) == 0:
        return None
    rng = np.random.default_rng([cfg.seed, 999])
    idx = rng.permutation(len(ex))[: cfg.eval_batches * cfg.batch_size]
    idx = idx[ex.lengths[idx] <= cfg.max_len]
    idx = idx[np.argsort(ex.lengths[idx], kind="stable")]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for a in range(0, len(idx), cfg.batch_size):
        ids, mask = collate(ex, idx[a:a + cfg.batch_size], pad_id)
        with _autocast(cfg):
            loss, n = forward_loss(model, ids.to(device), mask.to(device))
        total, count = total + float(loss) * n, count + n
    model.train(was_training)
    return total / max(count, 1)


# ------------------------------------------------------------------------------------------------ fine-tuning
@torch.no_grad()
def init_from(model, folder, tok, log=print) -> None:
    """Load a model folder's weights (model.safetensors) into `model`, whose shape must match but for the vocabulary:
    the folder's tokenizer ids must keep their meaning in `tok` (a tokenizer that only added tokens after them);
    rows of tokens the folder lacks start as the mean of its rows plus noise of the init scale."""
    from safetensors.torch import load_file

    folder = Path(folder)
    old = load_tokenizer(folder)
    n_old = old.get_vocab_size(with_added_tokens=True)
    for t, i in old.get_vocab(with_added_tokens=True).items():
        if tok.token_to_id(t) != i:
            raise ValueError(f"{folder}: token {t!r} has id {i} there but {tok.token_to_id(t)} in this tokenizer")
    weights = load_file(str(folder / "model.safetensors"))
    state = model.state_dict()
    name = "model.embed_tokens.weight"
    emb = weights[name].float()
    new = state[name].clone()
    new[:n_old] = emb[:n_old]
    n_new = tok.get_vocab_size(with_added_tokens=True)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(n_new - n_old, emb.shape[1], generator=gen) * float(emb[:n_old].std()) * 0.1
    new[n_old:n_new] = emb[:n_old].mean(0) + noise
    weights[name] = new
    weights.pop("lm_head.weight", None)  # tied
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not fit this config (missing {missing}, unexpected {unexpected})")
    log(f"initialised from {folder}: {n_old} token rows kept, {n_new - n_old} new")


# ------------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, model, opt, sched, cfg: TrainConfig, state: dict, tokenizer_json: str,
                    special: dict) -> None:
    ckpt = {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "config": cfg.to_dict(), "state": state, "tokenizer_json": tokenizer_json, "special": special,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=False)


class _Stop:
    """SIGTERM / SIGINT set a flag that the loop checks between steps (a second Ctrl-C interrupts at once)."""

    def __init__(self):
        self.flag = None
        self.old = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.flag is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.flag = signal.Signals(signum).name

        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self.old[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread: no handlers, the loop still stops at max_minutes/steps
                pass
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


# ------------------------------------------------------------------------------------------------ fit
def fit(cfg: TrainConfig, data_dir, out_dir, resume: bool = False, stop_after: int | None = None,
        log=print, changes: dict | None = None, init=None) -> dict:
    """Train (or continue) and return a summary.  `stop_after` ends this call after that many steps (with a
    checkpoint), as an interruption would; the schedule still runs to cfg.steps. Resuming keeps the checkpoint's
    config but for cfg.max_minutes and `changes`, fields deliberately changed from here on, e.g. {"steps": N}, a new
    length for the schedule: longer, it is a warm restart (the learning rate goes back up the cosine to where the
    new length puts the current step); {"family_balance": 0.5}, a new mix of the data."""
    threads = torch.get_num_threads()
    try:
        return _fit(cfg, data_dir, out_dir, resume, stop_after, log, changes or {}, init)
    finally:
        torch.set_num_threads(threads)


def _fit(cfg: TrainConfig, data_dir, out_dir, resume: bool, stop_after: int | None, log, changes: dict,
         init=None) -> dict:
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out_dir / CHECKPOINT, out_dir / LOG
    ckpt = None
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no {ckpt_path}; start without --resume")
        ckpt = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(ckpt["config"])
        if saved.replace(max_minutes=cfg.max_minutes) != cfg.replace(name=saved.name):
            log("note: resuming with the checkpoint's config (the one given differs)")
        cfg = saved.replace(max_minutes=cfg.max_minutes, **changes)
        if ckpt["state"]["step"] > cfg.steps:
            raise ValueError(f"--steps {cfg.steps}: the checkpoint is at step {ckpt['state']['step']} already")
        for key in (k for k in changes if getattr(saved, k) != getattr(cfg, k)):
            log(f"{key}: {getattr(saved, key)!r} -> {getattr(cfg, key)!r} from step {ckpt['state']['step']}")
    if cfg.threads and cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)

    device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    tok_json = ckpt["tokenizer_json"] if ckpt else load_tokenizer(data_dir / "tokenizer").to_str()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tok_json)
    if not ckpt and any(p.kind == "fim" for p in cfg.phases) and not has_fim(tok):
        tok_json = with_fim(tok).to_str()  # the FIM tokens come after every existing id
    fmt = EditFormat(tok)
    special = special_ids(tok)
    pad = special["<|pad|>"]
    vocab = tok.get_vocab_size(with_added_tokens=True)
    save_tokenizer(tok, out_dir / "tokenizer", cfg.fim_order)

    kinds = sorted({p.kind for p in cfg.phases})
    cache = out_dir / "cache"
    train = {k: load_examples(data_dir, fmt, k, "train", cfg.max_len, cache, log, cfg.seed, cfg.fim_order)
             for k in kinds}
    val = {k: load_examples(data_dir, fmt, k, "validation", cfg.max_len, cache, log, cfg.seed, cfg.fim_order)
           for k in kinds}
    batcher = Batcher(cfg, train)

    model = build_model(cfg, vocab, special).to(device)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas,
                            fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    state = {"step": 0, "pos": [0, 0, 0], "tokens": 0, "targets": 0, "elapsed": 0.0}
    if init is not None and not ckpt:
        init_from(model, init, tok, log)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        np.random.set_state(ckpt["rng"]["numpy"])
        random.setstate(ckpt["rng"]["python"])
        if ckpt["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        if log_path.exists():  # a hard kill may have logged steps after the checkpoint: they will be redone
            kept = [x for x in log_path.read_text().splitlines() if x.strip() and
                    json.loads(x)["step"] <= state["step"]]
            log_path.write_text("".join(x + "\n" for x in kept))
        log(f"resumed at step {state['step']} of {cfg.steps}")
    else:
        log_path.write_text("")
        sizes = ", ".join(f"{k}: {len(v):,} train examples" for k, v in train.items())
        log(f"model: {n_params(model) / 1e6:.2f}M parameters; {sizes}")
    step_model = torch.compile(model) if cfg.compile else model
    if init is not None and not ckpt:  # where the fine-tune starts from, on the same validation examples
        rec = {"step": 0, **{f"val_{k}": evaluate(model, cfg, v, pad, device) for k, v in val.items()}}
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        log("  validation at the start " + "  ".join(f"{k} {v:.4f}" for k, v in rec.items()
                                                     if k != "step" and v is not None))

    bounds = np.cumsum(cfg.phase_steps())

    def phase_of(step: int) -> int:
        return int(np.searchsorted(bounds, step, side="right"))

    def write_log(rec: dict) -> None:
        with open(log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, model, opt, sched, cfg, state, tok_json, special)

    t_start = time.perf_counter()
    elapsed0 = state["elapsed"]
    win = {"loss": 0.0, "n": 0, "tokens": 0, "t": time.perf_counter()}
    status = "done"
    first = state["step"]
    t_calib = None
    with _Stop() as stop:
        while state["step"] < cfg.steps:
            step = state["step"]
            phase = phase_of(step)
            batch = batcher.next(state["pos"], phase)
            ex = train[cfg.phases[phase].kind]
            ids, mask = collate(ex, batch, pad)
            ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
            with _autocast(cfg):
                loss, n = forward_loss(step_model, ids, mask)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            real = int(ex.lengths[batch].sum())
            state["step"] = step + 1
            state["tokens"] += real
            state["targets"] += n
            state["elapsed"] = elapsed0 + time.perf_counter() - t_start
            win["loss"] += loss.item() * n
            win["n"] += n
            win["tokens"] += real
            s = state["step"]
            if s % cfg.log_every == 0 or s == cfg.steps:
                dt = time.perf_counter() - win["t"]
                rec = {"step": s, "phase": cfg.phases[phase].name, "loss": win["loss"] / max(win["n"], 1),
                       "lr": sched.get_last_lr()[0], "grad_norm": float(gnorm), "tokens": state["tokens"],
                       "targets": state["targets"], "tok_s": win["tokens"] / max(dt, 1e-9),
                       "elapsed": state["elapsed"]}
                write_log(rec)
                log(f"step {s:>6}/{cfg.steps} {rec['phase']:<12} loss {rec['loss']:.4f} lr {rec['lr']:.2e} "
                    f"{rec['tok_s']:,.0f} tok/s  {state['tokens'] / 1e6:.2f}M tokens")
                win = {"loss": 0.0, "n": 0, "tokens": 0, "t": time.perf_counter()}
            if s % cfg.eval_every == 0 or s == cfg.steps:
                rec = {"step": s, **{f"val_{k}": evaluate(model, cfg, v, pad, device) for k, v in val.items()}}
                write_log(rec)
                log("  validation " + "  ".join(f"{k} {v:.4f}" for k, v in rec.items()
                                                if k != "step" and v is not None))
            if cfg.budget_minutes and s == first + BUDGET_CALIBRATION[1] and first == 0:
                cfg = _fit_budget(cfg, train, batcher, state, bounds, t_calib, log)
                bounds = np.cumsum(cfg.phase_steps())
                sched.lr_lambdas = [lr_lambda(cfg)] * len(opt.param_groups)
            if s == first + BUDGET_CALIBRATION[0]:
                t_calib = (time.perf_counter(), state["tokens"])
            if s % cfg.ckpt_every == 0:
                checkpoint()
            minutes = (time.perf_counter() - t_start) / 60
            if stop.flag or (cfg.max_minutes and minutes >= cfg.max_minutes) or \
                    (stop_after is not None and s - first >= stop_after):
                status = "interrupted" if stop.flag else "paused"
                break
    checkpoint()
    plot_log(log_path, out_dir)
    summary = {"status": status, "step": state["step"], "steps": cfg.steps, "tokens": state["tokens"],
               "elapsed": state["elapsed"], "checkpoint": str(ckpt_path), "params": n_params(model)}
    if status != "done":
        log(f"stopped ({stop.flag or 'time/steps limit'}) at step {state['step']}: continue with --resume")
    return summary


BUDGET_CALIBRATION = (10, 40)  # measure tokens/s over these steps of a fresh run, then fix the step count


def _fit_budget(cfg: TrainConfig, train: dict, batcher: Batcher, state: dict, bounds, t_calib, log) -> TrainConfig:
    """Steps that fill cfg.budget_minutes of training at the measured tokens/s, given each phase's mean example
    length; the schedule and phase boundaries follow the new count.  Only ever shortens or lengthens phases that
    have not started (the calibration runs inside the first phase)."""
    t0, tok0 = t_calib
    rate = (state["tokens"] - tok0) / max(time.perf_counter() - t0, 1e-9)  # real tokens / s
    per_step = [cfg.batch_size * float(train[p.kind].lengths[batcher.pools[i]].mean())
                for i, p in enumerate(cfg.phases)]
    frac = np.array([p.fraction for p in cfg.phases]) / sum(p.fraction for p in cfg.phases)
    seconds_per_step = float(np.dot(frac, per_step)) / rate
    remaining = cfg.budget_minutes * 60 - state["elapsed"]
    steps = state["step"] + int(remaining / seconds_per_step)
    new = cfg.replace(steps=max(steps, state["step"] + 1))
    if np.cumsum(new.phase_steps())[0] <= state["step"] or bounds[0] <= state["step"]:
        log("budget: calibration did not end inside the first phase; keeping the configured steps")
        return cfg
    log(f"budget: {rate:,.0f} tok/s measured -> {new.steps} steps for {cfg.budget_minutes:g} minutes "
        f"(configured {cfg.steps})")
    return new


# ------------------------------------------------------------------------------------------------ plots
def plot_log(log_path: Path, out_dir: Path, log=print) -> list[Path]:
    """loss.svg (no dependencies) and loss.png (when matplotlib is installed) from log.jsonl."""
    recs = [json.loads(x) for x in Path(log_path).read_text().splitlines() if x.strip()]
    train = [(r["step"], r["loss"]) for r in recs if "loss" in r]
    series = {"train": train}
    for key in sorted({k for r in recs for k in r if k.startswith("val_")}):
        series[key] = [(r["step"], r[key]) for r in recs if r.get(key) is not None]
    series = {k: v for k, v in series.items() if v}
    if not series:
        return []
    written = [_svg(series, Path(out_dir) / "loss.svg")]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: wrote loss.svg only")
        return written
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, pts in series.items():
        ax.plot(*zip(*pts), label=name, marker="o" if name != "train" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (target tokens)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "loss.png", dpi=120)
    plt.close(fig)
    return written + [Path(out_dir) / "loss.png"]


def _svg(series: dict[str, list], path: Path, w: int = 640, h: int = 360) -> Path:
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [math.log10(max(y, 1e-6)) for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(max(ys), min(ys) + 1e-3)
    L, R, T, B = 60, 20, 20, 40

    def px(x, y):
        return L + (x - x0) / (x1 - x0) * (w - L - R), T + (y1 - math.log10(max(y, 1e-6))) / (y1 - y0) * (h - T - B)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{L}" y1="{h - B}" x2="{w - R}" y2="{h - B}" stroke="#888"/>',
             f'<line x1="{L}" y1="{T}" x2="{L}" y2="{h - B}" stroke="#888"/>',
             f'<text x="{L}" y="{h - 10}">step {x0}</text><text x="{w - R}" y="{h - 10}" text-anchor="end">{x1}</text>',
             f'<text x="5" y="{T + 10}">{10 ** y1:.3g}</text><text x="5" y="{h - B}">{10 ** y0:.3g}</text>']
    for k, (name, pts) in enumerate(series.items()):
        c = colors[k % len(colors)]
        d = " ".join(f"{'M' if i == 0 else 'L'}{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for i, (x, y) in enumerate(pts))
        parts.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        parts.append(f'<text x="{w - R - 5}" y="{T + 14 * (k + 1)}" text-anchor="end" fill="{c}">{name}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
    return path
