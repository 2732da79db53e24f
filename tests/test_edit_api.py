"""spark_nb.edit, its prompts and guard, and Engine.session (feed several tokens, then keep generating).

A tiny random-weight llama folder carrying the built-in edit tokenizer stands in for the built-in model (no torch
needed); scripted engines drive the real EditDecoder path with known outputs; a tiny Qwen-style folder with a
chat template has its forward pass replaced by a script so the real `Engine.stream` loop emits a fenced block.
"""
from __future__ import annotations

import functools
import inspect
import json
import random
import sys
import threading

import numpy as np
import pytest

import spark_nb
from spark_nb.edits import EditResult, check, edit, parse_error, prompt
from spark_nb.edits.prompt import chat_messages, edit_format, extract_code, style
from spark_nb.engine import Engine
from spark_nb.engine.engine import Superseded
from spark_nb.model import Tokenizer
from spark_nb.model.synthetic import write_random_model
from spark_nb.train import tokenizer as T
from spark_nb.train.families import FAMILIES, make_task

UNITS = [
    'import sys\nimport os\nimport json\n\n\ndef load_config(path, default=None):\n    """Read a JSON config file."""\n'
    '    if not os.path.exists(path):\n        return default\n    with open(path) as handle:\n'
    '        data = json.load(handle)\n    print("loaded %s" % path)\n    return data\n',
    "def scale(values: list[float], factor: float = 2.0) -> list[float]:\n    out = []\n    for v in values:\n"
    "        out.append(v * factor)\n    print('scaled', len(out))\n    return out\n",
    "import sys\nimport os\n\ntotal = 0\nfor name in os.listdir('.'):\n    total += len(name)\n"
    "print('total: %d' % total)\nsys.exit(0)\n",
    "def greet(name: str, times: int) -> str:\n    msg = 'hi ' + name\n    for _ in range(times):\n"
    "        print(msg)\n    return msg\n",
    "def area(radius):\n    # the area of a circle\n    return 3.14159 * radius * radius\n\n\n"
    "def describe(shape, size):\n    return 'shape {} has size {}'.format(shape, size)\n",
    "def squares(numbers):\n    result = [n * n for n in numbers if n > 0]\n    return result\n",
    'class Stack:\n    """A LIFO stack."""\n\n    def __init__(self):\n        self.items = []\n\n'
    '    def push(self, item):\n        """Put item on top."""\n        self.items.append(item)\n\n'
    "    def pop(self):\n        try:\n            return self.items.pop()\n        except IndexError:\n"
    "            return None\n",
]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def family_tasks(per_family: int = 1, seeds: int = 6) -> list:
    """Up to per_family tasks of every family, from UNITS (deterministic)."""
    out, count = [], {}
    for name in FAMILIES:
        for seed in range(seeds):
            for unit in UNITS:
                t = make_task(name, unit, random.Random(seed))
                if t and count.get(name, 0) < per_family and all(t.before != o.before or t.family != o.family
                                                                  for o in out):
                    out.append(t)
                    count[name] = count.get(name, 0) + 1
    return out


@pytest.fixture(scope="session")
def edit_folder(tmp_path_factory):
    """A random-weight llama folder with the built-in edit tokenizer (special tokens first, eos <|end|> = 2)."""
    folder = tmp_path_factory.mktemp("edit-model")
    write_random_model(folder, {"family": "llama", "vocab_size": 512, "max_position_embeddings": 512})
    texts = inspect.getsource(inspect).splitlines() + UNITS
    T.save_tokenizer(T.train_tokenizer(texts, vocab_size=512), folder)
    return folder


@pytest.fixture(scope="session")
def edit_tokenizer(edit_folder):
    return Tokenizer.from_folder(edit_folder)


@pytest.fixture(scope="session")
def chat_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat-model")
    write_random_model(folder, {"family": "qwen2", "vocab_size": 512, "max_position_embeddings": 512})
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings["chat_template"] = CHATML
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder


