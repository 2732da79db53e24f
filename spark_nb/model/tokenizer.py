"""Tokenizer: a model folder's tokenizer.json, its special tokens and chat template, and streaming decode.

The tokenization itself is the `tokenizers` library's (the same Rust code transformers uses). What this file adds
is what transformers would otherwise supply: special tokens from tokenizer_config.json, the chat template
rendered the way transformers renders it, and a detokenizer that streams text one token at a time.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
import tokenizers
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .config import ModelConfig
from .errors import ModelLoadError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # where transformers >= 4.43 saves the template
# The named special tokens transformers passes to chat templates as strings
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
REPLACEMENT_CHAR = "\ufffd"  # what decoding yields for an incomplete UTF-8 sequence


class Tokenizer:
    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        special_tokens: dict[str, str] | None = None,
        chat_template: str | None = None,
        config: ModelConfig | None = None,
        fim_order: str = "psm",
    ):
        self.backend = backend
        # the order of the fill-in-the-middle prompt the model was trained on (spark_nb.server.complete.FIM_ORDERS):
        # tokenizer_config.json's "fim_order", PSM (Qwen's, StarCoder's) where it says nothing
        self.fim_order = fim_order
        self.special_tokens = dict(special_tokens or {})  # e.g. {"eos_token": "<|im_end|>"}
        self.chat_template = chat_template
        # Compiled now so that a broken template is a load error, not a surprise at the first prompt
        self._compiled_template = _compile_chat_template(chat_template) if chat_template else None
        self.eos_token_ids = self._eos_ids(config)
        self.bos_token_id = self._bos_id(config)

    @classmethod
    def from_folder(cls, folder: str | Path, config: ModelConfig | None = None) -> "Tokenizer":
        """tokenizer.json, plus tokenizer_config.json and chat_template.jinja when present."""
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        if not path.exists():
            raise ModelLoadError(
                f"missing {path}: spark-nb needs the fast-tokenizer file; create it with "
                "AutoTokenizer.from_pretrained(...).save_pretrained(folder)"
            )
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises a bare Exception for malformed files
            raise ModelLoadError(f"{path} cannot be read by the tokenizers library ({err}); re-export it") from None
        settings_path = folder / TOKENIZER_CONFIG_FILE
        settings = _read_json(settings_path)
        special = {name: _token_text(settings[name], name, settings_path)
                   for name in SPECIAL_TOKEN_NAMES if settings.get(name)}
        # bos and eos are the special tokens spark-nb uses by id (the prompt's start, where generation stops): one
        # the vocabulary lacks would silently become "no eos", and generation would run to the token limit.
        for name in ("bos_token", "eos_token"):
            if name in special and backend.token_to_id(special[name]) is None:
                raise ModelLoadError(
                    f"{settings_path} names {special[name]!r} as its {name}, but {path} has no such token; "
                    "the two files come from different tokenizers, re-export them together"
                )
        _check_edit_format(backend, path)
        fim_order = settings.get("fim_order", "psm")
        if fim_order not in ("psm", "spm"):
            raise ModelLoadError(f"{settings_path}: fim_order is {fim_order!r}; it must be \"psm\" or \"spm\", the "
                                 "order of the fill-in-the-middle prompts the model was trained on")
        template, template_file = _find_chat_template(folder, settings)
        try:
            return cls(backend, special, template, config, fim_order)
        except ModelLoadError as err:  # the template does not compile: say which file holds it
            raise ModelLoadError(f"{template_file}: {err}") from None

    # --- vocabulary ------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def _eos_ids(self, config: ModelConfig | None) -> tuple[int, ...]:
        # config.json may list several (Llama 3 instruct ends turns with <|eot_id|>); the tokenizer's eos may differ.
        ids = list(config.eos_token_ids) if config else []
        eos = self.special_tokens.get("eos_token")
        eos_id = self.token_to_id(eos) if eos else None
        return tuple(dict.fromkeys(ids + ([eos_id] if eos_id is not None else [])))

    def _bos_id(self, config: ModelConfig | None) -> int | None:
        # The tokenizer's own bos is what the chat template writes, so it wins over config.json's.
        bos = self.special_tokens.get("bos_token")
        bos_id = self.token_to_id(bos) if bos else None
        return bos_id if bos_id is not None else (config.bos_token_id if config else None)

    # --- text <-> ids ----------------------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; a chat template already writes bos and friends, so none are added by default."""
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def stream_decoder(self, skip_special_tokens: bool = True) -> "StreamDecoder":
        """A detokenizer fed one token at a time; see `StreamDecoder`."""
        return StreamDecoder(self, skip_special_tokens)

    # --- chat template ---------------------------------------------------------------------------------------

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **extra) -> str:
        """The prompt text for `messages` ([{"role": ..., "content": ...}]), as transformers would render it."""
        if self._compiled_template is None:
            raise ModelLoadError(
                "this tokenizer has no chat_template (neither in tokenizer_config.json nor chat_template.jinja); "
                "use a model folder with one, or build the prompt with encode()"
            )
        return self._compiled_template.render(
            messages=messages,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **{**self.special_tokens, **extra},
        )


