"""Hugging Face model folders: config.json, safetensors weights, tokenizer.json and chat template, int8."""
from .config import ModelConfig
from .errors import ModelLoadError
from .folder import Checkpoint, load_folder
from .quant import dequantize, quantize_int8
from .tokenizer import Tokenizer
from .weights import DecoderWeights, LayerWeights

__all__ = [
    "ModelConfig",
    "ModelLoadError",
    "Checkpoint",
    "load_folder",
    "Tokenizer",
    "quantize_int8",
    "dequantize",
    "DecoderWeights",
    "LayerWeights",
]
