"""Training pipeline: tokenizer, line-aligned format, smoke training, bitwise resume, export parity.

Everything runs on a data folder built from 15 standard-library files with a 512-token vocabulary, and the
`smoke` config (0.1M parameters): the whole file takes well under a minute on one core.
"""
from __future__ import annotations

import functools
import json
import random

import numpy as np
import pytest

from spark_nb.train import corpus as C
from spark_nb.train import tokenizer as T
from spark_nb.train.families import FAMILIES
from spark_nb.train.format import EditFormat, FormatError, decode_output, encode_example
from spark_nb.train.tasks import EditTask, make_tasks

CODE_SAMPLES = [
    "def add(a, b):\n    return a + b\n",
    "x = 1  \n\tif x:\n\t\tprint('tab')\n",  # trailing spaces, tabs
    "s = 'héllo → 世界 🎉'\n",  # non-ASCII, a 4-byte character
    "no_newline_at_end = True",
    "\n\n  \n# blank lines and spaces\n",
    'marker = "<|end|> and <|keep|> are just text here"\n',
]


@functools.lru_cache(maxsize=1)
def small_units():
    corpus = C.build_corpus(limit_files=25, include_packages=False)
    return corpus.train


@functools.lru_cache(maxsize=1)
def small_tokenizer():
    units = small_units()
    return T.train_tokenizer(T.training_texts(units), vocab_size=512)


# Families that the 25 sampled stdlib files rarely feed (annotations, top-level scripts, prints in loops)
EXTRA_UNITS = [
    "def scale(values: list[float], factor: float = 2.0) -> list[float]:\n    out = []\n    for v in values:\n"
    "        out.append(v * factor)\n    print('scaled', len(out))\n    return out\n",
    "import sys\nimport os\n\ntotal = 0\nfor name in os.listdir('.'):\n    total += len(name)\n"
    "print('total: %d' % total)\nsys.exit(0)\n",
    "def greet(name: str, times: int) -> str:\n    msg = 'hi ' + name\n    for _ in range(times):\n"
    "        print(msg)\n    return msg\n",
]


