"""Compiling the decode step in a second process while this one compiles the forward.

With an empty numba cache a new engine has two large functions to compile before it streams: `forward.forward`
(prefill and verification, the first token) and `forward.decode` (every later token, one parallel region), ~10 s
each on one core. Numba compiles one function at a time in a process (a global lock), but its on-disk cache is
shared between processes. So when the cache lacks `decode` for an engine's argument types, the engine starts

    python -m spark_nb.wafer.ahead int8        # or fp32

which compiles `decode` on a tiny random model of the same dtypes (the types of the arguments select the machine
code, not their sizes) into the cache, on the other core, while the engine compiles `forward` for its first token.
The first decode step waits for the helper and loads what it wrote. With a warm cache nothing starts.
SPARK_NB_COMPILE_AHEAD=0 turns the helper off (everything then compiles in this process, one after the other).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from numba import config
from numba.core.compiler_lock import global_compiler_lock

SWITCH = "SPARK_NB_COMPILE_AHEAD"
TINY = dict(family="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=300, max_position_embeddings=64)


def loaded(dispatcher, args) -> bool:
    """True once `dispatcher` holds machine code for `args`: compiled in this process already, or loaded now from
    numba's on-disk cache. Never compiles (Dispatcher.compile's cache lookup, without its compile on a miss)."""
    if config.DISABLE_JIT:
        return True
    signature = tuple(dispatcher.typeof_pyval(a) for a in args)
    with global_compiler_lock:
        if signature in dispatcher.overloads:
            return True
        compiled = dispatcher._cache.load_overload(signature, dispatcher.targetctx)
        if compiled is None:
            return False
        dispatcher.targetctx.insert_user_function(compiled.entry_point, compiled.fndesc, [compiled.library])
        dispatcher.add_overload(compiled)
        return True


def start(dtype: str) -> subprocess.Popen | None:
    """A helper process compiling `decode` for engines of this dtype into the cache; None where it is turned off."""
    if os.environ.get(SWITCH) == "0" or config.DISABLE_JIT:
        return None
    return subprocess.Popen([sys.executable, "-m", __name__, dtype], env={**os.environ, SWITCH: "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(dtype: str) -> None:
    from ..engine import Engine
    from ..model.synthetic import write_random_model

    os.nice(10)  # on a single core, the engine's own first token goes first
    with tempfile.TemporaryDirectory() as folder:
        Engine.load(write_random_model(folder, TINY), dtype=dtype, context=32)._decode_step(1, 0)


if __name__ == "__main__":
    main(sys.argv[1])
