"""The object the magics drive: settings as `config=True` traitlets, the loaded engine, history.

    spark = Spark(parent=shell)             # c.Spark.model = "path/to/model" in ipython_config.py also works
    result = spark.edit(code, "add docstrings", on_token=view.update)   # an EditResult, recorded in history

Edits go through `spark_nb.edit`, whose `on_token(partial_code, tokens, host_s, wafer_s)` runs after every
generated token, so a view can show the edit while it is being made.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from traitlets import Dict, Float, Int, Unicode, validate
from traitlets.config import Configurable

from ..edits import EditResult, drain, edit_steps, get_engine
from ..edits.exact import exact_edit

__all__ = ["Spark", "Request"]


@dataclass(frozen=True)
class Request:
    """One %%spark request as history keeps it."""

    instruction: str
    original: str
    result: EditResult | None  # None when the request failed before generating (its error says why)
    applied: str  # "replaced the cell", "inserted below", "preview", "not applied", "stopped", "cancelled", "error"
    error: str | None = None
    when: float = 0.0

    @property
    def stats(self):
        return self.result.stats if self.result is not None else None


class Spark(Configurable):
    """Settings and state of the notebook extension (one per shell)."""

    model = Unicode("builtin", help="Model folder, or 'builtin' for the built-in model.").tag(config=True)
    wafer = Unicode("wse3", help="Wafer preset the engine emulates: wse3, wse2, mini.").tag(config=True)
    dtype = Unicode("int8", help="Weight dtype on the wafer: int8 or fp32.").tag(config=True)
    max_tokens = Int(0, help="Generated tokens per edit; 0: enough to rewrite the cell twice.").tag(config=True)
    temperature = Float(0.0, help="Sampling temperature; 0 is greedy.").tag(config=True)
    seed = Int(-1, help="Sampling seed; -1 for none.").tag(config=True)
    context_tokens = Int(512, help="Token budget for earlier cells and names sent with the cell.").tag(config=True)
    endpoints = Dict(help="Named remote models: {name: {'base_url': ..., 'model': ..., 'api_key_env': ..., "
                     "'api_key_keyring': ...}}, usable as --model name (spark_nb.backends); the key is read from that "
                     "environment variable, else from that keyring entry (`keyring set spark-nb NAME`), never "
                     "stored.").tag(config=True)
    throttle_s = Float(0.03, help="Seconds between widget updates while streaming (at most ~33 per second, so a cell "
                       "streaming an edit updates at least 20 times a second).").tag(config=True)

    @validate("dtype")
    def _check_dtype(self, proposal):
        if proposal["value"] not in ("int8", "fp32"):
            raise ValueError(f"dtype must be int8 or fp32, got {proposal['value']!r}")
        return proposal["value"]

    @validate("temperature")
    def _check_temperature(self, proposal):
        from ..engine.sampling import validate as validate_sampling

        validate_sampling(proposal["value"], 1.0)  # the engine's own rule, so %config refuses what it would
        return proposal["value"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.history: list[Request] = []
        self.accepted: str | None = None  # the code a panel last accepted (`%spark apply` inserts it)
        # whether a view has ever said if the live-cell extension is there (None: not asked yet; False: a request
        # waited in vain, so later ones do not wait), and whether the fallback to set_next_input was said
        self.frontend_answers: bool | None = None
        self.said_no_live_cells = False
        self._exact: tuple | None = None  # ((code, instruction, context), its exact result or None): the last asked

    # -- the engine ----------------------------------------------------------------------------------------------

    def engine_for(self, model: str | None = None, wafer: str | None = None):
        """The Engine for `model` ('builtin', a folder, a .gguf file or a name `%spark models` lists; default: the
        `model` setting), cached across requests. A model that cannot be loaded raises the loader's own error,
        which says what is wrong and what to do."""
        model = model or self.model
        model = self.endpoints.get(model, model)  # a named endpoint: its dict (spark_nb.backends)
        return get_engine(None if model == "builtin" else model, wafer or self.wafer, self.dtype)

    def load(self, model: str, wafer: str | None = None):
        """Load `model` and make it the default."""
        engine = self.engine_for(model, wafer)
        self.model = model
        if wafer:
            self.wafer = wafer
        return engine

    # -- one request ---------------------------------------------------------------------------------------------

    def edit_steps(self, code: str, instruction: str, *, model=None, wafer=None, max_tokens=None,
                   temperature=None, seed=None, context=(), on_token=None, cancel=None, exact=True, names=()):
        """`spark_nb.edit_steps` with these settings: yields between forward passes, returns the EditResult.
        An exact refactor is made before any model is loaded (a missing or broken model does not stop it); the
        engine is loaded only for a request the model makes. names: what the kernel's namespace binds (the guard
        refuses a model's edit that reads a name nothing binds)."""
        if exact:
            done = self.exact(code, instruction, context, on_token, names)
            if done is not None:
                return done
        engine = self.engine_for(model, wafer)
        max_tokens = max_tokens if max_tokens is not None else (self.max_tokens or None)
        temperature = self.temperature if temperature is None else temperature
        seed = seed if seed is not None else (None if self.seed < 0 else self.seed)
        return (yield from edit_steps(code, instruction, model=engine, max_new_tokens=max_tokens,
                                      temperature=temperature, seed=seed, context=context, on_token=on_token,
                                      cancel=cancel, exact=False, names=names))

    def exact(self, code: str, instruction: str, context=(), on_token=None, names=()) -> EditResult | None:
        """The edit a program makes exactly (`spark_nb.edits.exact`), or None: the model's job. The last answer is
        kept, so %%spark can ask before it decides whether to load a model and the request then reuses it: routing
        and applying a refactor parse the cell (seconds for one of 50,000 lines). names: the kernel's, which decide
        what is a typo."""
        key = (code, instruction, tuple(context), frozenset(names))
        if self._exact is None or self._exact[0] != key:
            self._exact = (key, exact_edit(code, instruction, context, names=names))
        done = self._exact[1]
        if done is not None and done.ok and on_token is not None:  # all at once: a view shows it like a stream
            on_token(done.proposed, 0, done.seconds, 0.0)
        return done

    def edit(self, code: str, instruction: str, **options) -> EditResult:
        return drain(self.edit_steps(code, instruction, **options))

    def finished(self) -> list[EditResult]:
        """The results of the requests that generated (history minus those that failed before a token)."""
        return [r.result for r in self.history if r.stats is not None]

    def record(self, instruction, original, result, applied, error=None) -> Request:
        req = Request(instruction, original, result, applied, error, time.time())
        self.history.append(req)
        return req
