"""Training corpus for the built-in edit model: permissively licensed Python already on this machine.

Sources
  * the standard library of the running interpreter (PSF-2.0), minus tests, test data and site-packages;
  * installed distributions whose metadata (License-Expression, License, or trove classifiers) names a
    permissive licence: MIT, BSD, Apache-2.0, PSF, ISC, Python-2.0.  Which field decided is recorded.

Files are cut with ``ast`` into notebook-cell-sized :class:`Unit` s (functions, classes, dedented methods of
large classes, top-level statement groups of 3–80 lines), deduplicated (exact and whitespace-normalised
hashes), and split train / validation / test *by file* with a stable hash of the file's path, so no file ever
contributes to two splits.  A :class:`Manifest` (source, version, licence, files, units) ships beside the model.

Nothing here touches the network.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata as md
import io
import json
import os
import re
import sys
import sysconfig
import textwrap
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

MIN_LINES = 3
MAX_LINES = 80
MAX_FILE_BYTES = 400_000
SPLITS = ("train", "validation", "test")
# per-mille thresholds: 90 / 5 / 5
SPLIT_CUTS = (900, 950)

STDLIB_SKIP_DIRS = {
    "site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3",
    "ensurepip", "turtledemo", "__phello__", "config-3.11-x86_64-linux-gnu",
}
PKG_SKIP_DIRS = {"test", "tests", "testing", "_vendor", "vendor", "vendored", "__pycache__", "_vendored",
                 "examples", "benchmarks"}

# canonical licence ids we accept; value = regex over a normalised licence string
_PERMISSIVE = [
    ("MIT", re.compile(r"^(mit|mit[- ]0|mit license|the mit license|expat)$")),
    ("BSD", re.compile(r"^(bsd|0?bsd[- ]?[0-9]?[- ]?clause.*|bsd license|new bsd.*|modified bsd.*|simplified bsd.*"
                       r"|bsd[- ][0-9][- ]clause.*|bsd-[0-9]-clause.*)$")),
    ("Apache-2.0", re.compile(r"^(apache[- ]?2(\.0)?|apache license,? (version )?2(\.0)?( license)?"
                              r"|apache software license|apache 2\.0 license|apache-2\.0 with llvm-exception)$")),
    ("PSF-2.0", re.compile(r"^(psf(-2\.0)?|psfl|python software foundation license)$")),
    ("ISC", re.compile(r"^(isc|isc license( \(iscl\))?)$")),
    ("Python-2.0", re.compile(r"^(python-2\.0)$")),
]
_CLASSIFIERS = {
    "License :: OSI Approved :: MIT License": "MIT",
    "License :: OSI Approved :: BSD License": "BSD",
    "License :: OSI Approved :: Apache Software License": "Apache-2.0",
    "License :: OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "License :: OSI Approved :: ISC License (ISCL)": "ISC",
    "License :: OSI Approved :: MIT No Attribution License (MIT-0)": "MIT",
}


# --------------------------------------------------------------------------------------------------- licences
def _norm_licence(s: str) -> str:
    return re.sub(r"\s+", " ", s.strip().strip(".").lower())


def licence_id(s: str) -> str | None:
    """Canonical permissive id for one licence name/SPDX id, else None."""
    n = _norm_licence(s)
    for lid, rx in _PERMISSIVE:
        if rx.match(n):
            return lid
    return None


def classify_expression(expr: str) -> str | None:
    """SPDX-ish expression: every AND-term permissive, or any OR-alternative permissive."""
    expr = expr.strip().strip("()")
    if not expr:
        return None
    if re.search(r"\bOR\b", expr):
        for alt in re.split(r"\bOR\b", expr):
            got = classify_expression(alt)
            if got:
                return got
        return None
    terms = [t.strip().strip("()") for t in re.split(r"\bAND\b", expr)]
    ids = []
    for t in terms:
        t = re.sub(r"\s+WITH\s+LLVM-exception", "", t, flags=re.I)
        lid = licence_id(t)
        if lid is None:
            return None
        ids.append(lid)
    return " AND ".join(dict.fromkeys(ids))


def classify_distribution(meta) -> tuple[str, str] | None:
    """(licence id, field that decided) for a distribution's metadata, or None when not permissive."""
    expr = meta.get("License-Expression")
    if expr:
        lid = classify_expression(expr)
        return (lid, "License-Expression") if lid else None
    lic = (meta.get("License") or "").strip()
    if lic and lic.upper() != "UNKNOWN":
        first = lic.splitlines()[0].strip()
        lid = classify_expression(first) or licence_id(first.split(" - ")[0])
        if lid is None and len(first) > 40 or lid is None and first.lower().startswith("copyright"):
            # full licence text pasted into the field: recognise the usual headers
            low = lic.lower()
            if "permission is hereby granted, free of charge" in low:
                lid = "MIT"
            elif "redistribution and use in source and binary forms" in low and "gnu" not in low:
                lid = "BSD"
        if lid:
            return lid, "License"
    classifiers = [c for c in (meta.get_all("Classifier") or []) if c.startswith("License ::")]
    if classifiers:
        ids = [_CLASSIFIERS.get(c) for c in classifiers]
        if all(ids):
            return " AND ".join(dict.fromkeys(ids)), "Classifier"
    return None


