"""The load path's chunked conversions give exactly what the whole-array ones give: GGUF blocks dequantized a few
rows per call of gguf's own block decoder (against gguf.quants.dequantize), and int8 quantization a few rows at a
time (against the formula on the whole matrix), including ragged last chunks and all-zero rows."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf_files import random_blocks

from spark_nb.model import gguf_file, quant
from spark_nb.model.gguf_file import TENSOR_TYPES


@pytest.mark.parametrize("kind", TENSOR_TYPES, ids=lambda k: k.name)
def test_chunked_dequantize_is_gguf_dequantize(kind, monkeypatch):
    monkeypatch.setattr(gguf_file, "DEQUANTIZE_VALUES", 3 * 512)  # 3 rows a call: 37 rows are 13 calls, the last 1
    rng = np.random.default_rng(int(kind))
    rows, cols = 37, 512
    if kind in (T.F32, T.F16, T.BF16):
        data = gguf.quants.quantize(rng.normal(size=(rows, cols)).astype(np.float32), kind)
    else:
        data = random_blocks(rows, cols, kind, rng)
    np.testing.assert_array_equal(gguf_file.dequantize(data, kind), gguf.quants.dequantize(data, kind))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (37, 512), (1000, 70)])
def test_chunked_int8_quantization_is_the_whole_matrix_formula(shape, monkeypatch):
    monkeypatch.setattr(quant, "CHUNK_VALUES", 1024)
    rng = np.random.default_rng(shape[0])
    w = (rng.normal(size=shape) * rng.uniform(0, 3, size=(shape[0], 1))).astype(np.float32)
    w[0] = 0.0
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / quant.INT8_MAX, 1.0).astype(np.float32)
    expected = np.clip(np.rint(w / scale[:, None]), -quant.INT8_MAX, quant.INT8_MAX).astype(np.int8)
    q, s = quant.quantize_int8(w)
    np.testing.assert_array_equal(q, expected)
    np.testing.assert_array_equal(s, scale)
    assert q.dtype == np.int8 and s.dtype == np.float32