# -- scripted engines (duck-typed: a tokenizer and session()) ----------------------------------------------------


class ScriptedEngine:
    """Generates, after each prompt, the tokens `script(prompt_ids)` returns; records every feed."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script, self.feeds = tokenizer, script, []

    def session(self):
        return _ScriptedSession(self)


class _ScriptedSession:
    wafer_s = 0.0

    def __init__(self, engine):
        self.engine, self.tokens = engine, None

    def feed(self, ids):
        ids = [int(i) for i in ids]
        if self.tokens is None:
            self.tokens = iter(self.engine.script(ids))
        self.engine.feeds.append(ids)
        logits = np.zeros(self.engine.tokenizer.vocab_size, np.float32)
        logits[next(self.tokens)] = 1.0
        return logits


def perfect_script(tokenizer, tasks):
    """The reference output of every task, looked up by its prompt: a model that is always right."""
    fmt = edit_format(tokenizer)
    table = {}
    for t in tasks:
        ids, mask = fmt.encode_example(t)
        table[tuple(fmt.prompt_ids(t.instruction, t.before, t.context))] = ids[mask == 1].tolist()
    return lambda prompt: table[tuple(prompt)]


def identity_script(tokenizer):
    """Keeps every line: <|line|> <|keep|> per line, then <|end|>."""
    fmt = edit_format(tokenizer)
    return lambda prompt: [fmt.line, fmt.keep] * 200 + [fmt.end]


def edit_script(tokenizer, ops):
    """Ops after the prompt, as (special name, text or None) pairs."""
    fmt = edit_format(tokenizer)
    out = []
    for name, text in ops:
        out.append(fmt.ids[name])
        out += fmt.text_ids(text) if text else []
    return lambda prompt: out


# -- guard --------------------------------------------------------------------------------------------------------


def test_parse_error_names_line_and_message():
    assert parse_error("x = 1\n") is None
    err = parse_error("x = 1\ndef f(:\n    pass\n")
    assert err.startswith("does not parse: line 2") and "column" in err and "def f(:" in err
    ok, err = check("x = 1\n", "x = (1\ny = 2\n")
    assert not ok and "line 1" in err
    assert check("x = 1\n", "x = 2\n") == (True, None)  # unknown family: parsing is all that is checked


@pytest.mark.parametrize("family", sorted(n for n, f in FAMILIES.items() if f.refactor))
def test_guard_semantics_per_refactor_family(family):
    task = next(t for t in family_tasks() if t.family == family)
    assert check(task.before, task.after, family) == (True, None)  # the reference keeps the semantics
    broken = task.after + "\nsurprise = 42\n"  # an unrelated extra statement is never part of a refactor
    ok, err = check(task.before, broken, family)
    assert not ok and "changes what the code does" in err
    assert check(task.before, broken) == (True, None)  # without the family, only the parse check


def test_guard_semantics_independent_examples():
    f = "def f(total):\n    return total + 1\n"
    assert check(f, 'def f(total):\n    """Add one."""\n    return total + 1\n', "add_docstrings")[0]
    assert not check(f, 'def f(total):\n    """Add one."""\n    return total + 2\n', "add_docstrings")[0]
    assert check(f, "def f(total: int) -> int:\n    return total + 1\n", "add_type_hints")[0]
    g = "def g(x):\n    total = x * 2\n    return total + 1\n"
    assert check(g, "def g(x):\n    doubled = x * 2\n    return doubled + 1\n", "rename_variable")[0]
    assert not check(g, "def g(x):\n    doubled = x * 2\n    return total + 1\n", "rename_variable")[0]
    assert check(f, "def f(t):\n    return t + 1\n", "rename_variable")[0]  # a parameter, with no caller here
    called = f + "f(total=1)\n"  # ... but a call by keyword must follow it
    assert check(called, "def f(t):\n    return t + 1\nf(t=1)\n", "rename_function")[0]
    assert not check(called, "def f(t):\n    return t + 1\nf(total=1)\n", "rename_variable")[0]
    assert check("def f(x):\n    print(x)\n    return x\n", "def f(x):\n    return x\n", "remove_debug")[0]
    assert check("s = '%s!' % (name,)\n", "s = f'{name}!'\n", "to_fstring")[0]
    assert not check("s = '%s!' % (name,)\n", "s = f'{other}!'\n", "to_fstring")[0]
    # one value, as flynt converts it (that `name` could hold a tuple at run time is the caveat flynt shares)
    assert check("s = '%s!' % name\n", "s = f'{name}!'\n", "to_fstring")[0]
    assert not check("s = '%(n)s!' % {'n': name}\n", "s = f'{name}!'\n", "to_fstring")[0]  # a mapping
    # behaviour-changing families only need to parse
    assert check("def f(:\n", "def f():\n    pass\n", "fix_syntax_error") == (True, None)
    with pytest.raises(ValueError, match="unknown edit family"):
        check("x = 1\n", "x = 1\n", "no_such_family")


# -- prompts ------------------------------------------------------------------------------------------------------


def test_extract_code_takes_first_complete_block():
    assert extract_code("Sure:\n```python\nx = 1\n```\nand\n```\ny = 2\n```\n") == "x = 1\n"
    assert extract_code("~~~~py\na = '```'\n~~~~") == "a = '```'\n"
    assert extract_code("no code here") is None
    assert extract_code("```python\nx = 1\n") is None  # cut off
    msgs = chat_messages("s = '```'\n", "fix", context=["import os\n"])
    assert msgs[0]["role"] == "system" and "````python\ns = '```'\n````" in msgs[-1]["content"]
    assert "import os" in msgs[-1]["content"] and msgs[-1]["content"].endswith("Instruction: fix")


# -- the built-in format ------------------------------------------------------------------------------------------


def test_perfect_model_drives_edit_decoder(edit_tokenizer):
    tasks = family_tasks()
    engine = ScriptedEngine(edit_tokenizer, perfect_script(edit_tokenizer, tasks))
    fmt = edit_format(edit_tokenizer)
    for task in tasks:
        if task.family == "fix_syntax_error":
            continue  # before does not parse; the guard only looks at the result, tested below
        engine.feeds.clear()
        r = edit(task.before, task.instruction, model=engine, context=task.context, family=task.family,
                 exact=False)  # the model's path, not an exact refactor
        assert isinstance(r, EditResult) and r.ok, (task.family, r.error)
        assert r.code == r.proposed == task.after and r.original == task.before and r.style == "edit"
        # what the driver fed, in order, is exactly the training sequence minus the final <|end|>
        ids, mask = fmt.encode_example(task)
        assert sum(engine.feeds, []) == ids[:-1].tolist()
        assert r.stats.tokens == int(mask.sum()) and r.fed_tokens == int((mask[len(engine.feeds[0]):] == 0).sum())


def test_unparsable_output_is_rejected_and_original_kept(edit_tokenizer):
    code = "def f(x):\n    return x\n"
    script = edit_script(edit_tokenizer, [(T.LINE, None), (T.REPLACE, "def f(x:\n"), (T.LINE, None), (T.KEEP, None),
                                          (T.END, None)])
    r = edit(code, "add a parameter", model=ScriptedEngine(edit_tokenizer, script))
    assert not r.ok and r.code == code and r.proposed == "def f(x:\n    return x\n"
    assert "line 1" in r.error and "does not parse" in r.error


def test_fix_syntax_error_and_missing_final_newline(edit_tokenizer):
    code = "def f(x)\n    return x"  # no colon, no final newline
    script = edit_script(edit_tokenizer, [(T.LINE, None), (T.REPLACE, "def f(x):\n"), (T.END, None)])
    r = edit(code, "fix it", model=ScriptedEngine(edit_tokenizer, script), family="fix_syntax_error")
    assert r.ok and r.code == "def f(x):\n    return x" and r.family_hint is None
    assert r.text.startswith("<|line|><|replace|>def f(x):")


def test_unfinished_edit_is_an_error(edit_tokenizer):
    code = "a = 1\nb = 2\n"
    r = edit(code, "make it so", model=ScriptedEngine(edit_tokenizer, identity_script(edit_tokenizer)),
             max_new_tokens=3)
    assert not r.ok and r.code == code and "max_new_tokens=3" in r.error and r.proposed is None


def test_cancel_stops_after_the_current_token(edit_tokenizer):
    """A Stop set from the live hook (as another thread would) ends generation at once; nothing is proposed."""
    code = "a = 1\nb = 2\nc = 3\n"
    engine = ScriptedEngine(edit_tokenizer, identity_script(edit_tokenizer))
    stop, seen = threading.Event(), []

    def on_token(partial, n, host_s, wafer_s):
        seen.append(n)
        if n == 3:
            stop.set()

    r = edit(code, "keep", model=engine, on_token=on_token, cancel=stop)
    assert r.stopped and not r.ok and r.code == code and r.proposed is None and r.error == "stopped after 3 tokens"
    assert seen == [1, 2, 3] and r.stats.tokens == 3
    done = edit(code, "keep", model=ScriptedEngine(edit_tokenizer, identity_script(edit_tokenizer)),
                cancel=threading.Event())
    assert done.ok and not done.stopped and done.code == code


def test_stopped_mid_line_settles_on_the_decisions_made(edit_tokenizer):
    """`settled` (where a redirect continues from) applies finished decisions and leaves a line being rewritten
    as it was, so it parses whenever the original did."""
    code = "a = 1\nb = 2\nc = 3"
    script = edit_script(edit_tokenizer, [(T.LINE, None), (T.REPLACE, "a = 10\n"), (T.LINE, None),
                                          (T.REPLACE, "b = 20 + (1")])
    stop = threading.Event()
    r = edit(code, "bump", model=ScriptedEngine(edit_tokenizer, script), cancel=stop,
             on_token=lambda partial, n, *_: "(1" in partial and stop.set())
    assert r.stopped and r.settled == "a = 10\nb = 2\nc = 3"  # no final newline, as typed


def test_instruction_words_turn_on_the_semantic_guard(edit_tokenizer):
    """Asked for a docstring, a model that renames the function is refused (the AST differs beyond docstrings);
    family="" checks parsing alone, and an instruction with no known words gets the parse check only."""
    code = "def area(w, h):\n    return w * h\n"
    renamed = edit_script(edit_tokenizer, [(T.LINE, None), (T.REPLACE, "def size(w, h):\n"), (T.END, None)])
    engine = ScriptedEngine(edit_tokenizer, renamed)
    refused = edit(code, "add a docstring", model=engine)
    assert not refused.ok and refused.code == code and "changes what the code does" in refused.error
    assert refused.proposed == "def size(w, h):\n    return w * h\n"
    assert edit(code, "add a docstring", model=engine, family="").ok
    assert edit(code, "make it better", model=engine).ok


def test_names_and_context_reach_the_guard(edit_tokenizer):
    """A name the edit introduces is refused unless the kernel's namespace (`names`), an earlier cell (`context`)
    or the cell itself binds it, whatever the instruction."""
    code = "values = [3, 1, 2]\n"
    script = edit_script(edit_tokenizer, [(T.LINE, None), (T.REPLACE, "values = np.array([3, 1, 2])\n"),
                                          (T.END, None)])
    engine = ScriptedEngine(edit_tokenizer, script)
    refused = edit(code, "make it an array", model=engine)
    assert not refused.ok and refused.code == code and refused.error.startswith("uses names nothing defines: np (")
    assert edit(code, "make it an array", model=engine, names=iter(["np", "pd"])).ok
    assert edit(code, "make it an array", model=engine, context=["import numpy as np\n"]).ok


def test_edit_on_a_real_engine(edit_folder):
    engine = Engine.load(edit_folder, dtype="fp32", context=512)
    code = "def f(x):\n    return x * 2\n"
    r = spark_nb.edit(code, "add a docstring", model=engine, max_new_tokens=24, seed=0, speculative=False)
    assert r.stats.tokens <= 24 and r.stats.prompt_tokens > 0 and r.stats.wafer_total_s > 0
    assert r.options["speculative"] is False and r.family_hint == "add_docstrings"
    assert r.code == (r.proposed if r.ok else code)
    assert r.ok == (r.proposed is not None and check(code, r.proposed)[0])
    again = spark_nb.edit(code, "add a docstring", model=engine, max_new_tokens=24, seed=0)
    assert again.text == r.text  # temperature 0: deterministic


def test_engine_cache_and_missing_builtin(edit_folder, monkeypatch, tmp_path):
    from spark_nb.edits import get_engine

    a = get_engine(edit_folder, dtype="fp32")
    assert get_engine(str(edit_folder), dtype="fp32") is a
    monkeypatch.setattr(sys.modules["spark_nb.edits.edit"], "BUILTIN", tmp_path / "builtin")
    with pytest.raises(FileNotFoundError, match="python -m spark_nb.train.*model=PATH"):
        spark_nb.edit("x = 1\n", "add a docstring")


def test_style_needs_edit_tokens_or_template(edit_tokenizer, edit_folder, chat_folder):
    assert style(edit_tokenizer) == "edit"
    assert style(Tokenizer.from_folder(chat_folder)) == "chat"
    plain = write_random_model(edit_folder.parent / "plain-model", {"family": "llama", "vocab_size": 512})
    with pytest.raises(ValueError, match="neither"):
        style(Tokenizer.from_folder(plain))


# -- engine sessions ----------------------------------------------------------------------------------------------


def test_session_feed_matches_full_forward(edit_folder):
    engine = Engine.load(edit_folder, dtype="fp32", context=512)
    ids = list(range(20, 80))
    full = engine.logits(ids)
    s = engine.session()
    first = s.feed(ids[:10])
    np.testing.assert_allclose(first, full[9], rtol=1e-4, atol=1e-4)
    for i in range(10, 15):
        out = s.feed([ids[i]])
        np.testing.assert_allclose(out, full[i], rtol=1e-4, atol=1e-4)
    out = s.feed(ids[15:])  # several tokens mid-sequence, like an input line
    np.testing.assert_allclose(out, full[-1], rtol=1e-4, atol=1e-4)
    assert s.pos == len(ids) and s.wafer_s > 0
    # the engine's own stream is unchanged and supersedes the session
    list(engine.stream(ids[:5], max_new_tokens=2))
    with pytest.raises(Superseded):
        s.feed([1])
    with pytest.raises(ValueError):
        engine.session().feed([])


def test_a_verified_draft_is_charged_the_lm_head_of_every_row_it_judges(edit_folder):
    """The projected wafer time of a verification follows the cycle model with one lm_head per judged row (the
    fitted FeedCost is within 2 % of feed_cycles); a plain feed of the same tokens charges the last row's only."""
    from spark_nb.wafer.cycles import feed_cycles

    engine = Engine.load(edit_folder, dtype="fp32", context=512)
    ids = list(range(20, 80))
    costs = {}
    for judged in ("feed", "verify"):
        s = engine.session()
        s.feed(ids[:40])
        before = s.wafer_s
        s.feed(ids[40:52]) if judged == "feed" else s.verify(ids[40:52])
        costs[judged] = s.wafer_s - before
    clock = engine.placement.spec.clock_hz
    for judged, rows in (("feed", 1), ("verify", 12)):
        cycles = feed_cycles(engine.placement, 40, 12, logits=rows).total_cycles
        assert costs[judged] == pytest.approx(cycles / clock, rel=0.02), judged
    assert costs["verify"] > costs["feed"]