# --------------------------------------------------------------------------------------------------- sources
@dataclass
class Source:
    name: str
    version: str
    license: str
    license_field: str
    files: list[tuple[str, Path]] = field(default_factory=list)  # (relative path, absolute path)


def _stable_sample(items: list, limit: int | None, key) -> list:
    if limit is None or len(items) <= limit:
        return items
    return sorted(items, key=lambda it: _h(key(it)))[:limit]


def _h(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def stdlib_source() -> Source:
    root = Path(sysconfig.get_paths()["stdlib"])
    src = Source("python-stdlib", sys.version.split()[0], "PSF-2.0", "python")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP_DIRS and not d.startswith("test"))
        for fn in sorted(filenames):
            if fn.endswith(".py") and not fn.startswith("test_"):
                p = Path(dirpath) / fn
                src.files.append((p.relative_to(root).as_posix(), p))
    return src


def package_sources(exclude: Iterable[str] = ("spark-nb",), max_files_per_dist: int | None = 60) -> list[Source]:
    out: dict[str, Source] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if not name or name in exclude or name.lower() in out:
            continue
        got = classify_distribution(dist.metadata)
        if not got:
            continue
        files = []
        for f in dist.files or []:
            parts = f.parts
            if not f.name.endswith(".py") or any(p in PKG_SKIP_DIRS or p.endswith(".dist-info") for p in parts):
                continue
            if f.name.startswith("test_") or f.name == "conftest.py" or parts[0] in ("..", "bin"):
                continue
            files.append((f.as_posix(), Path(dist.locate_file(f))))
        files = _stable_sample(sorted(files), max_files_per_dist, key=lambda it: it[0])
        if files:
            out[name.lower()] = Source(name, dist.version, got[0], got[1], sorted(files))
    return [out[k] for k in sorted(out)]


# --------------------------------------------------------------------------------------------------- units
@dataclass(frozen=True)
class Unit:
    source: str
    path: str  # relative to the source root
    text: str  # always ends with "\n"
    kind: str  # function | class | method | block
    lineno: int = 0

    @property
    def file_key(self) -> str:
        return f"{self.source}:{self.path}"


def _node_start(node: ast.stmt) -> int:
    decos = getattr(node, "decorator_list", None) or []
    return min([node.lineno] + [d.lineno for d in decos])


def _leading_comments(lines: list[str], start: int) -> int:
    """Extend a 1-based start line upward over directly preceding full-line comments."""
    while start > 1 and lines[start - 2].lstrip().startswith("#"):
        start -= 1
    return start


def _segment(lines: list[str], a: int, b: int) -> str:
    return "".join(lines[a - 1:b])


def _ok(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


def _n_lines(text: str) -> int:
    return text.count("\n")


def extract_units(source_text: str, source: str = "?", path: str = "?") -> list[Unit]:
    """Cut one module into cell-sized units.  Units always parse on their own."""
    try:
        tree = ast.parse(source_text)
    except (SyntaxError, ValueError):
        return []
    lines = source_text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    units: list[Unit] = []

    def add(a: int, b: int, kind: str, dedent: bool = False) -> None:
        text = _segment(lines, a, b)
        if dedent:
            text = textwrap.dedent(text)
        text = text.strip("\n") + "\n"
        n = _n_lines(text)
        if MIN_LINES <= n <= MAX_LINES and _ok(text):
            units.append(Unit(source, path, text, kind, a))

    group: list[ast.stmt] = []

    def flush() -> None:
        # top-level statement groups, chunked at statement boundaries into <= MAX_LINES
        chunk: list[ast.stmt] = []
        for st in group + [None]:
            if st is not None and chunk and st.end_lineno - _node_start(chunk[0]) + 1 <= MAX_LINES:
                chunk.append(st)
                continue
            if chunk:
                a = _leading_comments(lines, _node_start(chunk[0]))
                add(a, chunk[-1].end_lineno, "block")
            chunk = [st] if st is not None else []
        group.clear()

    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # module docstring: not a cell
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            flush()
            a = _leading_comments(lines, _node_start(node))
            n = node.end_lineno - a + 1
            if n <= MAX_LINES:
                add(a, node.end_lineno, "class" if isinstance(node, ast.ClassDef) else "function")
            elif isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        sa = _leading_comments(lines, _node_start(sub))
                        if sub.end_lineno - sa + 1 <= MAX_LINES:
                            add(sa, sub.end_lineno, "method", dedent=True)
        else:
            group.append(node)
    flush()
    return units


# --------------------------------------------------------------------------------------------------- dedup / split
def normalised(text: str) -> str:
    """Whitespace-insensitive form used by the second dedup hash."""
    return re.sub(r"\s+", " ", text).strip()


def dedup(units: Iterable[Unit]) -> list[Unit]:
    """Keep the first of units that are equal exactly or up to whitespace."""
    seen_exact: set[str] = set()
    seen_norm: set[str] = set()
    out = []
    for u in units:
        he, hn = _h(u.text), _h(normalised(u.text))
        if he in seen_exact or hn in seen_norm:
            continue
        seen_exact.add(he)
        seen_norm.add(hn)
        out.append(u)
    return out


def split_of(file_key: str) -> str:
    """Deterministic 90/5/5 split on a file's (source, path) key."""
    v = int(_h(file_key)[:8], 16) % 1000
    return "train" if v < SPLIT_CUTS[0] else "validation" if v < SPLIT_CUTS[1] else "test"


def approx_tokens(text: str) -> int:
    """Rough BPE-token estimate: identifiers, numbers, punctuation and indentation runs."""
    return len(re.findall(r"\w+|[^\w\s]|\n\s*", text))


# --------------------------------------------------------------------------------------------------- manifest
@dataclass
class ManifestEntry:
    source: str
    version: str
    license: str
    license_field: str
    files: int
    units: int


@dataclass
class Manifest:
    entries: list[ManifestEntry] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "description": "Python source used to train the built-in spark-nb edit model",
            "python": sys.version.split()[0],
            "sources": [asdict(e) for e in self.entries],
            "total_files": sum(e.files for e in self.entries),
            "total_units": sum(e.units for e in self.entries),
        }

    def write(self, path: str | os.PathLike) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def read(cls, path) -> "Manifest":
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls([ManifestEntry(**e) for e in d["sources"]])


