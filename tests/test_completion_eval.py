"""Fill-in-the-middle training examples (spark_nb.train.fim) and the completion evaluation (spark-nb eval --completion):
cursors where people type, the prompt the server sends, the loss mask, and the metrics on hand-computed cases."""
from __future__ import annotations

import random

import pytest

from spark_nb.evaluate.completion import completion_cases, score_suggestion, suggest
from spark_nb.server import complete
from spark_nb.train import fim
from spark_nb.train import tokenizer as T

CELL = '''def mean(values, n=3):
    """The mean of values (a name in a string is no cursor)."""
    total = sum(values)  # a comment
    for v in values:
        print(v)
    return total / len(values)
'''


def test_cursors_sit_where_people_type():
    cs = fim.cursors(CELL)
    got = {(c.kind, CELL[:c.start].split("\n")[-1], CELL[c.start:c.end]) for c in cs}
    assert ("identifier", "    total = sum", "(values)  # a comment") in got
    assert ("bracket", "    total = sum(", "values)  # a comment") in got
    assert ("assign", "    total = ", "sum(values)  # a comment") in got
    assert ("block", "        ", "print(v)") in got  # after `for ...:`, the body's first line, indented
    assert ("line", "    ", "return total / len(values)") in got
    # the def's body: up to three lines, from the indentation on
    block = next(c for c in cs if c.kind == "block" and CELL[:c.start].endswith("n=3):\n    "))
    assert CELL[block.start:block.end].count("\n") == 2
    for c in cs:
        middle = CELL[c.start:c.end]
        assert any(ch.isalnum() for ch in middle)  # never a lone ")" or ":"
        assert c.kind == "block" or "\n" not in middle
        assert "string is" not in CELL[:c.start].split("\n")[-1]  # no cursor inside the docstring
    assert fim.cursors("def broken(:\n") == []


def test_examples_are_deterministic_and_use_the_unit_before_as_context():
    units = [{"text": CELL, "source": "s", "path": "a.py"}, {"text": "x = mean([1, 2])\nprint(x)\n",
                                                              "source": "s", "path": "a.py"},
             {"text": "y = 1\nz = y + 1\n", "source": "s", "path": "b.py"}]
    a = fim.examples(units, seed=1, context_p=1.0)
    assert a == fim.examples(units, seed=1, context_p=1.0)
    assert [e.context for e in a] == ["", CELL, ""]  # only from the same file
    for e, u in zip(a, units):
        assert e.prefix + e.middle + e.suffix == u["text"]


def _tok():
    tok = T.train_tokenizer([CELL * 3, "x = mean([1, 2])\n"], vocab_size=400)
    n = tok.get_vocab_size(with_added_tokens=True)
    before = dict(tok.get_vocab(with_added_tokens=True))
    T.with_fim(tok)
    assert tok.get_vocab_size(with_added_tokens=True) == n + 3
    assert {t: tok.token_to_id(t) for t in before} == before  # every old id kept
    assert [tok.token_to_id(t) for t in T.FIM_TOKENS] == [n, n + 1, n + 2]
    assert tuple(T.FIM_TOKENS) == complete.FIM
    return tok


class _Ordered:
    """A training tokenizer as the engine's Tokenizer shows it: with the model folder's fim_order."""

    def __init__(self, tok, fim_order):
        self.tok, self.fim_order = tok, fim_order

    def token_to_id(self, token):
        return self.tok.token_to_id(token)


@pytest.mark.parametrize("order", sorted(complete.FIM_ORDERS))
def test_encoding_is_the_servers_prompt_then_the_middle(order):
    from spark_nb.train.format import EditFormat

    tok = _tok()
    fmt = EditFormat(tok)
    for c in fim.cursors(CELL):  # every kind, line starts (held back in SPM) included
        e = fim.example(CELL, c, context="import math\n")
        ids, mask = fim.encode(fmt, [e], order)[0]
        # the prompt the server runs (indentation held back, then written by the model), special tokens recognised
        # as the engine recognises them
        text, indent = complete.held(complete.prompt(_Ordered(tok, order), e.prefix, e.suffix, e.context))
        prompt_ids = tok.encode(text).ids
        n_prompt = len(prompt_ids)
        assert ids[:n_prompt].tolist() == prompt_ids
        assert fmt.decode_text(ids[n_prompt:-1]) == indent + e.middle and ids[-1] == fmt.end
        assert indent == ("" if order == "psm" or c.kind not in ("line", "block") else CELL[:c.start].split("\n")[-1])
        assert mask[n_prompt:].all()  # the middle and <|end|>
        supervised = [i for i, m in zip(ids[:n_prompt], mask[:n_prompt]) if m]
        assert fmt.decode_text(supervised) == e.prefix[:len(e.prefix) - len(indent)]  # the cell's own prefix only,
        # never the context cell, the suffix or the FIM tokens


