"""Reading models: Hugging Face folders (config.json, safetensors, tokenizer.json, chat template) and GGUF files."""
from .config import ModelConfig
from .errors import ModelLoadError
from .folder import Checkpoint, load_folder
from .load import load_checkpoint
from .quant import dequantize, quantize_int8
from .tokenizer import Tokenizer
from .weights import DecoderWeights, LayerWeights

__all__ = [
    "ModelConfig",
    "ModelLoadError",
    "Checkpoint",
    "load_folder",
    "load_checkpoint",
    "Tokenizer",
    "quantize_int8",
    "dequantize",
    "DecoderWeights",
    "LayerWeights",
]
