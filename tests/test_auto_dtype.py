"""spark_nb.load(path, dtype="auto"): a GGUF file's matrices kept in their own block formats (wafer/block_matrix.py).

References are independent of the block path: quant_kernels.matmul_reference (NumPy) for a matrix of mixed parts,
bit for bit; transformers' float64 forward on the file's dequantized weights (gguf.quants.dequantize) for the
logits, within the int8 engine's tolerance; plain greedy decoding for speculative output, token for token.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf_files import SCALE_FIELDS, byte_level_vocab, cycle_types, random_blocks, write_gguf
from test_engine_parity import int8_errors, within_int8_tolerance

import spark_nb
from spark_nb.engine import Engine
from spark_nb.wafer import block_matrix
from spark_nb.wafer.blocks import FORMATS
from spark_nb.wafer.kernels import (embed_rows, matmul_rows, matmul_units, prepare_input, quantized, tiled_matmul,
                                    unit_rows)
from spark_nb.wafer.quant_kernels import matmul_reference
from spark_nb.wafer.spec import get_spec

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPT = 'def add(a, b):\n    """Sum of 12345 and héllo."""\n    return a + b\n'
SHAPE = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256)  # 256: a whole K-quant block per row
# every format with a kernel, and two without (F16, Q4_1: kept as Q8_0), so that Wq, Wk, Wv and Wg, Wu differ in
# format within a layer and between the layers
KINDS = [T.Q4_K, T.Q6_K, T.Q8_0, T.Q5_0, T.Q5_K, T.Q4_0, T.F16, T.Q4_1, T.Q6_K]


def test_a_matrix_of_mixed_parts_is_its_parts_twins_bit_for_bit():
    rng = np.random.default_rng(0)
    cols, parts = 512, [(T.Q4_K, 40), (T.Q8_0, 16), (T.Q6_K, 24)]
    raws = [random_blocks(rows, cols, kind, rng) for kind, rows in parts]
    plan = block_matrix.plan(get_spec("mini"), [k for k, _ in parts], [r for _, r in parts], cols)
    matrix = np.zeros(plan.nbytes, np.uint8)
    block_matrix.write(matrix, plan, raws)
    m = sum(r for _, r in parts)
    x = rng.normal(size=(6, cols)).astype(np.float32)
    q, y = quantized(6, cols + 512), np.zeros((6, m), np.float32)
    tiled_matmul(x, matrix, np.zeros(0, np.float32), y, q)
    expected = np.concatenate([matmul_reference(x, raw, kind, plan.tn) for raw, (kind, _) in zip(raws, parts)], 1)
    np.testing.assert_array_equal(y, expected)
    # the same rows unit span by unit span (as the forward pass's workers claim them), and a token alone
    units, split = matmul_units(6, matrix), np.zeros_like(y)
    prepare_input(x, matrix, q)
    covered = []
    for first in range(units):
        matmul_rows(x, matrix, None, split, q, first, first + 1)
        covered.append(unit_rows(6, matrix, first, first + 1, m))
    np.testing.assert_array_equal(split, y)
    assert covered[0][0] == 0 and covered[-1][1] == m and all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    alone = np.zeros((1, m), np.float32)
    tiled_matmul(x[3:4], matrix, np.zeros(0, np.float32), alone, quantized(1, cols + 512))
    np.testing.assert_array_equal(alone[0], y[3])


# PARTS: three at most; blocks of 32 alone in a tile width of an odd number of them (interleaved in pairs and one
# left alone: blocks.pack_units)
@pytest.mark.parametrize("cols, parts", [(1024, [(T.Q4_K, 40), (T.Q5_0, 9), (T.Q6_K, 24)]),
                                         (544, [(T.Q8_0, 17), (T.Q4_0, 9), (T.Q5_0, 24)])],
                         ids=["k-quants", "blocks-of-32"])
def test_a_block_matrix_s_rows_are_gguf_s_own(cols, parts):
    """The token embedding's lookups (embed_rows on a block matrix: a tied model's is its lm_head's array): every
    row is gguf.quants.dequantize's, bit for bit, whichever part and tile column its blocks sit in."""
    rng = np.random.default_rng(1)
    raws = [random_blocks(rows, cols, kind, rng) for kind, rows in parts]
    plan = block_matrix.plan(get_spec("mini"), [k for k, _ in parts], [r for _, r in parts], cols)
    assert all(p.gc > 1 for p in plan.parts)  # rows cut across tile columns
    if parts[0][0] == T.Q8_0:
        assert (plan.tn // 32) % 2 == 1 and plan.tn > 32
    matrix = np.zeros(plan.nbytes, np.uint8)
    block_matrix.write(matrix, plan, raws)
    expected = np.concatenate([gguf.quants.dequantize(raw, kind) for raw, (kind, _) in zip(raws, parts)])
    tokens = rng.permutation(len(expected))
    out = np.empty((len(tokens), cols), np.float32)
    embed_rows(tokens, matrix, np.zeros(0, np.float32), out)
    assert np.array_equal(out.view(np.uint32), expected[tokens].view(np.uint32))


@pytest.fixture(scope="module")
def vocab():
    return byte_level_vocab()


@pytest.fixture(scope="module")
def files(tmp_path_factory, vocab):
    """arch -> a GGUF file of mixed formats ("qwen2": a Q4_K embedding and a Q6_K output; "llama": q/k rows
    permuted, as llama.cpp writes them, and tied to an F16 embedding, kept as Q8_0)."""
    from spark_nb.model.synthetic import config_dict, random_weights

    made = {}
    for arch, family, tie in (("qwen2", "qwen2", False), ("llama", "llama", True)):
        config = config_dict(family, vocab_size=len(vocab["tokens"]), tie_word_embeddings=tie, **SHAPE)
        weights = random_weights(config, seed=len(made), std=0.03)
        cycle = cycle_types(KINDS)
        types = cycle if arch == "qwen2" else lambda name, w: T.F16 if name == "token_embd.weight" else cycle(name, w)
        made[arch] = write_gguf(tmp_path_factory.mktemp(arch) / f"{arch}.gguf", arch, config, weights, vocab,
                                types=types, pre="qwen2" if arch == "qwen2" else "llama-bpe", seed=len(made))
    return made


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_logits_within_int8_tolerance_of_a_float64_forward_on_the_dequantized_file(files, arch):
    path = files[arch]
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                              dtype=torch.float64).eval()
    engine = spark_nb.load(path, dtype="auto")
    assert engine.dtype == "auto"
    ids = engine.encode(PROMPT)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    assert ref.std() > 0.3
    errors = int8_errors(engine.logits(ids), ref)
    assert within_int8_tolerance(errors), errors