# --------------------------------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    train: list[Unit]
    validation: list[Unit]
    test: list[Unit]
    manifest: Manifest
    n_files: int = 0
    n_dropped_dupes: int = 0

    def split(self, name: str) -> list[Unit]:
        return getattr(self, name)

    @property
    def units(self) -> list[Unit]:
        return self.train + self.validation + self.test

    def stats(self) -> dict:
        return {
            "files": self.n_files,
            "units": {s: len(self.split(s)) for s in SPLITS},
            "dropped_duplicates": self.n_dropped_dupes,
            "approx_tokens": {s: sum(approx_tokens(u.text) for u in self.split(s)) for s in SPLITS},
            "chars": sum(len(u.text) for u in self.units),
            "kinds": {k: sum(u.kind == k for u in self.units) for k in ("function", "class", "method", "block")},
        }


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        with open(path, "rb") as f:
            raw = f.read()
        enc, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        return raw.decode(enc).replace("\r\n", "\n")
    except (OSError, SyntaxError, UnicodeDecodeError, LookupError):
        return None


def iter_sources(include_packages: bool = True, max_files_per_dist: int | None = 60) -> Iterator[Source]:
    yield stdlib_source()
    if include_packages:
        yield from package_sources(max_files_per_dist=max_files_per_dist)


def build_corpus(limit_files: int | None = None, include_packages: bool = True,
                 max_files_per_dist: int | None = 60, sources: Iterable[Source] | None = None) -> Corpus:
    """Find, cut, deduplicate and split.  ``limit_files`` caps files per source (stable hash sample)."""
    per_split: dict[str, list[Unit]] = {s: [] for s in SPLITS}
    entries = []
    n_files = 0
    srcs = list(sources) if sources is not None else list(iter_sources(include_packages, max_files_per_dist))
    raw_counts: dict[str, list] = {}
    for src in srcs:
        files = _stable_sample(src.files, limit_files, key=lambda it: it[0])
        used = 0
        for rel, absp in sorted(files):
            text = _read(absp)
            if text is None:
                continue
            us = extract_units(text, src.name, rel)
            if not us:
                continue
            used += 1
            per_split[split_of(f"{src.name}:{rel}")].extend(us)
        n_files += used
        raw_counts[src.name] = [src, used]
    # dedup across everything, train first: a held-out unit never duplicates a training unit
    total_before = sum(len(v) for v in per_split.values())
    kept = dedup(per_split["train"] + per_split["validation"] + per_split["test"])
    out = {s: [] for s in SPLITS}
    for u in kept:
        out[split_of(u.file_key)].append(u)
    units_by_src: dict[str, int] = {}
    for u in kept:
        units_by_src[u.source] = units_by_src.get(u.source, 0) + 1
    for name, (src, used) in raw_counts.items():
        if used:
            entries.append(ManifestEntry(src.name, src.version, src.license, src.license_field, used,
                                         units_by_src.get(name, 0)))
    return Corpus(out["train"], out["validation"], out["test"], Manifest(entries), n_files,
                  total_before - len(kept))
