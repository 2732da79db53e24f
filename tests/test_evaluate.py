"""spark-nb eval: per-family scores with scripted models (always right, never changes anything, changes the meaning),
the pipeline (exact refactors first) against the model alone, the change checks against each family's own
references, the notebook set, and the CLI on a small data folder and on the built-in model."""
from __future__ import annotations

import ast
import json
from dataclasses import replace

import pytest

import spark_nb.evaluate as E
from spark_nb import cli
from spark_nb.evaluate.score import aggregate
from spark_nb.evaluate.sets import notebook_cells, notebook_tasks
from spark_nb.evaluate.table import set_table
from spark_nb.train.families import FAMILIES
from spark_nb.train.tasks import family_counts, write_jsonl
import test_edit_api as base
from test_edit_api import ScriptedEngine, family_tasks, identity_script, perfect_script

edit_folder, edit_tokenizer = base.edit_folder, base.edit_tokenizer  # the shared session fixtures


@pytest.fixture(scope="module")
def tasks():
    return family_tasks(per_family=2)


def test_every_family_has_a_change_check(tasks):
    assert set(E.CHANGE_CHECKS) == set(FAMILIES)
    assert {t.family for t in tasks} == set(FAMILIES)


def test_reference_scores_full_and_before_scores_no_change(tasks):
    # the checks read the families' definitions: every reference shows the change, no input does already
    for t in tasks:
        ref = E.score_task(t, t.after, True)
        assert ref["parse"] and ref["change"] and ref["useful"], (t.family, t.meta)
        assert ref["semantics"] in (True, None) and ref["exact"] in (True, None)
        assert not E.score_task(t, t.before, True)["change"], (t.family, t.meta)
    first = tasks[0]
    assert E.score_task(first, None, False) == {
        "applied": False, "parse": False, "change": False, "useful": False,
        "semantics": False if FAMILIES[first.family].refactor else None,
        "exact": None if first.family not in E.ONE_ANSWER else False}


def test_perfect_model_scores_100_everywhere(edit_tokenizer, tasks):
    engine = ScriptedEngine(edit_tokenizer, perfect_script(edit_tokenizer, tasks))
    result = E.evaluate(engine, tasks, model_only=True)
    assert set(result["families"]) == set(FAMILIES) and result["tasks"] == len(tasks)
    for name, a in result["families"].items():
        assert a["parse"] == a["applied"] == a["change"] == a["useful"] == 1.0, name
        assert a["semantics"] == (1.0 if FAMILIES[name].refactor else None), name
        assert a["exact"] == (1.0 if name in E.ONE_ANSWER else None), name
        assert a["by_refactor"] == 0.0 and 0 < a["median_s"] <= a["p90_s"], name
    assert result["groups"] == {"mechanical_useful": 1.0, "human_useful": 1.0, "applied_that_parse": 1.0,
                                "applied_semantics_changed": 0}
    table = set_table(result)
    assert table.startswith("| family |") and "| rename_variable |" in table and "**all**" in table
    assert "Targets: useful on mechanical families 100%" in table


def test_identity_model_makes_no_change(edit_tokenizer, tasks):
    result = E.evaluate(ScriptedEngine(edit_tokenizer, identity_script(edit_tokenizer)), tasks, limit=1,
                        model_only=True)
    assert result["tasks"] == len(FAMILIES)  # limit: per family
    for name, a in result["families"].items():
        assert a["change"] == a["useful"] == 0.0 and a["exact"] in (0.0, None), name
        assert a["applied"] == a["parse"] == (0.0 if name == "fix_syntax_error" else 1.0), name
        if FAMILIES[name].refactor:
            assert a["semantics"] == 1.0, name  # nothing changed, so nothing broke
    assert result["groups"]["applied_that_parse"] == 1.0


def test_pipeline_sends_exact_refactors_to_the_refactors_and_model_only_does_not(edit_tokenizer, tasks):
    """The identity model never makes a change: whatever the pipeline gets right, an exact refactor made."""
    engine = ScriptedEngine(edit_tokenizer, identity_script(edit_tokenizer))
    pipeline, alone = E.evaluate(engine, tasks), E.evaluate(engine, tasks, model_only=True)
    assert pipeline["pipeline"] and not alone["pipeline"]
    exact = {name for name, a in pipeline["families"].items() if a["by_refactor"]}
    assert {"rename_variable", "rename_function", "sort_imports"} <= exact
    assert not exact & {"add_docstrings", "add_type_hints", "add_comments", "fix_syntax_error"}  # the model's job
    for name in exact:
        assert pipeline["families"][name]["useful"] > 0 == alone["families"][name]["useful"], name
    assert all(a["by_refactor"] == 0.0 for a in alone["families"].values())


def test_useful_is_false_when_applied_but_semantics_changed(edit_tokenizer, tasks):
    """A bad model renames and changes what the code does: the guard refuses it; had it been applied, it would
    count as applied but semantics changed, never as useful."""
    task = next(t for t in tasks if t.family == "rename_variable")
    bad = replace(task, after=task.after.rstrip("\n") + "\nresult = None\n")  # renamed, and one line more
    engine = ScriptedEngine(edit_tokenizer, perfect_script(edit_tokenizer, [bad]))
    a = E.evaluate(engine, [task], model_only=True)["families"]["rename_variable"]
    assert a["change"] == 1.0 and a["semantics"] == 0.0 and a["applied"] == a["useful"] == 0.0
    row = E.score_task(task, bad.after, True)  # as if applied
    assert row["applied"] and row["change"] and row["semantics"] is False and not row["useful"]
    assert aggregate([row])["applied_semantics_changed"] == 1