def test_score_on_hand_computed_cases():
    # middle "sum(values)": the suggestion "sum(vals)" shares "sum(val" (7 characters), and its line differs
    s = score_suggestion("sum(vals)", "sum(values)")
    assert (s["exact_line"], s["accepted"], s["whole"], s["empty"]) == (False, 7, False, False)
    # a block: the first line right, the second wrong -> exact line, accepted up to the difference
    s = score_suggestion("print(v)\n        x = 1", "print(v)\n        return v")
    assert (s["exact_line"], s["accepted"], s["whole"]) == (True, 17, False)
    # trailing spaces do not break an exact line
    assert score_suggestion("len(values) ", "len(values)")["exact_line"]
    s = score_suggestion("", "x")
    assert (s["exact_line"], s["accepted"], s["empty"]) == (False, 0, True)


class _Engine:
    """Streams fixed text, one character per token, and records the prompt."""

    def __init__(self, tokenizer, text):
        self.tokenizer, self.text, self.prompts = tokenizer, text, []

    def stream(self, prompt, max_new_tokens=48):
        from types import SimpleNamespace

        self.prompts.append(prompt)
        events = [SimpleNamespace(text=ch) for ch in self.text[:max_new_tokens]] + [SimpleNamespace(reason="eos")]

        class S(list):
            def cancel(self):
                pass

        return S(events)


def test_suggestion_is_cut_where_the_server_cuts_it():
    tok = _tok()
    case = fim.FimExample("    total = ", "sum(values)", "\n    return total\n", "", "assign")
    # multi-line cursor (nothing after it on its line): a blank line ends the suggestion
    eng = _Engine(tok, "sum(values)\n\nprint(1)")
    text, _ = suggest(eng, case)
    assert text == "sum(values)"
    assert eng.prompts[0] == complete.prompt(tok, case.prefix, case.suffix)  # FIM: the tokenizer has the tokens
    assert eng.prompts[0].startswith(T.FIM_PREFIX)
    spm = _Engine(_Ordered(tok, "spm"), "sum(values)\n\nprint(1)")
    assert suggest(spm, case)[0] == "sum(values)"
    assert spm.prompts[0] == f"{T.FIM_PREFIX}{T.FIM_SUFFIX}{case.suffix}{T.FIM_MIDDLE}{case.prefix}"  # SPM
    suggest(eng, case, style="continuation")
    assert eng.prompts[1] == case.prefix  # the text before the cursor only
    # a dedent below the cursor's line ends it too
    text, _ = suggest(_Engine(tok, "sum(values)\nprint(1)"), case)
    assert text == "sum(values)"


def test_cases_are_seeded_one_per_unit_with_context_from_the_same_file():
    units = [{"text": CELL, "source": "s", "path": "a.py"},
             {"text": "x = mean([1, 2])\nprint(x)\n", "source": "s", "path": "a.py"},
             {"text": "y = 1\nz = y + 1\n", "source": "s", "path": "b.py"}]
    a = completion_cases(units, n=3, seed=0)
    assert a == completion_cases(units, n=3, seed=0) and len(a) == 3
    by_text = {e.prefix + e.middle + e.suffix: e for e in a}
    assert by_text[units[1]["text"]].context == CELL and by_text[units[2]["text"]].context == ""
    assert len(completion_cases(units, n=2, seed=0)) == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_draw_picks_a_kind_the_cell_has(seed):
    cs = fim.cursors(CELL)
    c = fim.draw(cs, random.Random(seed))
    assert c in cs
    assert fim.draw([], random.Random(seed)) is None
