"""What a cell's edit request carries besides the cell: earlier cells, the names it uses, `{name}` interpolation.

    cells = earlier_cells(shell.user_ns["In"][:-1])          # oldest first, magics stripped
    names = names_used(code, shell.user_ns)                  # {"df": "DataFrame", "scale": "function(values, k)"}
    parts = collect(code, In, user_ns, budget=512, count=len) # context strings for spark_nb.edit, within budget
    cells = recent_cells(In[:-1], budget=512)                 # the newest earlier cells that fit, oldest first
    interpolate("rename {old} to {new}", user_ns)            # unknown names and other braces stay as written
"""
from __future__ import annotations

import ast
import builtins
import inspect
import re
import types
from collections.abc import Callable, Mapping, Sequence

__all__ = ["earlier_cells", "names_used", "describe", "collect", "interpolate", "strip_magics"]

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # only a bare identifier: `{'a': 1}` or `{x + 1}` never match
_BUILTINS = frozenset(dir(builtins))


def strip_magics(cell: str) -> str:
    """The cell without IPython-only lines: a `%%cell magic` makes the whole cell not Python; `%line` and `!shell`
    lines are dropped."""
    if cell.lstrip().startswith("%%"):
        return ""
    lines = [ln for ln in cell.splitlines(keepends=True) if not ln.lstrip().startswith(("%", "!"))]
    return "".join(lines).strip("\n")


def earlier_cells(history: Sequence[str]) -> list[str]:
    """Non-empty Python cells of `history` (IPython's `In`, the current cell excluded), oldest first."""
    out = []
    for cell in history:
        text = strip_magics(cell or "")
        if text.strip():
            out.append(text + "\n")
    return out


def _loaded(code: str) -> list[str]:
    """Names the code reads (first use order): Name loads and the base of attribute chains, via ast."""
    try:
        tree = ast.parse(code)
    # a cell that needs fixing still names things: fall back to identifiers. So does one nested too deep for the
    # parser (100,000 unary minuses: MemoryError; a 100,000-term sum: RecursionError) or with NUL bytes.
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return list(dict.fromkeys(re.findall(r"(?<![\w.])([A-Za-z_]\w*)", code)))
    seen = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Load, ast.Del)):
            seen.append((node.lineno, node.col_offset, node.id))
    return list(dict.fromkeys(name for *_, name in sorted(seen)))


def describe(value) -> str:
    """A short type description: `int`, `DataFrame (3 x 2)`, `list (len 4)`, `function(a, b=2)`, `module`."""
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    if inspect.isclass(value):
        return f"class {value.__module__}.{value.__qualname__}" if value.__module__ != "builtins" else "class"
    if callable(value) and isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        try:
            return f"function{inspect.signature(value)}"
        except (TypeError, ValueError):
            return "function"
    kind = type(value).__name__
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(s, int) for s in shape):
        return f"{kind} {' x '.join(map(str, shape))}" + (f" {value.dtype}" if hasattr(value, "dtype") else "")
    if isinstance(value, (list, tuple, dict, set, str, bytes)):
        return f"{kind} (len {len(value)})"
    return kind


def names_used(code: str, namespace: Mapping) -> dict[str, str]:
    """{name: description} for the names the code reads that the namespace defines (builtins and `_`-names
    skipped), in order of first use."""
    out = {}
    for name in _loaded(code):
        if name.startswith("_") or name not in namespace:
            continue
        if name in _BUILTINS and namespace[name] is getattr(builtins, name, None):
            continue
        out[name] = describe(namespace[name])
    return out


def collect(code: str, history: Sequence[str], namespace: Mapping, budget: int = 512,
            count: Callable[[str], int] | None = None) -> list[str]:
    """Context strings for spark_nb.edit, oldest first, at most `budget` tokens as `count` measures them (default
    about 4 characters a token): the names block first (it is about this cell), then earlier cells newest first
    while they fit."""
    count = count or _approx_tokens
    parts, used = [], 0
    names = names_used(code, namespace)
    if names:
        block = "# names in the notebook\n" + "".join(f"# {k}: {v}\n" for k, v in names.items())
        while names and count(block) > budget:  # keep what fits, first-used first
            names.popitem()
            block = "# names in the notebook\n" + "".join(f"# {k}: {v}\n" for k, v in names.items())
        if names:
            parts.append(block)
            used = count(block)
    return recent_cells(history, budget - used, count) + parts


def recent_cells(history: Sequence[str], budget: int = 512, count: Callable[[str], int] | None = None) -> list[str]:
    """The newest earlier cells that fit `budget` tokens together, oldest first (an exact refactor's context: the
    names they read and bind, no names block)."""
    count = count or _approx_tokens
    cells, used = [], 0
    for cell in reversed(earlier_cells(history)):
        n = count(cell)
        if used + n > budget:
            break
        cells.append(cell)
        used += n
    return cells[::-1]


def _approx_tokens(text: str) -> int:
    return (len(text) + 3) // 4  # about 4 characters a token


def interpolate(instruction: str, namespace: Mapping) -> str:
    """Replace `{name}` by str(namespace[name]) for names the namespace holds; anything else stays as written.
    A value's lone surrogates (a file name read with surrogateescape, say) are written as escapes: the instruction
    goes to the frontend, and Jupyter's messages are UTF-8, which has no lone surrogates."""
    def sub(m):
        name = m.group(1)
        if name not in namespace:
            return m.group(0)
        return str(namespace[name]).encode("utf-8", "backslashreplace").decode("utf-8")

    return _FIELD.sub(sub, instruction)
