"""Corpus: sources, licences, unit extraction, dedup, file-level split, manifest."""
from __future__ import annotations

import ast
import email.message
import functools
import json

from spark_nb.train import corpus as C


@functools.lru_cache(maxsize=1)
def small_corpus():
    return C.build_corpus(limit_files=80, include_packages=True, max_files_per_dist=3)


def _meta(**fields):
    m = email.message.Message()
    for k, v in fields.items():
        if isinstance(v, list):
            for x in v:
                m[k.replace("_", "-")] = x
        else:
            m[k.replace("_", "-")] = v
    return m


def test_licence_classification():
    assert C.classify_expression("MIT") == "MIT"
    assert C.classify_expression("BSD-3-Clause") == "BSD"
    assert C.classify_expression("Apache-2.0 OR BSD-2-Clause") == "Apache-2.0"
    assert C.classify_expression("BSD-2-Clause AND Apache-2.0 WITH LLVM-exception") == "BSD AND Apache-2.0"
    assert C.classify_expression("MPL-2.0 AND MIT") is None
    assert C.classify_expression("GPL-3.0-or-later") is None
    assert C.classify_expression("PSF-2.0") == "PSF-2.0"
    assert C.classify_distribution(_meta(License_Expression="ISC")) == ("ISC", "License-Expression")
    assert C.classify_distribution(_meta(License="Apache License, Version 2.0")) == ("Apache-2.0", "License")
    assert C.classify_distribution(_meta(License="UNKNOWN", Classifier=[
        "License :: OSI Approved :: ISC License (ISCL)"])) == ("ISC", "Classifier")
    assert C.classify_distribution(_meta(Classifier=[
        "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)"])) is None
    assert C.classify_distribution(_meta(License="GPLv3")) is None
    assert C.classify_distribution(_meta(License="Copyright (c) 2015\n\nPermission is hereby granted, free of "
                                                 "charge, to any person")) == ("MIT", "License")


def test_stdlib_source_skips_tests_and_site_packages():
    src = C.stdlib_source()
    assert src.license == "PSF-2.0" and len(src.files) > 300
    for rel, _ in src.files:
        parts = rel.split("/")
        assert "site-packages" not in parts and "test" not in parts and "tests" not in parts
        assert "idle_test" not in parts and "lib2to3" not in parts and not parts[-1].startswith("test_")
    rels = {r for r, _ in src.files}
    assert "json/decoder.py" in rels and "textwrap.py" in rels


def test_extract_units_kinds_and_sizes():
    code = (
        '"""module doc"""\nimport os\nimport sys\n\nX = 1\nY = 2\nprint(X + Y)\n\n\n'
        "# helper\ndef f(a):\n    b = a + 1\n    return b\n\n\n"
        "class Big:\n" + "".join(f"    def m{i}(self):\n        x = {i}\n        return x\n\n" for i in range(30))
    )
    units = C.extract_units(code, "t", "t.py")
    kinds = [u.kind for u in units]
    assert "block" in kinds and "function" in kinds and kinds.count("method") == 30
    f = next(u for u in units if u.kind == "function")
    assert f.text.startswith("# helper\ndef f(a):")
    m = next(u for u in units if u.kind == "method")
    assert m.text.startswith("def m0(self):")  # dedented
    for u in units:
        n = u.text.count("\n")
        assert C.MIN_LINES <= n <= C.MAX_LINES and u.text.endswith("\n")
        ast.parse(u.text)
    assert all("module doc" not in u.text for u in units)


def test_dedup_exact_and_whitespace():
    a = C.Unit("s", "a.py", "def f(x):\n    return x + 1\n\n", "function")
    b = C.Unit("s", "b.py", "def f(x):\n    return x + 1\n\n", "function")
    c = C.Unit("s", "c.py", "def f(x):\n        return   x + 1\n", "function")
    d = C.Unit("s", "d.py", "def g(x):\n    return x + 2\n\n", "function")
    assert C.dedup([a, b, c, d]) == [a, d]


def test_split_is_by_file_and_deterministic():
    corp = small_corpus()
    keys = {s: {u.file_key for u in corp.split(s)} for s in C.SPLITS}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    assert corp.train and corp.validation and corp.test
    for s in C.SPLITS:
        for u in corp.split(s)[:200]:
            assert C.split_of(u.file_key) == s
    assert C.split_of("python-stdlib:json/decoder.py") == C.split_of("python-stdlib:json/decoder.py")
    # roughly 90/5/5 over many keys
    sp = [C.split_of(f"x:{i}.py") for i in range(4000)]
    assert 0.86 < sp.count("train") / 4000 < 0.94


def test_corpus_has_no_duplicates_across_splits():
    corp = small_corpus()
    seen = set()
    for u in corp.units:
        h = C.normalised(u.text)
        assert h not in seen
        seen.add(h)


def test_manifest_roundtrip(tmp_path):
    corp = small_corpus()
    names = [e.source for e in corp.manifest.entries]
    assert names[0] == "python-stdlib" and len(names) > 5
    for e in corp.manifest.entries:
        assert e.license and e.version and e.files > 0
    p = corp.manifest.write(tmp_path / "corpus_manifest.json")
    d = json.loads(p.read_text())
    assert d["total_units"] == len(corp.units)
    assert C.Manifest.read(p).entries == corp.manifest.entries
    st = corp.stats()
    assert st["approx_tokens"]["train"] > 0 and st["files"] > 0
