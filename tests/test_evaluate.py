"""spark-nb eval: per-family scores with scripted models (always right, never changes anything), the change checks
against each family's own references, and the CLI on a small data folder."""
from __future__ import annotations

import json

import pytest

from spark_nb import cli
from spark_nb.train import evaluate as E
from spark_nb.train.families import FAMILIES
from spark_nb.train.tasks import write_jsonl
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
        ref = E.score_task(t, t.after, ok=True)
        assert ref["parse"] and ref["change"], (t.family, t.meta)
        assert ref["semantics"] in (True, None) and ref["exact"] in (True, None)
        assert not E.score_task(t, t.before, ok=True)["change"], (t.family, t.meta)
    assert E.score_task(tasks[0], None, ok=False) == {"parse": False, "ok": False, "semantics":
                                                      False if FAMILIES[tasks[0].family].refactor else None,
                                                      "change": False, "exact": None if tasks[0].family not in
                                                      E.ONE_ANSWER else False, "applied": False}


def test_perfect_model_scores_100_everywhere(edit_tokenizer, tasks):
    engine = ScriptedEngine(edit_tokenizer, perfect_script(edit_tokenizer, tasks))
    result = E.evaluate(engine, tasks)
    assert set(result["families"]) == set(FAMILIES) and result["tasks"] == len(tasks)
    for name, a in result["families"].items():
        assert a["parse"] == a["ok"] == a["change"] == a["applied"] == 1.0, name
        assert a["semantics"] == (1.0 if FAMILIES[name].refactor else None), name
        assert a["exact"] == (1.0 if name in E.ONE_ANSWER else None), name
    assert all(v == 1.0 for v in result["groups"].values())
    table = E.format_table(result)
    assert table.startswith("| family |") and "| rename_variable |" in table and "**all**" in table


def test_identity_model_makes_no_change(edit_tokenizer, tasks):
    result = E.evaluate(ScriptedEngine(edit_tokenizer, identity_script(edit_tokenizer)), tasks, limit=1)
    assert result["tasks"] == len(FAMILIES)  # limit: per family
    for name, a in result["families"].items():
        assert a["change"] == a["applied"] == 0.0 and a["exact"] in (0.0, None), name
        assert a["parse"] == (0.0 if name == "fix_syntax_error" else 1.0), name
        if FAMILIES[name].refactor:
            assert a["semantics"] == 1.0, name  # nothing changed, so nothing broke
    assert result["groups"]["ok_that_parse"] == 1.0


def test_cli_eval_on_a_data_folder(edit_folder, tasks, tmp_path, capsys):
    write_jsonl(tasks[:4], tmp_path / "test.jsonl")
    assert cli.main(["eval", "--model", str(edit_folder), "--data", str(tmp_path), "--limit", "1",
                     "--max-tokens", "8", "--dtype", "fp32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "test" and 1 <= result["tasks"] <= 4
    assert result["all"]["ok"] <= result["all"]["parse"] or result["all"]["ok"] == 0  # ok implies parse
    assert cli.main(["eval", "--data", str(tmp_path / "missing"), "--model", str(edit_folder)]) == 2


def test_card_gets_the_table_between_its_markers(edit_folder, tasks, tmp_path, capsys):
    from spark_nb.train.export import EVAL_BEGIN, EVAL_END

    model = tmp_path / "model"
    model.mkdir()
    for f in edit_folder.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    (model / "README.md").write_text(f"# card\n\n## Metrics\n\n{EVAL_BEGIN}\nnot yet\n{EVAL_END}\n\n## Limits\n")
    write_jsonl(tasks[:2], tmp_path / "test.jsonl")
    for _ in range(2):  # twice: the section is replaced, not appended
        assert cli.main(["eval", "--model", str(model), "--data", str(tmp_path), "--limit", "1", "--max-tokens",
                         "4", "--card"]) == 0
    card = (model / "README.md").read_text()
    assert card.count(EVAL_BEGIN) == 1 and "not yet" not in card and card.endswith("## Limits\n")
    assert "| family | kind | n | parse |" in card and "Targets:" in card