# -- instruct checkpoints -----------------------------------------------------------------------------------------


def scripted(engine, answer_text):
    """Replace the engine's forward pass so that, after any prompt, it generates answer_text's tokens then eos (the
    real stream loop runs, one token at a time: no drafts to verify); returns the list the prompts are recorded in."""
    tok, vocab, prompts = engine.tokenizer, engine.config.vocab_size, []
    script = iter(())

    def onehot():
        out = np.full(vocab, -1.0, np.float32)
        out[next(script, tok.eos_token_ids[0])] = 1.0
        return out

    def prefill(ids, start=0, at=None):
        nonlocal script
        prompts.append(tok.decode(ids.tolist(), skip_special_tokens=False))
        script = iter(tok.encode(answer_text))
        return onehot()[None]

    engine._prefill = prefill
    engine._decode_step = lambda token, pos, threads=None: onehot()
    return prompts


def test_chat_template_path_takes_the_first_fenced_block(chat_folder, monkeypatch):
    monkeypatch.setattr(prompt, "OPEN_ANSWER", False)  # the model writes the fence itself, after some prose
    engine = Engine.load(chat_folder, dtype="fp32", context=512)
    target = "def add(a, b):\n    return a + b\n"
    answer = f"Here it is:\n```python\n{target}```\nThe rest is prose that is never generated."
    prompts = scripted(engine, answer)
    edit = functools.partial(spark_nb.edit, speculative=False)
    r = edit("def add(a,b): return a+b", "format it", model=engine)
    assert r.ok and r.style == "chat" and r.code == target.rstrip("\n")
    assert prompts[0].startswith("<|im_start|>system\n") and prompts[0].endswith("<|im_start|>assistant\n")
    assert "def add(a,b): return a+b" in prompts[0] and "Instruction: format it" in prompts[0]
    assert "prose" not in r.text and r.stats.tokens < len(engine.tokenizer.encode(answer))  # stopped at the fence

    scripted(engine, "```python\ndef add(a, b)\n    return a + b\n```\n")
    r = edit("x = 1\n", "break it", model=engine)
    assert not r.ok and r.code == "x = 1\n" and "line 1" in r.error
    scripted(engine, "I would rather not.")
    r = edit("x = 1\n", "anything", model=engine)
    assert not r.ok and "no complete fenced code block" in r.error