# ---------------------------------------------------------------------------------------------------------------
# Streaming detokenization
# ---------------------------------------------------------------------------------------------------------------


class StreamDecoder:
    """Turns a stream of token ids into text deltas whose concatenation is `decode(all ids)`.

    A byte-level token can end in the middle of a UTF-8 character (an emoji spans up to four tokens), and some
    decoders change a token's text depending on what precedes it (a leading-space marker is dropped at the start).
    So each push decodes a short window: the tokens since the last emitted text (`read`) together with a few
    already emitted ones before them (`prefix`) as context, and emits the part beyond the already emitted window
    text. Text that ends in an incomplete character is held back until the next token completes it.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0  # start of the context window
        self.read = 0  # ids before this are emitted

    def _decode(self, start: int, stop: int) -> str:
        return self.tokenizer.decode(self.ids[start:stop], skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text ('' while a character is still incomplete)."""
        self.ids.append(int(token_id))
        emitted = self._decode(self.prefix, self.read)
        window = self._decode(self.prefix, len(self.ids))
        if len(window) <= len(emitted) or window.endswith(REPLACEMENT_CHAR):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return window[len(emitted) :]

    def flush(self) -> str:
        """At the end of the stream: whatever is held back (an incomplete character decodes as U+FFFD)."""
        emitted = self._decode(self.prefix, self.read)
        window = self._decode(self.prefix, len(self.ids))
        self.prefix = self.read = len(self.ids)
        return window[len(emitted) :]


# ---------------------------------------------------------------------------------------------------------------
# tokenizer_config.json and the chat template
# ---------------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path} is not valid JSON ({err}); re-export the tokenizer") from None
    if not isinstance(settings, dict):
        raise ModelLoadError(f"{path} holds a JSON {type(settings).__name__}, not an object of settings; "
                             "re-export the tokenizer")
    return settings


def _token_text(token, name: str, path: Path) -> str:
    # tokenizer_config.json writes a special token either as text or as a serialized AddedToken {"content": ...}
    text = token.get("content") if isinstance(token, dict) else token
    if not isinstance(text, str):
        raise ModelLoadError(f"{path}'s {name} is {token!r}, not a token's text (or {{\"content\": text}}); "
                             "re-export the tokenizer")
    return text


def _check_edit_format(backend: tokenizers.Tokenizer, path: Path) -> None:
    """A tokenizer with <|edit|> is prompted in the built-in edit format (prompt.style), which needs every one of
    the format's special tokens: refuse one that has only some now, rather than fail at the first %%spark."""
    from ..train.tokenizer import EDIT, SPECIAL_TOKENS  # constants only: no training code is imported

    if backend.token_to_id(EDIT) is None:
        return
    missing = [t for t in SPECIAL_TOKENS if backend.token_to_id(t) is None]
    if missing:
        raise ModelLoadError(
            f"{path} has the edit format's {EDIT} token but lacks {', '.join(missing)}, which the format also "
            "needs; the tokenizer was not saved by spark_nb.train.tokenizer (or was edited), re-export it"
        )


def _find_chat_template(folder: Path, settings: dict) -> tuple[str | None, Path]:
    """The chat template's source and the file it comes from (for messages)."""
    path = folder / CHAT_TEMPLATE_FILE
    if path.exists():
        try:
            return path.read_text(encoding="utf-8"), path
        except UnicodeDecodeError as err:
            raise ModelLoadError(f"{path} is not UTF-8 text ({err}); re-export the tokenizer") from None
    path = folder / TOKENIZER_CONFIG_FILE
    template = settings.get("chat_template")
    if isinstance(template, list):
        # Several named templates (e.g. "default", "tool_use"); prompts for editing use the default one
        if not all(isinstance(entry, dict) and {"name", "template"} <= entry.keys() for entry in template):
            raise ModelLoadError(f"{path}'s chat_template is a list whose entries are not all "
                                 "{\"name\": ..., \"template\": ...}; re-export the tokenizer")
        template = {entry["name"]: entry["template"] for entry in template}.get("default")
    if template is not None and not isinstance(template, str):
        raise ModelLoadError(f"{path}'s chat_template is a {type(template).__name__}, not template text; "
                             "re-export the tokenizer")
    return template, path


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    # Jinja's own tojson escapes HTML characters, which would change the prompt; transformers overrides it too
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _compile_chat_template(source: str) -> jinja2.Template:
    # Templates come from model folders, i.e. from strangers: render them in a sandbox, with the same
    # environment settings and helpers as transformers so that the prompt matches the one the model was trained on.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as err:
        raise ModelLoadError(f"the chat template does not parse ({err}, line {err.lineno}); fix the template") from None
