"""The built-in model's tokenizer: byte-level BPE trained with `tokenizers` on the corpus, plus edit-format tokens.

Byte-level with no prefix space and no normalizer, so any text (code, indentation, non-ASCII) encodes and decodes
back exactly.  The special tokens of the edit format (format.py) are added tokens: each is one id, never split,
never produced by merges.  Training is deterministic for a given text order and vocabulary size (the BPE trainer
breaks ties between equally frequent pairs by the pair itself); `train_tokenizer` sorts nothing, so callers pass
texts in a stable order (the corpus split is already sorted by source and path).

Saved as the two files a Hugging Face folder needs: tokenizer.json and tokenizer_config.json (eos = <|end|>,
pad = <|pad|>, no bos), read by `spark_nb.model.Tokenizer` and by transformers' `PreTrainedTokenizerFast`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

ENDOFTEXT = "<|endoftext|>"  # separates documents; id 0
PAD = "<|pad|>"  # padding in batches, never a target
END = "<|end|>"  # end of the model's output (eos)
CONTEXT = "<|context|>"  # starts one earlier notebook cell
INSTRUCTION = "<|instruction|>"  # starts the instruction
CODE = "<|code|>"  # starts the cell to edit (and plain code)
EDIT = "<|edit|>"  # ends the prompt; the line-aligned edit follows
LINE = "<|line|>"  # generated: "feed me the next input line"
KEEP = "<|keep|>"  # generated after an input line: keep it
DELETE = "<|delete|>"  # ... delete it
REPLACE = "<|replace|>"  # ... replace it by the text that follows
INSERT = "<|insert|>"  # a new line (the text that follows) after the current position

SPECIAL_TOKENS = [ENDOFTEXT, PAD, END, CONTEXT, INSTRUCTION, CODE, EDIT, LINE, KEEP, DELETE, REPLACE, INSERT]
# Fill-in-the-middle (spark_nb/train/fim.py): the spellings of Qwen2.5-Coder, which spark_nb.server.complete looks
# for. Added after the BPE vocabulary (ids vocab..vocab+2), so a tokenizer that gains them keeps every other id.
FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"
FIM_TOKENS = [FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE]
DEFAULT_VOCAB = 4096
MODEL_MAX_LENGTH = 2048


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB, min_frequency: int = 2):
    """A byte-level BPE `tokenizers.Tokenizer` with `vocab_size` ids in all (special tokens and the 256 byte
    symbols included), trained on `texts`.  Special tokens get ids 0..len(SPECIAL_TOKENS)-1 in list order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def with_fim(tok):
    """`tok` with the fill-in-the-middle tokens added as special tokens where it lacks them (in place; returned).
    Existing ids never change: the new ones come after the last."""
    missing = [t for t in FIM_TOKENS if tok.token_to_id(t) is None]
    if missing:
        from tokenizers import AddedToken

        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    return tok


def has_fim(tok) -> bool:
    return all(tok.token_to_id(t) is not None for t in FIM_TOKENS)


def tokenizer_config(tok=None, fim_order: str | None = None) -> dict:
    """tokenizer_config.json: what transformers and spark_nb read besides tokenizer.json (the FIM tokens listed
    where `tok` has them, and `fim_order`, the order the model was trained to read them in)."""
    fim = tok is not None and has_fim(tok)
    extra = FIM_TOKENS if fim else []
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": END,
        "pad_token": PAD,
        "bos_token": None,
        "unk_token": None,
        "additional_special_tokens": SPECIAL_TOKENS[3:] + extra,
        "model_max_length": MODEL_MAX_LENGTH,
        "clean_up_tokenization_spaces": False,
        **({"fim_order": fim_order} if fim and fim_order else {}),
    }


def save_tokenizer(tok, folder: str | Path, fim_order: str | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tok, fim_order), indent=2) + "\n")
    return folder


def load_tokenizer(folder: str | Path):
    """The raw `tokenizers.Tokenizer` of a folder written by `save_tokenizer` (or a model folder)."""
    from tokenizers import Tokenizer

    path = Path(folder)
    return Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))


def special_ids(tok) -> dict[str, int]:
    """{token text: id} for the edit-format tokens; raises if the tokenizer lacks one."""
    out = {}
    for s in SPECIAL_TOKENS:
        i = tok.token_to_id(s)
        if i is None:
            raise ValueError(f"tokenizer lacks the special token {s}: it was not trained by spark_nb.train.tokenizer")
        out[s] = i
    return out


def training_texts(units: Iterable, tasks: Iterable = ()) -> Iterable[str]:
    """What the tokenizer is trained on: the code of the train units, then the instructions (so terse requests
    like "docstrings pls" get tokens of their own).  Context cells and targets are code from the same units."""
    for u in units:
        yield u.text if hasattr(u, "text") else str(u)
    seen = set()
    for t in tasks:
        if t.instruction not in seen:
            seen.add(t.instruction)
            yield t.instruction
