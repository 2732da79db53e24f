"""spark_nb.edit: one edit of one cell, guarded.

    result = spark_nb.edit("def f(x):\n    return x*2\n", "add a docstring")
    result.ok, result.code, result.error, result.stats

The built-in model is driven token by token through the line-aligned edit format (`EditDecoder`): the model
generates only what changes plus one control token per line, and the driver feeds each input line when the model
asks for it (an `Engine.session()` feeds several tokens, then generation continues). Instruct checkpoints get their
chat template and the code comes from the answer's first fenced block. Either way the guard decides `ok`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import guard, prompt
from .answer_imports import ABOUT_IMPORTS, add_typing_imports, drop_reimports
from .asked import CARRIED_WORDS, asked_change
from .exact import exact_edit
from .recognise import recognise

__all__ = ["edit", "edit_steps", "drain", "EditResult", "BUILTIN", "get_engine", "loaded_engines"]

BUILTIN = Path(__file__).resolve().parent.parent / "models" / "builtin"
HEARTBEAT_S = 0.05  # a remote stream's longest step without a token (notebook/run.py's YIELD_S: Stop lands in time)
_ENGINES: dict[tuple, Any] = {}  # (resolved path, wafer, dtype) -> Engine: loading the same model twice reuses it


WORDS = ("add_docstrings", "add_comments")  # families whose change is words: the guard checks the code around them


@dataclass(frozen=True)
class EditResult:
    code: str  # the edited cell when ok, else the original, untouched
    original: str
    ok: bool
    error: str | None  # why not ok: a parse error with its line, a semantic change, no code in the answer, ...
    stats: Any  # the engine's Stats of the generation (tokens counts generated tokens only)
    text: str  # raw model output: the edit-format tokens as text, or the chat answer
    proposed: str | None = None  # what the model produced before the guard (None when nothing usable came out)
    family_hint: str | None = None  # a guess at the edit family from the instruction's words
    fed_tokens: int = 0  # input-line tokens the driver fed (built-in format), reported apart from generated ones
    style: str = ""  # "edit" (built-in format), "chat", or "exact" (a refactor made by a program: spark_nb.refactors)
    options: dict = field(default_factory=dict)  # speculative, temperature, seed, max_new_tokens as requested
    stopped: bool = False  # `cancel` ended generation before the edit was complete
    settled: str | None = None  # when stopped: the decisions made so far applied, a line being written left out
    checked: bool = False  # the guard compared the meaning (a refactor family), not only the parsing; or exact
    carried: str = ""  # what was taken alone from the model's answer ("type hints"), the rest of it left out (asked.py)
    seconds: float = 0.0  # an exact refactor's time (a model's edit has its Stats)

    @property
    def changed(self) -> bool:
        return self.ok and self.code != self.original

    @property
    def judged(self) -> bool:
        """The guard judged the whole edit: a program made it, or the model's result means what the cell meant and
        its change is not words (a docstring's or a comment's words are the edit itself, and no check reads them)."""
        return self.style == "exact" or (self.checked and self.family_hint not in WORDS)


def get_engine(model=None, wafer="wse3", dtype="int8"):
    """An Engine for `model`: an Engine (returned as is), a model folder or GGUF file, a name `spark-nb models`
    lists, None for the built-in model, or a remote model (`spark_nb.backends`): "openai:MODEL@URL", a name in
    `backends.ENDPOINTS`, or an endpoint dict."""
    from ..backends.remote import is_remote

    if is_remote(model):  # an OpenAI-compatible server: "openai:MODEL@URL", a named endpoint, an endpoint dict
        return _remote_engine(model)
    if model is not None and not isinstance(model, (str, Path)):
        return model
    from ..model.stores import resolve  # the model package loads only when a model does

    path = resolve(model) if model is not None else BUILTIN
    if model is None and not (path / "config.json").exists():
        raise FileNotFoundError(
            f"the built-in model is not installed ({path} is missing). Train and export one with "
            "`python -m spark_nb.train data|fit|export --out spark_nb/models/builtin` (needs the [train] extra), or "
            "pass model=PATH to any model folder (the built-in format or an instruct checkpoint with a chat template)")
    key = (str(path.resolve()), wafer if isinstance(wafer, str) else id(wafer), dtype)
    if key not in _ENGINES:
        from ..engine import Engine

        _ENGINES[key] = Engine.load(path, wafer=wafer, dtype=dtype)
    return _ENGINES[key]


def _remote_engine(spec):
    from ..backends.remote import Endpoint, RemoteEngine

    endpoint = Endpoint.parse(spec)
    key = ("remote", endpoint.base_url, endpoint.model, endpoint.api_key_env, endpoint.api_key_keyring)
    if key not in _ENGINES:
        _ENGINES[key] = RemoteEngine(endpoint)
    return _ENGINES[key]


def loaded_engines() -> list:
    """The engines loaded so far in this process (each model, wafer and dtype once), oldest first."""
    return list(_ENGINES.values())


def edit(code: str, instruction: str, **options) -> EditResult:
    """Edit one cell as instructed and guard the result (options: see `edit_steps`)."""
    return drain(edit_steps(code, instruction, **options))


def drain(steps):
    """Run a generator of steps to its end and return what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def edit_steps(code: str, instruction: str, *, model=None, max_new_tokens: int | None = None,
               temperature: float = 0.0, seed: int | None = None, context=(), speculative: bool = True,
               wafer="wse3", dtype: str = "int8", family: str | None = None, on_token=None, cancel=None,
               exact: bool = True, names: Iterable[str] = ()):
    """`edit`, one forward pass at a time: a generator that yields after every pass and returns the EditResult.
    An async caller awaits between steps, so its event loop keeps running while the model generates (that is how
    %%spark's Stop and Redirect are heard); `edit` just runs the steps.

    model: an Engine, a model folder, or None (the built-in model). max_new_tokens: generated tokens (default:
    enough to rewrite the cell twice over). context: earlier cells, oldest first. speculative: with greedy
    decoding (temperature 0), draft tokens from the cell itself and verify them in one forward: the same output,
    fewer decode steps (Stats.drafted / accepted count them); False decodes token by token. family: the edit
    family, for the guard's semantic check on refactor families and its scope check on fixes (an evaluation knows
    it); None guesses it from the instruction's words (`recognise`: "add a docstring" may then not rename
    anything), "" names no family. names: the names bound in the kernel's namespace (%%spark passes the user
    namespace's): with context and builtins, what the guard lets the result read that the original did not.
    on_token: called after every generated token as on_token(partial_code, tokens_so_far, host_s, wafer_s), for
    live views. cancel: a
    threading.Event (anything with is_set()); once set, generation ends after the current token and the result
    is not ok, its error says "stopped" (set from another thread or between steps: how a Stop button works).
    exact: when the instruction names a refactor a program does exactly (renames, imports, debug prints, comments,
    f-strings, print to logging: `spark_nb.refactors`), that program makes the edit, instantly, and the result's
    style is "exact" (no model, no stats); False sends everything to the model (teaching, evaluation).
    Returns an EditResult; `ok` is False (and `code` the original) when the result does not parse, changes the
    code's meaning under a known refactor family, reads names nothing binds, adds a type hint that is not a type,
    changes lines a fix does not fix (`guard`), or the model gave no usable output.
    """
    from ..engine.sampling import validate

    validate(temperature, 1.0)
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    context = [context] if isinstance(context, str) else list(context)
    names = list(names)  # read twice (the exact side, the guard): an iterator would be spent by the first
    if exact:
        done = exact_edit(code, instruction, context, on_token, names)
        if done is not None:
            return done
    engine = get_engine(model, wafer, dtype)
    kind = "chat" if getattr(engine, "remote", False) else prompt.style(engine.tokenizer)
    drive = _drive_edit if kind == "edit" else _drive_chat
    cancel = cancel or threading.Event()
    proposed, text, stats, fed, error, settled = yield from drive(engine, code, instruction, context,
                                                                  max_new_tokens, temperature, seed, on_token,
                                                                  cancel, speculative)
    hint = recognise(instruction)
    checked, carried = False, ""
    if proposed is not None:
        judged_as = hint if family is None else (family or None)
        answer, proposed = proposed, asked_change(judged_as, code, proposed)  # not the answer's other changes
        carried = CARRIED_WORDS[judged_as] if proposed != answer else ""
        if judged_as and judged_as not in ABOUT_IMPORTS:  # `import numpy as np` above a cell that used np
            proposed = drop_reimports(code, proposed)
        if judged_as == "add_type_hints":  # hints whose typing import was all the answer lacked
            proposed = add_typing_imports(code, proposed, context, names)
        ok, error, checked = guard.judge(code, proposed, judged_as, context=context, names=names)
    else:
        ok = False
    stopped = proposed is None and cancel.is_set()
    options = dict(speculative=speculative, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
    return EditResult(code=proposed if ok else code, original=code, ok=ok, error=error, stats=stats, text=text,
                      proposed=proposed, family_hint=hint, fed_tokens=fed, style=kind,
                      options=options, stopped=stopped, settled=settled if stopped else None, checked=checked,
                      carried=carried)


# -- the built-in format ---------------------------------------------------------------------------------------


def _drive_edit(engine, code, instruction, context, max_new_tokens, temperature, seed, on_token, cancel,
                speculative):
    """Generate under the edit format's constraints; returns (code or None, raw text, Stats, fed tokens, error,
    settled code).

    Speculative (greedy only): after each chosen token the decoder drafts what copying the cell would continue
    with (`EditDecoder.guess_next`: <|line|>, <|keep|>, the replaced line's own tokens), one multi-token forward
    (`Session.verify`) scores the chosen token, its fed line and the whole draft, and the longest prefix of the
    draft that greedy decoding would have chosen itself is accepted; the cache is rewound past the rest. Each
    accepted token is checked against the same masked argmax as plain decoding, so the output is identical."""
    from ..engine.engine import PromptTooLong
    from ..engine.speculation import DraftLength
    from ..train.format import FormatError

    fmt = prompt.edit_format(engine.tokenizer)
    ids = fmt.prompt_ids(instruction, code, context)
    dec = fmt.decoder(code)
    if max_new_tokens is None:
        max_new_tokens = 2 * sum(len(x) for x in dec.line_ids) + 2 * len(dec.lines) + 64
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    session = engine.session()
    speculate = speculative and temperature == 0 and hasattr(session, "verify")
    generated: list[int] = []
    error = None
    first_s = last_s = 0.0
    drafted = accepted = 0
    length = DraftLength()  # the format's own guesses: fixed lengths, so its stats are the same on every machine

    def choose(logits) -> int:  # only what the format allows here: the output is always well formed
        allowed = dec.allowed_ids()
        if temperature == 0 and allowed is not None:  # the argmax of the masked logits, from the few allowed
            return allowed[int(np.argmax(logits[list(allowed)]))]  # ascending: ties go to the lowest id
        logits = np.array(logits, dtype=np.float32)  # a private copy to mask
        logits[dec.banned_ids()] = -np.inf
        return _sample(logits, temperature, rng)

    def commit(token) -> list[int]:
        nonlocal first_s, last_s
        generated.append(token)
        last_s = time.perf_counter() - t0
        first_s = first_s or last_s
        feed = dec.push(token)
        if on_token is not None:  # the partial code costs a string of the whole cell: only for a listener
            on_token(dec.partial(), len(generated), last_s, getattr(session, "wafer_s", 0.0))
        return feed

    wafer_ttft = 0.0
    try:
        logits = session.feed(ids)
        wafer_ttft = getattr(session, "wafer_s", 0.0)  # the prompt's charge (less when the cache held part of it)
        yield
        while not dec.done:
            if len(generated) >= max_new_tokens:
                error = f"the edit was not finished within max_new_tokens={max_new_tokens}"
                break
            token = choose(logits)
            feed = commit(token)
            if dec.done:
                break
            if cancel.is_set():
                error = f"stopped after {_tokens(len(generated))}"
                break
            run = [token] + feed
            draft = _draft(dec, min(length.k, max_new_tokens - len(generated))) if speculate else []
            ends = [len(run) - 1]  # where the logits that judge each draft token come out
            for d, d_feed in draft:
                run += [d] + d_feed
                ends.append(len(run) - 1)
            start = session.pos if draft else 0
            while draft and start + ends[-1] >= engine.context:  # a draft never runs past the context
                draft.pop()
                ends.pop()
            if not draft:
                logits = session.feed(run[: ends[0] + 1])
                yield
                continue
            judged = session.verify(run[: ends[-1] + 1], at=ends)  # the logits that judge each draft token
            yield
            n = 0
            while n < len(draft) and not dec.done and not cancel.is_set() and choose(judged[n]) == draft[n][0]:
                commit(draft[n][0])
                n += 1
            drafted, accepted = drafted + len(draft), accepted + n
            session.rewind(start + ends[n] + 1)
            logits = judged[n]
            length.judge(len(draft), n)
    except PromptTooLong as err:
        error = f"the cell and its edit do not fit the model's context: {err}"
    except FormatError as err:  # only a model outside the constraints (a fake one) gets here
        error = f"the model broke the edit format: {err}"
    text = fmt.decode_text(generated)
    stats = _stats(engine, len(ids), len(generated), first_s, last_s, time.perf_counter() - t0,
                   getattr(session, "wafer_s", 0.0), wafer_ttft, drafted, accepted, getattr(session, "reused", 0))
    return (dec.result() if dec.done and error is None else None), text, stats, dec.n_fed, error, dec.settled()


def _draft(dec, k: int) -> list[tuple[int, list[int]]]:
    """Up to k tokens, each with the ids it makes the driver feed, that copying the cell would continue with."""
    sim, out = dec.fork(), []
    while len(out) < k:
        guess = sim.guess_next()
        if guess is None:
            break
        out.append((guess, sim.push(guess)))
        if sim.done:
            break
    return out


def _tokens(n: int) -> str:
    return f"{n} token" + ("" if n == 1 else "s")


def _sample(logits, temperature, rng) -> int:
    from ..engine.sampling import sample

    return sample(logits, temperature, 1.0, rng)


def _stats(engine, prompt_tokens, n, first_s, last_s, total_s, wafer_s, wafer_ttft_s, drafted=0, accepted=0,
           reused=0):
    from ..engine.engine import _rate
    from ..engine.events import Stats

    spec = getattr(engine, "spec", None)
    return Stats(prompt_tokens=prompt_tokens, tokens=n, ttft_s=first_s, tok_per_s=_rate(n - 1, last_s - first_s),
                 total_s=total_s, wafer_ttft_s=wafer_ttft_s, wafer_tok_per_s=_rate(n - 1, wafer_s - wafer_ttft_s),
                 wafer_total_s=wafer_s, wafer=getattr(spec, "name", ""), dtype=getattr(engine, "dtype", ""),
                 drafted=drafted, accepted=accepted, reused=reused)


# -- instruct checkpoints ----------------------------------------------------------------------------------------


def _drive_chat(engine, code, instruction, context, max_new_tokens, temperature, seed, on_token, cancel,
                speculative):
    remote = getattr(engine, "remote", False)  # a server (spark_nb.backends) takes the messages, not a prompt
    text_prompt = (prompt.chat_messages(code, instruction, context) if remote
                   else prompt.chat_prompt(engine.tokenizer, code, instruction, context))
    if max_new_tokens is None:
        max_new_tokens = 2 * (engine.count_tokens(code) if remote else len(engine.tokenizer.encode(code))) + 128
    # A server may take seconds to its first chunk (a queue, a long prefill) or stall midway: meanwhile a remote
    # stream yields empty heartbeats, so the caller's event loop runs and Stop reaches it.
    waiting = dict(heartbeat=HEARTBEAT_S) if remote else {}
    stream = engine.stream(text_prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                           speculative=speculative, **waiting)  # the answer copies the cell: prompt lookup drafts it
    start = "" if remote else prompt.answer_start(code)  # the prompt's own start of the answer, if any
    text, done, n, stopped = start, None, 0, False
    try:
        for event in stream:
            if hasattr(event, "stats"):
                done = event
                break
            if event.text or event.token_ids:  # else a heartbeat: nothing from the server yet
                text += event.text
                n += 1
                if on_token is not None:
                    on_token(prompt.open_block(text, code), n, event.host_s, event.wafer_s)
            yield
            if prompt.block_closed(text):
                stream.cancel()  # the cell is complete: the rest of the answer is prose
            elif cancel.is_set():
                stream.cancel()
                stopped = True
    finally:
        stream.cancel()  # steps dropped midway (an interrupted cell) end the request too, a server's at once
    text = start + done.text if done is not None else text
    proposed = None if stopped else prompt.extract_code(text, ended=done is not None and done.reason == "eos")
    error = None
    if stopped:
        error = f"stopped after {_tokens(n)}"
    elif getattr(stream, "error", None):  # a remote request failed (spark_nb.backends): its one-line reason
        proposed, error = None, stream.error
    elif proposed is None:
        error = ("the answer has no complete fenced code block" + (" (it was cut off at max_new_tokens="
                 f"{max_new_tokens})" if done is not None and done.reason == "length" else ""))
    elif not code.endswith("\n") and proposed.endswith("\n"):
        proposed = proposed[:-1]
    return proposed, text, done.stats if done is not None else None, 0, error, None
