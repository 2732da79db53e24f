"""The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata, rebuilt with the `tokenizers` library.

A GGUF carries no tokenizer.json: llama.cpp's converter stores the vocabulary (`tokens`, `token_type`, `scores`),
the BPE `merges`, the name of the pre-tokenizer (`pre`, which fixes how text is split before merging), the special
token ids and the chat template. Two kinds of vocabulary cover Llama, Qwen2 and Mistral files:

- `gpt2`: byte-level BPE (Qwen2, Llama 3, Mistral Nemo). Text is split by the regex `pre` names, then each piece's
  UTF-8 bytes are spelled in GPT-2's byte alphabet and merged. Only the `pre` values below are known; any other is
  refused by name, since a wrong split silently tokenizes differently from what the model was trained on.
- `llama`: SentencePiece-style BPE (Llama 2, Mistral 7B): spaces become "▁", one is prepended to the text, and
  characters missing from the vocabulary fall back to byte tokens <0x00>..<0xFF>. Without merges in the file they
  are recovered from the token scores, as transformers does.

The result is what transformers' own GGUF loading builds (tests/test_gguf.py compares tokenizations), with llama.cpp's
choices where the file states them: `add_space_prefix`, and `ignore_merges` for the Llama 3 split.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors

from .config import ModelConfig
from .errors import ModelLoadError
from .tokenizer import Tokenizer, _check_edit_format

# llama.cpp's token types (tokenizer.ggml.token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The split regexes of the `tokenizer.ggml.pre` values llama.cpp's converter writes for these families' vocabularies
# (the same strings as llama.cpp's llama-vocab.cpp and transformers' GGUF tokenizer mapping).
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
           r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
           r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT4O = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = None  # GPT-2's own split, which the ByteLevel pre-tokenizer applies itself
SPLITS = {
    # pre value -> (regexes applied in turn, ignore_merges: a piece that is a whole token is taken as is)
    "llama3": ([_LLAMA3], True), "llama-v3": ([_LLAMA3], True), "llama-bpe": ([_LLAMA3], True),
    "falcon3": ([_LLAMA3], True), "smaug-bpe": ([_LLAMA3], False), "dbrx": ([_LLAMA3], False),
    "qwen2": ([_QWEN2], False), "deepseek-r1-qwen": ([_QWEN2], False), "megrez": ([_QWEN2], False),
    "tekken": ([_TEKKEN], False),
    "gpt-4o": ([_GPT4O], False), "llama4": ([_GPT4O], True),
    "gpt-2": ([GPT2], False), "gpt2": ([GPT2], False), "default": ([GPT2], False), "mpt": ([GPT2], False),
    "olmo": ([GPT2], False), "jais": ([GPT2], False),
    # digits one by one first, then GPT-2's split
    "starcoder": ([r"\p{N}", GPT2], False), "refact": ([r"\p{N}", GPT2], False),
    "smollm": ([r"\p{N}", GPT2], False), "codeshell": ([r"\p{N}", GPT2], False),
    "command-r": ([r"\p{N}", GPT2], False),
}
SPECIAL_IDS = {"bos_token": "bos_token_id", "eos_token": "eos_token_id", "unk_token": "unknown_token_id",
               "pad_token": "padding_token_id"}
# llama.cpp ends generation at eos, eot and eom, and at control tokens with these texts (llama-vocab.cpp)
STOP_IDS = ("eos_token_id", "eot_token_id", "eom_token_id")
STOP_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
              "_<EOT>")


def tokenizer_from_metadata(meta: dict, config: ModelConfig, where: str) -> Tokenizer:
    """A Tokenizer from the file's `tokenizer.*` metadata (`meta`: key -> value); `where` names the file."""
    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise ModelLoadError(f"{where} has no tokenizer.ggml.tokens: it carries no vocabulary, so spark-nb cannot "
                             "tokenize for it; convert the model again with llama.cpp's convert_hf_to_gguf.py")
    types = list(meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    if len(types) != len(tokens):
        raise ModelLoadError(f"{where} has {len(tokens)} tokens but {len(types)} token types; the file is corrupt")
    if kind == "gpt2":
        backend = _byte_level(meta, tokens, where)
    elif kind == "llama":
        backend = _sentencepiece(meta, tokens, types, where)
    else:
        raise ModelLoadError(
            f"{where} has a {kind!r} tokenizer (tokenizer.ggml.model); spark-nb reads 'gpt2' (byte-level BPE) and "
            "'llama' (SentencePiece BPE) vocabularies"
        )
    special = {name: tokens[meta[f"tokenizer.ggml.{key}"]] for name, key in SPECIAL_IDS.items()
               if _token_id(meta, f"tokenizer.ggml.{key}", len(tokens), where) is not None}
    _add_special_tokens(backend, tokens, types, special, byte_level=kind == "gpt2")
    _post_processor(backend, meta, special)
    _check_edit_format(backend, where)
    stops = [meta[f"tokenizer.ggml.{key}"] for key in STOP_IDS
             if _token_id(meta, f"tokenizer.ggml.{key}", len(tokens), where) is not None]
    stops += [i for i, (text, kind_) in enumerate(zip(tokens, types)) if kind_ == CONTROL and text in STOP_TEXTS]
    bos = _token_id(meta, "tokenizer.ggml.bos_token_id", len(tokens), where)
    config = replace(config, bos_token_id=bos, eos_token_ids=tuple(dict.fromkeys(stops)))
    try:
        return Tokenizer(backend, special, meta.get("tokenizer.chat_template"), config)
    except ModelLoadError as err:  # the template does not compile
        raise ModelLoadError(f"{where}'s tokenizer.chat_template: {err}") from None


def _token_id(meta: dict, key: str, n_tokens: int, where: str) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n_tokens:
        raise ModelLoadError(f"{where}'s {key} is {value!r}, not a token id (0 to {n_tokens - 1}); the file is corrupt")
    return value


# ---------------------------------------------------------------------------------------------------------------
# The two kinds of vocabulary
# ---------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """GPT-2's spelling of each byte as a printable character (the alphabet byte-level vocabularies are written in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    spelling, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            spelling[byte] = chr(byte)
        else:
            spelling[byte] = chr(256 + extra)
            extra += 1
    return spelling


def _byte_level(meta: dict, tokens: list[str], where: str) -> tokenizers.Tokenizer:
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in SPLITS:
        raise ModelLoadError(
            f"{where}'s byte-level vocabulary uses the {pre!r} pre-tokenizer (tokenizer.ggml.pre), which spark-nb "
            f"does not know, so it cannot split text the way the model was trained; known: {', '.join(sorted(SPLITS))}"
        )
    merges = meta.get("tokenizer.ggml.merges")
    if not merges:
        raise ModelLoadError(f"{where}'s byte-level vocabulary has no tokenizer.ggml.merges; the file is incomplete, "
                             "convert the model again")
    # Every real token is spelled in the byte alphabet; one that is not (a special token with other characters) is
    # respelled from its UTF-8 bytes, so that decoding gives its text back.
    spelling = _byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {(t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))): i
             for i, t in enumerate(tokens)}
    regexes, ignore_merges = SPLITS[pre]
    backend = _bpe(where, vocab, [tuple(m.split(" ", 1)) for m in merges], fuse_unk=False,
                   ignore_merges=ignore_merges)
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes if r is not GPT2]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=GPT2 in regexes)
    backend.pre_tokenizer = pre_tokenizers.Sequence([*splits, byte_level]) if splits else byte_level
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece(meta: dict, tokens: list[str], types: list[int], where: str) -> tokenizers.Tokenizer:
    vocab = {t: i for i, t in enumerate(tokens)}
    if meta.get("tokenizer.ggml.merges"):
        merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    else:
        scores = meta.get("tokenizer.ggml.scores")
        if not scores or len(scores) != len(tokens):
            raise ModelLoadError(f"{where}'s SentencePiece vocabulary has neither merges nor a score per token; "
                                 "the file is incomplete, convert the model again")
        merges = _merges_from_scores(tokens, scores, vocab)
    unk = next((tokens[i] for i, kind in enumerate(types) if kind == UNKNOWN), None)
    backend = _bpe(where, vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True)
    prefix = meta.get("tokenizer.ggml.add_space_prefix", True)  # llama.cpp's default for SentencePiece
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first" if prefix else "never",
                                                     split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    backend.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    return backend


