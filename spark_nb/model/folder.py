"""load_folder: a Hugging Face model folder -> Checkpoint (config, tokenizer, fp32 weights), every part checked.

The cheap parts are read first (config.json, tokenizer.json) so that a wrong folder fails fast, before any
weights are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig
from .errors import ModelLoadError
from .tokenizer import Tokenizer
from .weights import DecoderWeights, StreamedWeights, load_decoder_weights, stream_decoder_weights

# int8: the engine quantizes the fp32 weights with quant.quantize_int8; auto: a GGUF file's block formats are kept
# (wafer.block_matrix), int8 for a model without them
DTYPES = ("fp32", "int8", "auto")


@dataclass
class Checkpoint:
    path: Path
    config: ModelConfig
    tokenizer: Tokenizer
    weights: DecoderWeights | StreamedWeights  # fp32; streamed: read as it is packed
    dtype: str  # the precision the engine should run in, one of DTYPES


def load_folder(path: str | Path, dtype: str = "fp32", streamed: bool = False) -> Checkpoint:
    """Read and validate a model folder; raises ModelLoadError saying what is wrong and what to do. streamed: the
    weights are StreamedWeights, read only as the engine packs them."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model folder {path} does not exist; pass the folder that holds config.json")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a folder; pass the model folder that holds config.json, not a file")
    if dtype not in DTYPES:
        raise ModelLoadError(f"unsupported dtype {dtype!r}: choose one of {', '.join(map(repr, DTYPES))}")
    config = ModelConfig.from_file(path / "config.json")
    config.check_rotary()
    tokenizer = Tokenizer.from_folder(path, config)
    if tokenizer.vocab_size > config.vocab_size:
        raise ModelLoadError(
            f"{path / 'tokenizer.json'} has {tokenizer.vocab_size} tokens but config.json's vocab_size is "
            f"{config.vocab_size}: some token ids would have no embedding; the tokenizer belongs to another model"
        )
    weights = (stream_decoder_weights if streamed else load_decoder_weights)(path, config)
    return Checkpoint(path=path, config=config, tokenizer=tokenizer, weights=weights, dtype=dtype)