def test_the_matrices_are_the_files_bytes(files):
    """Each part of a layer's matrix holds the file's own blocks (from_block_tiles gives them back), and the
    block matrices take about the file's bytes (not int8's)."""
    from spark_nb.wafer.blocks import from_block_tiles

    path = files["qwen2"]
    engine = spark_nb.load(path, dtype="auto")
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    layers = engine._pass.resident.model.layers
    for l in range(SHAPE["num_hidden_layers"]):
        for field, names in (("wqkv", ("attn_q", "attn_k", "attn_v")), ("w_gate_up", ("ffn_gate", "ffn_up")),
                             ("w_down", ("ffn_down",))):
            matrix = getattr(layers, field)[l]
            header = matrix[: block_matrix.HEADER].view(np.int64)
            rows = {}
            for p in range(header[0]):
                code, row0, n, gr, gc, tm, per_tile, at = header[4 + 8 * p : 12 + 8 * p]
                kind = next(k for k, f in FORMATS.items() if f.code == code)
                tiles = matrix[at : at + gr * gc * tm * per_tile].reshape(gr, gc, tm, per_tile)
                rows[row0] = kind, from_block_tiles(tiles, kind, n, header[2])
            row0 = 0
            for name in names:
                t = tensors[f"blk.{l}.{name}.weight"]
                kind = T(t.tensor_type)
                if kind not in FORMATS:  # kept as Q8_0 of its values
                    kind, raw = T.Q8_0, gguf.quants.quantize(gguf.quants.dequantize(t.data, kind), T.Q8_0)
                else:
                    raw = np.asarray(t.data).reshape(int(t.shape[-1]), -1)
                start = max(r for r in rows if r <= row0)
                got_kind, got = rows[start]
                assert got_kind == kind
                np.testing.assert_array_equal(got[row0 - start : row0 - start + raw.shape[0]], raw)
                row0 += raw.shape[0]