def test_too_deep_to_parse_is_a_parse_error_not_a_crash():
    """Python's parser gives up on deep nesting with RecursionError or MemoryError: the guard says it does not
    parse, as it would not run."""
    assert parse_error("x = " + "-" * 200_000 + "1").startswith("does not parse")
    assert parse_error("x = " + "(" * 300 + "1" + ")" * 300).startswith("does not parse")


def test_a_temperature_too_small_to_sample_is_refused():
    with pytest.raises(ValueError, match="temperature"):
        edit("x = 1\n", "add a comment", temperature=1e-320)


@pytest.mark.parametrize("code", [
    "r = '<unprintable %s object>' % type(value).__name__\n",
    "msg = 'hello %s' % name\n",
    "msg = 'count: %r' % (items[0],)\n",
    "line = '%s=%s' % (key, value)\n",
])
def test_guard_accepts_flynts_percent_conversions_and_refuses_their_mutations(code):
    """flynt (an independent f-string converter) makes the reference conversion; the guard's to_fstring check
    must accept it, and refuse the same line with another name put in."""
    flynt_api = pytest.importorskip("flynt.api")
    from flynt.state import State

    converted, changes = flynt_api.fstringify_code_by_line(code, State())
    assert changes == 1 and converted.lstrip().split("=", 1)[1].strip().startswith("f")
    assert check(code, converted, "to_fstring") == (True, None)
    mutated = converted.replace("{", "{other_", 1)
    assert not check(code, mutated, "to_fstring")[0]