@functools.lru_cache(maxsize=1)
def real_tasks():
    units = small_units()[:400] + EXTRA_UNITS * 8
    return make_tasks(units, random.Random(0), per_unit=3, continuation=0.3, context_prob=0.3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from spark_nb.train.train import prepare_data

    out = tmp_path_factory.mktemp("data")
    prepare_data(out, vocab_size=512, limit_files=15, include_packages=False, per_unit=2, log=lambda *a: None)
    return out


# -- tokenizer ----------------------------------------------------------------------------------------------------


def test_tokenizer_special_tokens_are_single_ids():
    tok = small_tokenizer()
    ids = T.special_ids(tok)
    assert sorted(ids.values()) == list(range(len(T.SPECIAL_TOKENS)))
    assert tok.get_vocab_size(with_added_tokens=True) == 512
    for text, i in ids.items():
        assert tok.encode(text).ids == [i]
        assert tok.decode([i], skip_special_tokens=False) == text


def test_tokenizer_round_trips_code_exactly():
    tok = small_tokenizer()
    fmt = EditFormat(tok)
    for code in CODE_SAMPLES + [u.text for u in small_units()[:50]]:
        ids = fmt.text_ids(code)
        assert fmt.decode_text(ids) == code
    # spelled-out special tokens inside code stay text in the edit format
    marker = fmt.text_ids(CODE_SAMPLES[-1])
    assert not set(marker) & fmt.special
    assert tok.encode_special_tokens is False  # the caller's tokenizer is not changed


def test_tokenizer_is_deterministic_and_saves_hf_files(tmp_path):
    texts = [u.text for u in small_units()[:60]]
    a = T.train_tokenizer(texts, vocab_size=400)
    b = T.train_tokenizer(texts, vocab_size=400)
    assert a.to_str() == b.to_str()
    T.save_tokenizer(a, tmp_path)
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert settings["eos_token"] == T.END and settings["pad_token"] == T.PAD
    from spark_nb.model.tokenizer import Tokenizer

    loaded = Tokenizer.from_folder(tmp_path)
    assert loaded.eos_token_ids == (a.token_to_id(T.END),)


# -- format ---------------------------------------------------------------------------------------------------------


def simulate(fmt: EditFormat, task: EditTask) -> str:
    """A perfect model: emit the example's supervised tokens one by one; the driver feeds what the decoder asks
    for, which must be exactly the example's unsupervised tokens that follow."""
    ids, mask = encode_example(task, fmt)
    j = len(fmt.prompt_ids(task.instruction, task.before, task.context))
    assert not mask[:j].any() and mask[j] == 1
    dec = fmt.decoder(task.before)
    while not dec.done:
        assert mask[j] == 1
        tok = int(ids[j])
        assert tok not in dec.banned_ids(), "a constrained driver could not have emitted this"
        feed = dec.push(tok)
        j += 1
        assert ids[j:j + len(feed)].tolist() == feed and not mask[j:j + len(feed)].any()
        j += len(feed)
    assert j == len(ids), "the decoder finished before the example"
    assert dec.n_fed == int((mask[len(fmt.prompt_ids(task.instruction, task.before, task.context)):] == 0).sum())
    return dec.result()


def test_format_round_trips_real_tasks_of_every_family():
    fmt = EditFormat(small_tokenizer())
    tasks = real_tasks()
    seen = {t.family for t in tasks}
    assert set(FAMILIES) <= seen, set(FAMILIES) - seen
    assert "continue" in seen and any(t.context for t in tasks)
    for task in tasks:
        assert simulate(fmt, task) == task.after, task.family


def test_format_edge_cases():
    fmt = EditFormat(small_tokenizer())
    cases = [
        EditTask("x", "add a header", "a = 1\n", "# header\na = 1\n"),  # insert before the first line
        EditTask("x", "drop all", "a = 1\nb = 2\n", ""),  # delete everything
        EditTask("x", "append", "a = 1\n", "a = 1\nb = 2\nc = 3\n"),  # inserts after the last line
        EditTask("x", "no newline", "a = 1\nb = 2", "a = 1\nb = 3"),  # cell without a final newline
        EditTask("x", "unicode", "s = 'a'\n", "s = 'é 🎉'\n"),
        EditTask("x", "specials as text", "s = 1\n", "s = '<|end|>'\n"),
    ]
    for task in cases:
        assert simulate(fmt, task) == task.after


def test_decoder_rejects_malformed_output_and_keeps_rest_on_early_end():
    fmt = EditFormat(small_tokenizer())
    code = "a = 1\nb = 2\nc = 3\n"
    dec = fmt.decoder(code)
    assert dec.push(fmt.line) == fmt.text_ids("a = 1\n")
    with pytest.raises(FormatError):
        dec.push(fmt.line)  # an op must follow a fed line
    # replace line 1, then end early: lines 2-3 are kept
    gen = [fmt.line, fmt.replace, *fmt.text_ids("a = 10\n"), fmt.end]
    assert decode_output(code, gen, fmt) == "a = 10\nb = 2\nc = 3\n"
    partial = fmt.decoder(code)
    for t in gen[:3]:
        partial.push(t)
    assert partial.partial().startswith("a") and partial.partial().endswith("b = 2\nc = 3\n")


def test_plain_format_supervises_every_code_token():
    fmt = EditFormat(small_tokenizer())
    ids, mask = fmt.encode_plain(CODE_SAMPLES[0])
    assert ids[0] == fmt.ids[T.CODE] and mask[0] == 0 and mask[1:].all() and ids[-1] == fmt.end
    assert fmt.decode_text(ids[1:-1]) == CODE_SAMPLES[0]


# -- training --------------------------------------------------------------------------------------------------------


def _losses(run):
    return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines() if '"loss"' in x]


