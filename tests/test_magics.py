"""%%spark / %spark in a real IPython shell (globalipapp), with a random-weight model folder carrying the built-in
edit tokenizer and scripted engines that drive the real EditDecoder path with known outputs."""
from __future__ import annotations

import ast
import builtins
import inspect

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

from spark_nb.edits.prompt import edit_format
from spark_nb.model import Tokenizer
from spark_nb.model.synthetic import write_random_model
from spark_nb.notebook import context as ctx
from spark_nb.notebook.magics import SparkMagics
from spark_nb.train import tokenizer as T
from test_edit_api import ScriptedEngine

CODE = "def double(x):\n    return x*2\n"
GOOD = "def double(x):\n    return x * 2\n"


@pytest.fixture(scope="module")
def edit_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edit-model")
    write_random_model(folder, {"family": "llama", "vocab_size": 512, "max_position_embeddings": 512})
    texts = inspect.getsource(inspect).splitlines() + [CODE, GOOD]
    T.save_tokenizer(T.train_tokenizer(texts, vocab_size=512), folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(edit_folder):
    return Tokenizer.from_folder(edit_folder)


def scripted(tokenizer, tokens):
    """An engine that generates `tokens` after any prompt (test_edit_api's ScriptedEngine; `.feeds[0]` is the
    prompt)."""
    return ScriptedEngine(tokenizer, lambda prompt: tokens)


def script(tokenizer, ops):
    fmt = edit_format(tokenizer)
    out = []
    for name, text in ops:
        out.append(getattr(fmt, name))
        out += fmt.text_ids(text) if text else []
    return out


def replace_second_line(tokenizer, text):
    return script(tokenizer, [("line", None), ("keep", None), ("line", None), ("replace", text), ("end", None)])


@pytest.fixture
def ip(monkeypatch):
    shell = start_ipython() or __import__("IPython").get_ipython()
    shell.run_line_magic("load_ext", "spark_nb")
    magics = shell.magics_manager.registry["SparkMagics"]
    magics.session.history.clear()
    calls = []
    monkeypatch.setattr(shell, "set_next_input", lambda text, replace=False: calls.append((text, replace)))
    shell.calls, shell.spark_magics = calls, magics
    yield shell
    shell.run_line_magic("unload_ext", "spark_nb")


def use(ip, monkeypatch, engine):
    monkeypatch.setattr(ip.spark_magics.session, "engine_for", lambda *a, **k: engine)


def test_perfect_edit_replaces_the_cell(ip, monkeypatch, tokenizer, capsys):
    use(ip, monkeypatch, scripted(tokenizer, replace_second_line(tokenizer, "    return x * 2\n")))
    ip.run_cell_magic("spark", "--no-context format the expression", CODE)
    assert ip.calls == [(GOOD, True)]
    out = capsys.readouterr().out
    assert "+    return x * 2" in out and "-    return x*2" in out and "replaced the cell" in out
    assert "tok/s" in out and "TTFT" in out and "wafer" in out  # the plain-text fallback carries the stats
    (req,) = ip.spark_magics.session.history
    assert req.original == CODE and req.result.code == GOOD and req.result.stats.tokens > 0


def test_unchanged_result_touches_nothing(ip, monkeypatch, tokenizer, capsys):
    """A model that keeps every line: nothing replaced or inserted, and the history says so."""
    keep_all = script(tokenizer, [("line", None), ("keep", None), ("line", None), ("keep", None), ("end", None)])
    for flags in ("", "--new "):
        use(ip, monkeypatch, scripted(tokenizer, keep_all))
        ip.run_cell_magic("spark", flags + "--no-context tidy", CODE)
    assert ip.calls == []
    ip.run_line_magic("spark", "history")
    out = capsys.readouterr().out
    assert out.count("->  no change") == 2 and "replaced the cell" not in out


def test_unparsable_result_is_never_applied(ip, monkeypatch, tokenizer, capsys):
    use(ip, monkeypatch, scripted(tokenizer, replace_second_line(tokenizer, "    return (x * 2\n")))
    ip.run_cell_magic("spark", "--no-context break it", CODE)
    assert ip.calls == []
    out = capsys.readouterr().out
    assert "not applied" in out and "does not parse" in out
    ip.spark_magics.session.engine_for = lambda *a, **k: scripted(
        tokenizer, replace_second_line(tokenizer, "    return (x * 2\n"))
    ip.run_cell_magic("spark", "--no-context --force break it", CODE)
    assert ip.calls == [("def double(x):\n    return (x * 2\n", True)]


def test_preview_and_new(ip, monkeypatch, tokenizer, capsys):
    use(ip, monkeypatch, scripted(tokenizer, replace_second_line(tokenizer, "    return x * 2\n")))
    ip.run_cell_magic("spark", "--preview --no-context fmt", CODE)
    assert ip.calls == [] and "preview" in capsys.readouterr().out
    use(ip, monkeypatch, scripted(tokenizer, replace_second_line(tokenizer, "    return x * 2\n")))
    ip.run_cell_magic("spark", "--new --no-context fmt", CODE)
    assert ip.calls == [(GOOD, False)]
    ip.run_line_magic("spark", "history")
    out = capsys.readouterr().out
    assert "[1] %%spark fmt  ->  preview" in out and "[2] %%spark fmt  ->  inserted below" in out
    ip.run_line_magic("spark", "stats")
    assert "host TTFT ms" in capsys.readouterr().out


@pytest.mark.parametrize("line, cell, message", [
    ("--max-tokens 0 fix", CODE, "at least 1"),
    ("--temperature -1 fix", CODE, "temperature"),
    ("--temperature 1e-320 fix", CODE, "temperature"),  # would overflow the logits into NaN probabilities
    ("--wafer nosuch fix", CODE, "--wafer"),
    ("--preview --new fix", CODE, "exclude"),
    ("--max-tokens many fix", CODE, "invalid int"),
    ("", CODE, "instruction"),
    ("fix it", "  \n", "empty"),
])
def test_usage_errors(ip, line, cell, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("spark", line, cell)
    assert ip.calls == []


def test_config_refuses_a_temperature_the_engine_would_refuse(ip):
    from spark_nb.notebook.session import Spark

    spark = Spark()
    with pytest.raises(ValueError, match="temperature"):
        spark.temperature = 1e-320
    spark.temperature = 0.7  # a usable one is kept
    assert spark.temperature == 0.7


def test_line_commands(ip, capsys):
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_line_magic("spark", "nonsense")
    with pytest.raises(UsageError, match="needs a command"):
        ip.run_line_magic("spark", "")
    with pytest.raises(UsageError, match="takes a MODEL"):
        ip.run_line_magic("spark", "load")
    ip.run_line_magic("spark", "config")
    assert "Spark.model = 'builtin'" in capsys.readouterr().out
    ip.run_line_magic("config", "Spark.max_tokens = 7")
    assert ip.spark_magics.session.max_tokens == 7
    ip.run_line_magic("spark", "load /no/such/model")
    assert "cannot load /no/such/model" in capsys.readouterr().err
    ip.run_line_magic("spark", "history")
    assert "no requests yet" in capsys.readouterr().out


def test_missing_model_is_one_message(ip, capsys):
    ip.run_cell_magic("spark", "--model /no/such/folder add docs", CODE)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/no/such/folder does not exist" in err
    assert ip.calls == []


def test_real_engine_on_random_model(ip, edit_folder, capsys):
    """The whole path with a real Engine: a random model may produce anything; only what parses is applied."""
    ip.run_cell_magic("spark", f"--model {edit_folder} --wafer mini --max-tokens 12 --seed 0 tidy", CODE)
    out = capsys.readouterr().out
    (req,) = ip.spark_magics.session.history
    assert req.result is not None and req.result.stats.tokens >= 1 and "%%spark tidy" in out
    if ip.calls:
        assert req.result.ok and ast.parse(ip.calls[0][0])
    else:
        assert "not applied" in out or "no change" in out
    ip.run_line_magic("spark", f"load {edit_folder}")
    ip.run_line_magic("spark", "status")
    out = capsys.readouterr().out
    assert "loaded in" in out and "engine: Engine(" in out and "numba cache" in out
    assert "also loaded: Engine(" in out and "on mini" in out  # the per-request --wafer mini engine


def test_interpolation_reaches_the_model(ip, monkeypatch, tokenizer):
    engine = scripted(tokenizer, replace_second_line(tokenizer, "    return x * 2\n"))
    use(ip, monkeypatch, engine)
    ip.user_ns["newname"] = "twice"
    ip.run_cell_magic("spark", "--no-context rename double to {newname} not {missing} nor {'a': 1}", CODE)
    (req,) = ip.spark_magics.session.history
    assert req.instruction == "rename double to twice not {missing} nor {'a': 1}"
    fmt = edit_format(tokenizer)
    assert engine.feeds[0] == fmt.prompt_ids(req.instruction, CODE, [])


def test_context_is_sent(ip, monkeypatch, tokenizer):
    engine = scripted(tokenizer, replace_second_line(tokenizer, "    return x * 2\n"))
    use(ip, monkeypatch, engine)
    typed = ["", "import math\n", "%timeit 1\n", "factor = 3\n", "<current>"]  # IPython's `In` holds these transformed
    monkeypatch.setattr(ip.history_manager, "input_hist_raw", typed)
    ip.user_ns["factor"] = 3
    cell = "def double(x):\n    return x*factor\n"
    ip.run_cell_magic("spark", "fmt", cell)
    expected = ctx.collect(cell, typed[:-1], ip.user_ns, 512, lambda s: len(tokenizer.encode(s)))
    assert expected == ["import math\n", "factor = 3\n", "# names in the notebook\n# factor: int\n"]
    assert engine.feeds[0] == edit_format(tokenizer).prompt_ids("fmt", cell, expected)


# -- context.py against independent expectations -------------------------------------------------------------------


def _expected_names(code, ns):
    """Independently: every Name node read in the code, via NodeVisitor, that the namespace holds."""
    found = []

    class V(ast.NodeVisitor):
        def visit_Name(self, node):
            if not isinstance(node.ctx, ast.Store):
                found.append(node.id)

    V().visit(ast.parse(code))
    return {n for n in found if n in ns and not n.startswith("_") and not hasattr(builtins, n)}


def test_names_used_matches_ast():
    import os

    ns = dict(os=os, data=[1, 2, 3], scale=lambda v, k=2: v * k, arr=np.zeros((3, 2)), unused=1, _private=2,
              len=len, Thing=ValueError)
    code = ("import json\nout = [scale(v) for v in data]\nprint(len(out), os.path.join('a', 'b'))\n"
            "y = arr.sum() + _private\nraise Thing(json)\n")
    got = ctx.names_used(code, ns)
    assert set(got) == _expected_names(code, ns) == {"scale", "data", "os", "arr", "Thing"}
    assert got["data"] == "list (len 3)" and got["arr"] == "ndarray 3 x 2 float64" and got["os"] == "module os"
    assert got["scale"] == "function(v, k=2)"
    assert ctx.names_used("def f(:\n    data", ns) == {"data": "list (len 3)"}  # unparsable: identifiers


def test_collect_respects_budget_and_strips_magics():
    history = ["", "a = 1\n", "%%bash\necho hi\n", "!ls\nb = 2\n", "c = 3\n"]
    assert ctx.earlier_cells(history) == ["a = 1\n", "b = 2\n", "c = 3\n"]
    count = lambda s: len(s)  # noqa: E731  a character is a token here
    assert ctx.collect("x\n", history, {}, budget=12, count=count) == ["b = 2\n", "c = 3\n"]  # newest that fit
    assert ctx.collect("x\n", history, {}, budget=0, count=count) == []


def test_interpolate():
    ns = {"a": 1, "name": "total"}
    assert ctx.interpolate("use {name} and {a}", ns) == "use total and 1"
    assert ctx.interpolate("keep {missing}, {a + 1}, {{a}}, {'k': v}, {", ns) == "keep {missing}, {a + 1}, {1}, {'k': v}, {"


@pytest.mark.parametrize("line, body", [
    ("add docstrings", CODE),
    ("--preview rename {old} to \"new\" and 'x'", 'def f():\n    return "a\\n" + \'b\'  # {not a field}\n'),
    ("fix it", "x = '''triple\n''' + \"\\\\\"\n%timeit 1\n"),
])
def test_async_rewrite_keeps_line_and_cell_exactly(ip, line, body):
    """In a kernel, a %%spark cell becomes `await ...spark_async(line, cell)`: the arguments must be the line and
    the cell exactly as typed, whatever quotes and backslashes they hold; any other cell is left alone."""
    from spark_nb.notebook.run import async_cells

    transformed = ip.input_transformer_manager.transform_cell(f"%%spark {line}\n{body}")
    tree = compile("".join(async_cells([transformed])), "<cell>", "exec",
                   flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    (stmt,) = tree.body
    assert isinstance(stmt.value, ast.Await)
    call = stmt.value.value
    assert call.func.attr == "spark_async" and [a.value for a in call.args] == [line, body]
    plain = "x = 1\nprint(x)\n"
    assert async_cells([plain]) == [plain]


def test_an_exact_refactor_loads_no_model(ip, monkeypatch, capsys):
    """Routed first: a rename is made by the program with no model at all (a folder that does not exist, a loader
    that raises); a request the model must make still says clearly that it cannot load one."""
    renamed = CODE.replace("double", "twice")
    ip.run_cell_magic("spark", "--model /no/such/folder --no-context rename double to twice", CODE)
    assert ip.calls == [(renamed, True)]
    assert "exact refactor: replaced the cell" in capsys.readouterr().out
    ip.run_cell_magic("spark", "--model /no/such/folder --model-only rename double to twice", CODE)
    assert "cannot load the model: model folder /no/such/folder does not exist" in capsys.readouterr().err

    def refuse(*args, **kwargs):
        raise RuntimeError("the model cannot load")

    monkeypatch.setattr(ip.spark_magics.session, "engine_for", refuse)
    ip.run_cell_magic("spark", "rename double to twice", CODE)  # with context: the program still needs no model
    assert ip.calls == [(renamed, True)] * 2
    ip.run_cell_magic("spark", "add docstrings", CODE)
    assert capsys.readouterr().err.endswith("spark: cannot load the model: the model cannot load\n")
    assert [r.applied for r in ip.spark_magics.session.history] == ["replaced the cell", "error", "replaced the cell",
                                                                     "error"]
    with pytest.raises(RuntimeError, match="cannot load"):  # the session's own edit: the same order
        ip.spark_magics.session.edit(CODE, "rename double to twice", exact=False)
    assert ip.spark_magics.session.edit(CODE, "rename double to twice").code == renamed


def test_the_guard_knows_what_the_kernel_binds(ip, monkeypatch, tokenizer, capsys):
    """%%spark tells the guard the names in the user namespace: an edit that reads `factor` is refused where
    nothing binds it and applied once the notebook has it."""
    edit = "    return x * factor\n"
    ip.user_ns.pop("factor", None)
    monkeypatch.setattr(ip.spark_magics.session, "max_tokens", 0)  # whatever an earlier test configured
    use(ip, monkeypatch, scripted(tokenizer, replace_second_line(tokenizer, edit)))
    ip.run_cell_magic("spark", "--no-context scale by the factor", CODE)
    assert ip.calls == [] and "uses names nothing defines: factor" in capsys.readouterr().out
    ip.user_ns["factor"] = 3
    use(ip, monkeypatch, scripted(tokenizer, replace_second_line(tokenizer, edit)))
    ip.run_cell_magic("spark", "--no-context scale by the factor", CODE)
    assert ip.calls == [("def double(x):\n    return x * factor\n", True)]


def test_models_lists_what_loads_and_load_takes_a_gguf(ip, capsys, tmp_path, monkeypatch):
    from store_layouts import tiny_gguf  # a tiny GGUF file as llama.cpp's converter writes one

    gguf = tiny_gguf(tmp_path / "tiny-coder.gguf")
    monkeypatch.setenv("SPARK_NB_MODELS", str(tmp_path))
    ip.run_line_magic("spark", "models")
    out = capsys.readouterr().out
    assert "builtin" in out and "tiny-coder" in out and "%spark load NAME" in out
    ip.run_line_magic("spark", f"load {gguf}")
    assert "loaded in" in capsys.readouterr().out
    ip.run_line_magic("spark", "load builtin")