def test_notebook_set_parses_and_every_family_makes_tasks_on_it():
    cells = notebook_cells()
    assert 60 <= len(cells) <= 120
    for cell in cells:
        ast.parse(cell)
    tasks, source = notebook_tasks()
    counts = family_counts(tasks)
    assert f"{len(cells)} notebook cells" in source
    for name in ("rename_variable", "rename_function", "to_fstring", "sort_imports", "remove_debug",
                 "print_to_logging", "add_docstrings", "add_comments", "add_type_hints", "loop_to_comprehension",
                 "extract_constant", "wrap_main"):
        assert counts.get(name, 0) > 0, name
    assert notebook_tasks()[0] == tasks  # a fixed seed per family and cell


def test_cli_eval_on_a_data_folder(edit_folder, tasks, tmp_path, capsys):
    write_jsonl(tasks[:4], tmp_path / "test.jsonl")
    assert cli.main(["eval", "--model", str(edit_folder), "--data", str(tmp_path), "--set", "library", "--limit",
                     "1", "--max-tokens", "8", "--dtype", "fp32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    library = result["sets"]["library"]
    assert set(result["sets"]) == {"library"} and result["pipeline"] and 1 <= library["tasks"] <= 4
    assert library["groups"]["applied_that_parse"] in (1.0, None)
    assert cli.main(["eval", "--data", str(tmp_path / "missing"), "--model", str(edit_folder), "--set",
                     "library"]) == 2


def test_cli_eval_notebook_set_on_the_builtin_model(capsys):
    assert cli.main(["eval", "--set", "notebook", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**notebook** (118 notebook cells") and "| rename_variable |" in out
    assert "by refactor" in out and "useful" in out and "Targets:" in out
    assert cli.main(["eval", "--set", "notebook", "--limit", "1", "--model-only", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert not result["pipeline"] and result["sets"]["notebook"]["all"]["by_refactor"] == 0.0


def test_card_gets_the_table_between_its_markers(edit_folder, tasks, tmp_path, capsys):
    from spark_nb.train.export import EVAL_BEGIN, EVAL_END

    model = tmp_path / "model"
    model.mkdir()
    for f in edit_folder.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    (model / "README.md").write_text(f"# card\n\n## Metrics\n\n{EVAL_BEGIN}\nnot yet\n{EVAL_END}\n\n## Limits\n")
    write_jsonl(tasks[:2], tmp_path / "test.jsonl")
    for _ in range(2):  # twice: the section is replaced, not appended
        assert cli.main(["eval", "--model", str(model), "--data", str(tmp_path), "--set", "library", "--limit", "1",
                         "--max-tokens", "4", "--card"]) == 0
    card = (model / "README.md").read_text()
    assert card.count(EVAL_BEGIN) == 1 and "not yet" not in card and card.endswith("## Limits\n")
    assert "| family | kind | n | applied |" in card and "Targets:" in card
    # a model without a card section: one message, before anything is evaluated
    (model / "README.md").write_text("# card\n")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    for where, says in ((model, f"no {EVAL_BEGIN}"), (gguf, "is a file")):
        capsys.readouterr()
        assert cli.main(["eval", "--model", str(where), "--data", str(tmp_path), "--set", "library", "--card"]) == 2
        err = capsys.readouterr().err
        assert says in err and "leave out --card" in err and err.count("\n") == 1


def test_the_change_checks_read_what_was_asked():
    from spark_nb.train.families import EditTask

    cell = "import sys\nimport os\nimport numpy as np\nprint(os.sep, np.pi)\n"

    def task(family, instruction, before, after):
        return EditTask(family, instruction, before, after)

    # "sort imports" asks for an order, isort's sections included; removing the unused one is asked separately
    isorted = "import os\nimport sys\n\nimport numpy as np\nprint(os.sep, np.pi)\n"
    flat = "import numpy as np\nimport os\nprint(os.sep, np.pi)\n"
    assert E.score_task(task("sort_imports", "sort imports", cell, flat), isorted, True)["change"]
    assert not E.score_task(task("sort_imports", "remove unused imports", cell, flat), isorted, True)["change"]
    # "remove breakpoints" leaves the prints, "delete the prints" the breakpoints
    debug = "def f(x):\n    print(x)\n    breakpoint()\n    return x\n"
    clean = "def f(x):\n    return x\n"
    for instruction, kept in (("remove breakpoints", "    print(x)\n"), ("delete the prints", "    breakpoint()\n")):
        proposal = "def f(x):\n" + kept + "    return x\n"
        assert E.score_task(task("remove_debug", instruction, debug, clean), proposal, True)["change"]
        assert not E.score_task(task("remove_debug", "remove the debugging statements", debug, clean), proposal,
                                True)["change"]