def test_data_folder_is_deterministic(data_dir, tmp_path):
    from spark_nb.train.train import prepare_data

    prepare_data(tmp_path, vocab_size=512, limit_files=15, include_packages=False, per_unit=2, log=lambda *a: None)
    names = sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file())
    assert "train.jsonl.gz" in names and "tokenizer/tokenizer.json" in names and "manifest.json" in names
    for name in names:
        assert (data_dir / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_rebuilt_data_can_keep_an_earlier_tokenizer(data_dir, tmp_path):
    """A model trained on one data folder goes on training on a rebuilt one only with the same token ids."""
    from spark_nb.train.train import prepare_data

    prepare_data(tmp_path, limit_files=8, include_packages=False, tokenizer=data_dir / "tokenizer", log=lambda *a: None)
    assert (tmp_path / "tokenizer/tokenizer.json").read_bytes() == (data_dir / "tokenizer/tokenizer.json").read_bytes()
    assert (tmp_path / "train.jsonl.gz").stat().st_size > 0


def test_smoke_training_lowers_the_loss(data_dir, tmp_path):
    from spark_nb.train.configs import get_config
    from spark_nb.train.train import fit

    summary = fit(get_config("smoke", steps=30, log_every=5), data_dir, tmp_path / "run", log=lambda *a: None)
    assert summary["status"] == "done" and summary["step"] == 30
    losses = _losses(tmp_path / "run")
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5, losses
    assert (tmp_path / "run" / "loss.svg").exists()


def test_resume_is_bitwise_identical(data_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from spark_nb.train.configs import get_config
    from spark_nb.train.train import fit, load_checkpoint

    cfg = get_config("smoke", steps=14, ckpt_every=100, eval_every=5, log_every=2)
    quiet = lambda *a: None  # noqa: E731
    fit(cfg, data_dir, tmp_path / "straight", log=quiet)
    first = fit(cfg, data_dir, tmp_path / "resumed", stop_after=6, log=quiet)  # crosses into the edit phase later
    assert first["status"] == "paused" and first["step"] == 6
    fit(cfg, data_dir, tmp_path / "resumed", resume=True, log=quiet)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert a["state"]["step"] == b["state"]["step"] == 14 and a["state"]["pos"] == b["state"]["pos"]
    for name, p in a["model"].items():
        assert torch.equal(p, b["model"][name]), name
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")


def test_resume_with_more_steps_is_a_warm_restart(data_dir, tmp_path):
    """A finished run resumed with a longer schedule trains on to it, its learning rate back up the cosine of the
    new length (the formula written out here), and refuses a length it has already passed."""
    import math

    from spark_nb.train.configs import get_config
    from spark_nb.train.train import fit

    cfg = get_config("smoke", steps=10, log_every=1, eval_every=100)
    quiet = lambda *a: None  # noqa: E731
    assert fit(cfg, data_dir, tmp_path / "run", log=quiet)["step"] == 10
    summary = fit(cfg, data_dir, tmp_path / "run", resume=True, changes={"steps": 16}, log=quiet)
    assert summary["status"] == "done" and summary["step"] == 16
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in records if "lr" in r}
    warm, floor = cfg.warmup_steps, cfg.min_lr_ratio

    def cosine(step, steps):  # the lr logged after `step` updates is the schedule's value at that step
        t = (step - warm) / (steps - warm)
        return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))

    assert lr[10] == pytest.approx(cosine(10, 10)) and lr[11] == pytest.approx(cosine(11, 16))
    assert lr[11] > 2 * lr[10]
    with pytest.raises(ValueError, match="at step 16 already"):
        fit(cfg, data_dir, tmp_path / "run", resume=True, changes={"steps": 12}, log=quiet)


def test_family_balance_draws_families_as_size_to_the_power():
    """An epoch keeps its length; family g is drawn ~ n_g ** alpha times (the shares computed here with numpy):
    a large family without repeats, a small one in whole passes (each member the same number of times, +-1)."""
    from spark_nb.train.train import balanced

    sizes = np.array([1000, 100, 10])
    groups = np.repeat(np.arange(3, dtype=np.int16), sizes)
    pool = np.arange(len(groups)) + 7  # pool entries are example indices, not positions
    for alpha in (1.0, 0.5, 0.0):
        epoch = balanced(pool, groups, alpha, np.random.default_rng(0))
        assert len(epoch) == len(pool) and set(epoch) <= set(pool)
        want = len(pool) * sizes ** alpha / (sizes ** alpha).sum()
        for g, n in enumerate(sizes):
            mine = epoch[groups[epoch - 7] == g]
            assert abs(len(mine) - want[g]) < 1, (alpha, g, len(mine), want[g])
            reps = np.bincount(mine - 7, minlength=len(pool))[groups == g]
            assert reps.max() - reps.min() <= 1, (alpha, g)
    assert sorted(balanced(pool, groups, 1.0, np.random.default_rng(1))) == list(pool)


def test_resume_can_change_the_family_balance(data_dir, tmp_path):
    """A resumed run takes a new family_balance (and says so): its edit batches then follow the new mix."""
    from spark_nb.train.configs import get_config
    from spark_nb.train.train import fit, load_checkpoint

    cfg = get_config("smoke", steps=10, log_every=5, eval_every=100)
    quiet, said = (lambda *a: None), []  # noqa: E731
    fit(cfg, data_dir, tmp_path / "run", log=quiet)
    summary = fit(cfg, data_dir, tmp_path / "run", resume=True, changes={"steps": 12, "family_balance": 0.0},
                  log=said.append)
    assert summary["status"] == "done" and summary["step"] == 12
    assert "family_balance: 1.0 -> 0.0 from step 10" in said
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["config"]["family_balance"] == 0.0


