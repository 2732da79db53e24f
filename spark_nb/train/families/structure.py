"""Structural refactors: extract a magic number into a named constant; wrap top-level code in ``main()``."""
from __future__ import annotations

import ast
import re

from ...refactors.wrap_main import is_main_guard
from .base import Family, Text, all_identifiers, apply_edits, multiline_string_lines, reindent

_BORING = {0, 1, 2, -1, 0.0, 1.0, 0.5, 2.0}
_KNOWN = {60: "SECONDS_PER_MINUTE", 3600: "SECONDS_PER_HOUR", 86400: "SECONDS_PER_DAY", 1024: "KIB",
          1000: "MILLIS_PER_SECOND", 255: "MAX_BYTE", 65535: "MAX_PORT", 80: "DEFAULT_WIDTH", 8080: "DEFAULT_PORT",
          3.14159: "PI"}


def _upper(s: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s.strip("_"))
    return re.sub(r"\W+", "_", s).upper()


def _parents(tree):
    par = {}
    for n in ast.walk(tree):
        for c in ast.iter_child_nodes(n):
            par[c] = n
    return par


def const_name(node, par, rng) -> str:
    p = par.get(node)
    if isinstance(p, ast.UnaryOp):
        node, p = p, par.get(p)
    if isinstance(p, ast.keyword) and p.arg:
        return rng.choice([_upper(p.arg), "DEFAULT_" + _upper(p.arg)])
    if isinstance(p, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        tg = p.targets[0] if isinstance(p, ast.Assign) else p.target
        if isinstance(tg, ast.Name):
            return rng.choice([_upper(tg.id), "DEFAULT_" + _upper(tg.id)]) if not tg.id.isupper() else "DEFAULT_" + tg.id
        if isinstance(tg, ast.Attribute):
            return rng.choice([_upper(tg.attr), "DEFAULT_" + _upper(tg.attr)])
    if isinstance(p, ast.Compare):
        other = p.left if p.left is not node else (p.comparators[0] if p.comparators else None)
        if isinstance(other, ast.Name):
            return "MAX_" + _upper(other.id)
        if isinstance(other, ast.Call) and isinstance(other.func, ast.Name) and other.func.id == "len" and \
                other.args and isinstance(other.args[0], ast.Name):
            return "MAX_" + _upper(other.args[0].id) + "_LENGTH"
    if isinstance(p, ast.BinOp):
        other = p.left if p.right is node else p.right
        if isinstance(other, (ast.Name, ast.Attribute)):
            base = _upper(other.id if isinstance(other, ast.Name) else other.attr)
            suffix = {ast.Mult: "SCALE", ast.Div: "DIVISOR", ast.FloorDiv: "DIVISOR", ast.Add: "OFFSET",
                      ast.Sub: "OFFSET", ast.Mod: "MODULUS", ast.Pow: "EXPONENT"}.get(type(p.op), "FACTOR")
            return f"{base}_{suffix}"
    if isinstance(p, ast.Call):
        f = p.func
        fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if fname in ("read", "recv", "readline", "read1"):
            return rng.choice(["CHUNK_SIZE", "BUFFER_SIZE", "READ_SIZE"])
        if fname == "sleep":
            return rng.choice(["POLL_INTERVAL", "DELAY_SECONDS"])
        if fname:
            return _upper(fname) + "_ARG"
    v = getattr(node, "value", None)
    if v in _KNOWN:
        return _KNOWN[v]
    if isinstance(v, int) and v >= 64 and v & (v - 1) == 0:
        return rng.choice(["BUFFER_SIZE", "BLOCK_SIZE"])
    if isinstance(v, float) and 0 < v < 1:
        return rng.choice(["THRESHOLD", "TOLERANCE"])
    return rng.choice(["LIMIT", "MAX_ITEMS", "MAGIC_VALUE"])


class _Inline(ast.NodeTransformer):
    def __init__(self, consts):
        self.consts = consts

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.consts:
            return ast.copy_location(ast.Constant(value=self.consts[node.id]), node)
        return node


class ExtractConstant(Family):
    name = "extract_constant"
    refactor = True
    paraphrases = (
        "Extract the magic number {value} into a named constant `{const}`.",
        "Please replace the literal {value} with a module-level constant called `{const}`.",
        "Introduce a named constant `{const}` for {value}.",
        "Pull {value} out into a constant named {const}.",
        "No magic numbers: name {value} `{const}`.",
        "extract constant {const} = {value}",
        "{value} -> {const}",
        "magic number {value} → {const}",
        "make {value} a constant ({const})",
        "const {const} for {value}",
        "name the {value}: {const}",
    )

    def normalize(self, tree):
        """Module-level constants the code reads, inlined: an extracted constant is its value. One the code never
        reads is no extraction and stays as written (changing or dropping it is not this family's to do)."""
        consts, body = {}, []
        stores, reads = {}, set()
        for n in ast.walk(tree):
            if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
                stores[n.id] = stores.get(n.id, 0) + 1
            elif isinstance(n, ast.Name):
                reads.add(n.id)
        for s in tree.body:
            if (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
                    and s.targets[0].id.isupper() and stores.get(s.targets[0].id) == 1 and s.targets[0].id in reads
                    and isinstance(s.value, ast.Constant) and isinstance(s.value.value, (int, float))):
                consts[s.targets[0].id] = s.value.value
                continue
            body.append(s)
        tree.body = body
        return _Inline(consts).visit(tree)

    def make(self, text, rng):
        tree = ast.parse(text)
        if not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return None
        t = Text(text)
        par = _parents(tree)
        in_fstr = {id(x) for j in ast.walk(tree) if isinstance(j, ast.JoinedStr) for x in ast.walk(j)}
        groups: dict[tuple, list] = {}
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and type(n.value) in (int, float) and n.value not in _BORING \
                    and id(n) not in in_fstr and not isinstance(par.get(n), (ast.Subscript, ast.Slice)):
                seg = t.segment(n)
                groups.setdefault((type(n.value).__name__, n.value, seg), []).append(n)
        if not groups:
            return None
        key = rng.choice(sorted(groups, key=str))
        nodes = groups[key]
        name = const_name(nodes[0], par, rng)
        taken = all_identifiers(text)
        if name in taken or len(name) < 3 or not re.match(r"^[A-Z][A-Z0-9_]*$", name):
            name = "MAGIC_" + re.sub(r"\W", "_", key[2]).upper()
            if name in taken or not name.isidentifier():
                return None
        edits = [(*t.node_span(n), name) for n in nodes]
        edits.append((0, 0, f"{name} = {key[2]}\n\n\n"))
        return self.task(rng, text, apply_edits(text, edits), value=key[2], const=name)


# ------------------------------------------------------------------------------------------------ main()
class WrapMain(Family):
    name = "wrap_main"
    refactor = True
    paraphrases = (
        "Wrap the top-level code in a main() function.",
        "Please move this script code into a `main` function with an `if __name__ == \"__main__\"` guard.",
        "Put the module-level statements inside def main().",
        "Refactor the script body into a main function.",
        "Make this importable: wrap it in main().",
        "wrap in main",
        "main() pls",
        "put it in a main function",
        "add a main function",
        "def main + __main__ guard",
        "script -> main()",
    )

    def normalize(self, tree):
        mains = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "main"
                 and not s.args.args and not s.decorator_list]
        guard = [s for s in tree.body if is_main_guard(s) and len(s.body) == 1 and "main" in ast.dump(s.body[0])]
        if len(mains) == 1 and guard:
            body = []
            for s in tree.body:
                if s is mains[0]:
                    body.extend(s.body)
                elif s is not guard[0]:
                    body.append(s)
            tree.body = body
        return tree

    def make(self, text, rng):
        tree = ast.parse(text)
        body = tree.body
        if any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or is_main_guard(s)
               for s in body):
            return None
        if any(isinstance(n, (ast.Global, ast.Nonlocal, ast.Return, ast.Yield, ast.YieldFrom, ast.Await))
               for n in ast.walk(tree)):
            return None
        if "main" in all_identifiers(text) or "__all__" in text:
            return None
        t = Text(text)
        i = 0  # imports, optional-import try blocks and CONSTANTS stay at module level
        while i < len(body) and (isinstance(body[i], (ast.Import, ast.ImportFrom))
                                 or isinstance(body[i], ast.Try) and "Import" in ast.dump(body[i])
                                 or isinstance(body[i], ast.Assign) and all(isinstance(x, ast.Name) and x.id.isupper()
                                                                           for x in body[i].targets)):
            i += 1
        rest = body[i:]
        if not rest or not any(isinstance(s, (ast.Expr, ast.For, ast.While, ast.If, ast.With, ast.Try)) for s in rest):
            return None
        if sum(s.end_lineno - s.lineno + 1 for s in rest) < 2:
            return None
        start = rest[0].lineno
        # keep comment lines directly above the first statement with it
        while start > (body[i - 1].end_lineno + 1 if i else 1) and t.line(start - 1).lstrip().startswith("#"):
            start -= 1
        a, _ = t.line_span(start, start)
        head, code = text[:a], text[a:]
        inner = reindent(code, "", "    ", multiline_string_lines(text), start)
        if inner is None:
            return None
        inner = inner.rstrip("\n") + "\n"
        keep = multiline_string_lines(inner)
        lines, out = inner.splitlines(keepends=True), []
        for k, ln in enumerate(lines, 1):  # one blank line at most inside the function
            if not ln.strip() and k not in keep and out and not out[-1].strip():
                continue
            out.append(ln)
        inner = "".join(out)
        if head.strip():
            head = head.rstrip("\n") + "\n\n\n"
        after = f'{head}def main():\n{inner}\n\nif __name__ == "__main__":\n    main()\n'
        return self.task(rng, text, after)
