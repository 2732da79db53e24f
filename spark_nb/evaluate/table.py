"""The evaluation as Markdown: a table per test set (it goes in the README and the model card as is)."""
from __future__ import annotations

from pathlib import Path

from ..train.families import FAMILIES

__all__ = ["format_table", "card_of", "write_card", "LEGEND"]

LEGEND = ("n: tasks; applied: the edit went into the cell (the guard passed the model's result, or an exact refactor "
          "made it); change: the requested change is in the result (one check per family); semantics (refactor "
          "families): the result means what the cell meant (the family's AST check); **useful**: applied, the "
          "change present and, under a refactor family, the semantics kept: the share of requests where the user "
          "gets a correct edit; exact: equal to the one right answer (families that have one); by refactor: the "
          "share an exact refactor (spark_nb.refactors) made, not the model; median / p90 ms: wall time of one "
          "edit call.")


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


def _ms(v) -> str:
    return "—" if v is None else f"{1e3 * v:,.0f}" if v >= 0.01 else f"{1e3 * v:.1f}"


def _kind(name: str) -> str:
    fam = FAMILIES.get(name)
    if fam is None:
        return ""
    return ("mechanical" if fam.mechanical else "human") + (", refactor" if fam.refactor else "")


def set_table(result: dict) -> str:
    """One set's table and its targets line."""
    lines = ["| family | kind | n | applied | change | semantics | **useful** | exact | by refactor | median ms | "
             "p90 ms |", "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, a in list(result["families"].items()) + [("**all**", result["all"])]:
        lines.append(f"| {name} | {_kind(name)} | {a['n']} | {_pct(a['applied'])} | {_pct(a['change'])} | "
                     f"{_pct(a['semantics'])} | **{_pct(a['useful'])}** | {_pct(a['exact'])} | "
                     f"{_pct(a['by_refactor'])} | {_ms(a['median_s'])} | {_ms(a['p90_s'])} |")
    g, t = result["groups"], result["targets"]
    lines += ["", f"Targets: useful on mechanical families {_pct(g['mechanical_useful'])} (target "
              f"≥ {_pct(t['mechanical_useful'])}, with the pipeline); applied results that parse "
              f"{_pct(g['applied_that_parse'])} (target {_pct(t['applied_that_parse'])}); applied but semantics "
              f"changed {g['applied_semantics_changed']} (target {t['applied_semantics_changed']}). Useful on "
              f"human-target families: {_pct(g['human_useful'])}."]
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """Every set of a `run` result: a heading line, its table, then what the columns mean."""
    mode = "the pipeline (exact refactors, the model for the rest)" if result["pipeline"] else "the model alone"
    out = []
    for name, r in result["sets"].items():
        out += [f"**{name}** ({r['source']}; {r['tasks']} tasks; {mode}):", "", set_table(r), ""]
    return "\n".join(out + [LEGEND])


def card_of(model) -> Path:
    """The model card (README.md of a model folder that spark-nb's export wrote) of a model path or name, or a
    ValueError saying why there is none: asked before an evaluation runs, not after."""
    from ..model.stores import resolve
    from ..train.export import EVAL_BEGIN, EVAL_END

    path = resolve(model)
    card = path / "README.md"
    if not path.is_dir() or not card.is_file():
        raise ValueError(f"--card writes the table into a model folder's README.md, and {model} "
                         f"({path}) is {'a file' if path.is_file() else 'a folder without one'}: "
                         "leave out --card, or evaluate a model folder that spark-nb's training exported")
    text = card.read_text()
    if EVAL_BEGIN not in text or EVAL_END not in text:
        raise ValueError(f"{card} has no {EVAL_BEGIN} ... {EVAL_END} section to write the table into (was it written "
                         "by spark-nb's export?): add the two markers where the table goes, or leave out --card")
    return card


def write_card(card: Path, result: dict) -> Path:
    """Put the tables into the model card (card_of), between the markers export left."""
    from ..train.export import EVAL_BEGIN, EVAL_END

    head, rest = card.read_text().split(EVAL_BEGIN, 1)
    tail = rest.split(EVAL_END, 1)[1]
    body = ("`spark-nb eval` (greedy decoding; files and cells the model never trained on):\n\n"
            + format_table(result))
    card.write_text(f"{head}{EVAL_BEGIN}\n{body}\n{EVAL_END}{tail}")
    return card