def test_export_loads_in_spark_nb_and_transformers(data_dir, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import spark_nb
    from spark_nb.train.configs import get_config
    from spark_nb.train.export import EVAL_BEGIN, export
    from spark_nb.train.tasks import read_jsonl
    from spark_nb.train.train import fit

    fit(get_config("smoke", steps=10), data_dir, tmp_path / "run", log=lambda *a: None)
    folder = export(tmp_path / "run" / "checkpoint.pt", tmp_path / "model", data_dir=data_dir, log=lambda *a: None)
    card = (folder / "README.md").read_text()
    assert "LlamaForCausalLM" in card and EVAL_BEGIN in card and "python-stdlib" in card
    engine = spark_nb.load(folder, dtype="fp32")
    fmt = EditFormat(engine.tokenizer)
    task = read_jsonl(data_dir / "test.jsonl")[0]
    ids = fmt.encode_example(task)[0][:160].tolist()
    ours = engine.logits(ids)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).float().eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(ours - ref).max() < 1e-3
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert hf_tok.eos_token == T.END and hf_tok.encode(CODE_SAMPLES[0]) == engine.tokenizer.encode(CODE_SAMPLES[0])
    # 16-bit export: half the bytes, still read by spark_nb
    half = export(tmp_path / "run" / "checkpoint.pt", tmp_path / "half", dtype="fp16", log=lambda *a: None)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (folder / "model.safetensors").stat().st_size
    assert np.abs(spark_nb.load(half, dtype="fp32").logits(ids) - ours).max() < 0.05


def test_fim_fine_tune_keeps_the_old_ids_and_rows_and_exports_a_fim_model(data_dir, tmp_path):
    """A run with a fim phase started from an exported model (`fit --init FOLDER`): the tokenizer gains the three
    FIM tokens after every old id, the old embedding rows start as they were, the validation at step 0 is logged,
    and the exported folder completes with FIM prompts (in the order it was trained in, SPM) in spark_nb and loads in
    transformers."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file

    import spark_nb
    from spark_nb.server.complete import has_fim, prompt
    from spark_nb.train.configs import Phase, get_config
    from spark_nb.train.export import export
    from spark_nb.train.train import fit, load_checkpoint

    quiet = lambda *a: None  # noqa: E731
    fit(get_config("smoke", steps=6), data_dir, tmp_path / "base", log=quiet)
    base = export(tmp_path / "base" / "checkpoint.pt", tmp_path / "base_model", log=quiet)
    n_old = T.load_tokenizer(base).get_vocab_size(with_added_tokens=True)
    cfg = get_config("smoke", steps=8, eval_every=4, log_every=2, lr=1e-3,
                     phases=(Phase("fim", "fim", 0.5, 256), Phase("edits", "edit", 0.5, 256)))
    said = []
    summary = fit(cfg, data_dir, tmp_path / "fim", init=base, log=said.append)
    assert summary["status"] == "done" and any("initialised from" in m for m in said)
    records = [json.loads(x) for x in (tmp_path / "fim" / "log.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and {"val_edit", "val_fim"} <= set(records[0])  # (None here: 15 files have no
    assert any(r.get("phase") == "fim" and r["loss"] > 0 for r in records)  # validation split)
    ckpt = load_checkpoint(tmp_path / "fim" / "checkpoint.pt")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(ckpt["tokenizer_json"])
    assert [tok.token_to_id(t) for t in T.FIM_TOKENS] == [n_old, n_old + 1, n_old + 2]
    fit(cfg.replace(steps=1, warmup_steps=1, lr=1e-12), data_dir, tmp_path / "zero", init=base, log=quiet)
    old = load_file(str(base / "model.safetensors"))["model.embed_tokens.weight"]
    start = load_checkpoint(tmp_path / "zero" / "checkpoint.pt")["model"]["model.embed_tokens.weight"]
    assert torch.allclose(start[:n_old], old[:n_old], atol=1e-6)  # one step at lr 1e-12 moves nothing visible
    folder = export(tmp_path / "fim" / "checkpoint.pt", tmp_path / "model", log=quiet)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["additional_special_tokens"][-3:] == T.FIM_TOKENS and config["fim_order"] == cfg.fim_order == "spm"
    engine = spark_nb.load(folder, dtype="fp32")
    assert has_fim(engine.tokenizer) and engine.tokenizer.fim_order == "spm"
    text = prompt(engine.tokenizer, "def f(x):\n    return ", "\n")
    ids = engine.encode(text)
    assert ids[:2] == [n_old, n_old + 1] and n_old + 2 in ids  # the FIM tokens, one id each, the suffix first
    assert text.endswith("<|fim_middle|>def f(x):\n    return ")  # the middle continues the prefix
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).float().eval()
    with torch.no_grad():
        ref = model(torch.tensor([list(ids)])).logits[0].numpy()
    assert np.abs(engine.logits(list(ids)) - ref).max() < 1e-3
    assert transformers.AutoTokenizer.from_pretrained(folder).encode(text) == list(ids)


def test_cli_help():
    from spark_nb.train.__main__ import main

    for argv in (["--help"], ["fit", "--help"], ["data", "--help"], ["export", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