def _bpe(where: str, vocab: dict[str, int], merges: list[tuple], **options) -> tokenizers.Tokenizer:
    try:
        return tokenizers.Tokenizer(models.BPE(vocab, merges, **options))
    except Exception as err:  # the Rust side raises a bare Exception (a merge of unknown tokens) or a TypeError
        raise ModelLoadError(f"{where}'s vocabulary is corrupt: the tokenizers library refuses it ({err}); fetch the "
                             "file again") from None


def _merges_from_scores(tokens: list[str], scores: list[float], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """The merges a SentencePiece vocabulary implies: every split of a token into two tokens, best score first
    (ties: longer left part, then longer right part; then vocabulary order), as transformers' generate_merges."""
    merges = []
    for token, score in zip(tokens, scores):
        pairs = [(token[:k], token[k:], score) for k in range(1, len(token))
                 if token[:k] in vocab and token[k:] in vocab]
        merges += sorted(pairs, key=lambda m: (vocab[m[0]], vocab[m[1]]))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


# ---------------------------------------------------------------------------------------------------------------
# Special tokens and what encode(add_special_tokens=True) adds
# ---------------------------------------------------------------------------------------------------------------


def _add_special_tokens(backend: tokenizers.Tokenizer, tokens: list[str], types: list[int], special: dict[str, str],
                        byte_level: bool) -> None:
    """Control tokens (and the named bos/eos/unk/pad) match whole in text and are special; user-defined tokens
    match whole but are ordinary text. In a byte-level vocabulary a control token spelled outside the byte alphabet
    is a converter mislabel and is left alone, as transformers does."""
    alphabet = set(_byte_alphabet().values()) if byte_level else None
    control = [t for t, kind in zip(tokens, types) if kind == CONTROL and (alphabet is None or set(t) <= alphabet)]
    named = [t for t in special.values() if t not in control]
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control + named])
    user = [AddedToken(t, normalized=False, special=False) for t, kind in zip(tokens, types) if kind == USER_DEFINED]
    if user:
        backend.add_tokens(user)


def _post_processor(backend: tokenizers.Tokenizer, meta: dict, special: dict[str, str]) -> None:
    # llama.cpp adds bos to a SentencePiece vocabulary unless the file says otherwise
    add_bos = meta.get("tokenizer.ggml.add_bos_token", meta.get("tokenizer.ggml.model") == "llama")
    add_eos = meta.get("tokenizer.ggml.add_eos_token", False)
    bos, eos = (special.get("bos_token") if add_bos else None), (special.get("eos_token") if add_eos else None)
    if bos is None and eos is None:
        return
    single = " ".join([*([f"{bos}:0"] if bos else []), "$A:0", *([f"{eos}:0"] if eos else [])])
    pair = single + " " + " ".join([*([f"{bos}:1"] if bos else []), "$B:1", *([f"{eos}:1"] if eos else [])])
    ids = [(t, backend.token_to_id(t)) for t in dict.fromkeys(x for x in (bos, eos) if x)]
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=ids)