def test_speculative_output_is_plain_greedy_and_verify_is_decode_bit_for_bit(files):
    engine = Engine.load(files["qwen2"], dtype="auto", context=256)
    ids = engine.encode(PROMPT)
    s = engine.session()
    s.feed(ids[:10])
    rows = s.verify(ids[10:21])  # four, four and three tokens at a time
    s.rewind(10)
    np.testing.assert_array_equal(rows, np.stack([s.feed([token]) for token in ids[10:21]]))
    drafted = 0
    for prompt in (ids + ids[:12], ids[5:] + ids[5:20]):
        for options in (dict(max_new_tokens=40), dict(max_new_tokens=7)):
            plain = list(engine.stream(prompt, ignore_eos=True, **options))[-1]
            fast = list(engine.stream(prompt, speculative=True, ignore_eos=True, **options))[-1]
            assert fast.token_ids == plain.token_ids and fast.text == plain.text
            drafted += fast.stats.drafted
    assert drafted > 0


def test_auto_keeps_a_tile_cache_entry_and_a_folder_loads_as_int8(files, tmp_path, monkeypatch):
    """A block model's second load maps its entry (the same logits; a tied model's token embedding is its lm_head,
    one array); a model folder has no block formats: auto loads it as int8, the same logits."""
    from spark_nb.model.synthetic import write_random_model

    from spark_nb.engine import tile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tile_cache, "MIN_PARAMS", 0)  # a model this small would not be kept otherwise
    ids = list(range(3, 40))
    for arch in ("qwen2", "llama"):
        first = Engine.load(files[arch], dtype="auto", context=64)
        kept = tile_cache.load(files[arch], first.spec, "auto")
        assert kept is not None and kept[3] == tile_cache.load(files[arch], first.spec, "auto")[3]
        second = Engine.load(files[arch], dtype="auto", context=64)
        assert isinstance(second._pass.resident.model.layers.wqkv, np.memmap) or \
            isinstance(second._pass.resident.model.layers.wqkv.base, np.memmap)
        assert (second.placement.pes_used, second.dtype) == (first.placement.pes_used, "auto")
        model = second._pass.resident.model
        assert (model.embed is model.lm_head) == (arch == "llama")  # llama's is tied to its F16 embedding (Q8_0)
        np.testing.assert_array_equal(second.logits(ids), first.logits(ids))
    folder = write_random_model(tmp_path / "folder", {"family": "llama", "vocab_size": 512})
    auto, int8 = Engine.load(folder, dtype="auto", context=64), Engine.load(folder, dtype="int8", context=64)
    assert auto.dtype == "int8"
    np.testing.assert_array_equal(auto.logits(ids), int8.logits(ids))


def _mapped_kb(folder, name: str) -> int:
    """Resident kB of this process's mappings of files called `name` under folder (Linux's /proc/self/smaps)."""
    total, current = 0, None
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's first line: range ... [path]
                current = fields[-1] if len(fields) > 5 else None
            elif fields[0] == "Rss:" and current and current.startswith(f"{folder}/") and current.endswith(f"/{name}"):
                total += int(fields[1])
    return total


def test_an_embedding_mapped_from_the_tile_cache_hands_its_lookups_pages_back(files, tmp_path, monkeypatch):
    """Each embedding row a lookup reads maps the pages around it into the process: an untied embedding mapped from
    the tile cache hands them back once RELEASE_ROWS rows have been looked up (the logits the same)."""
    from spark_nb.engine import tile_cache
    from spark_nb.wafer.forward import RELEASE_ROWS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tile_cache, "MIN_PARAMS", 0)
    first = Engine.load(files["qwen2"], dtype="auto", context=256)  # packs into the entry
    engine = Engine.load(files["qwen2"], dtype="auto", context=256)  # maps it
    ids = [3 + (7 * k) % 200 for k in range(RELEASE_ROWS)]
    engine.logits(ids[:1])
    assert _mapped_kb(tmp_path, "embed.npy") > 0  # one row looked up: its pages mapped, and kept for now
    np.testing.assert_array_equal(engine.logits(ids), first.logits(ids))
    assert _mapped_kb(tmp_path, "embed.npy") == 0
