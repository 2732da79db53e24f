"""The notebook's SVG pictures: they parse, and what they draw matches arithmetic done here on the same inputs."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest

from spark_nb.model.synthetic import SHAPES, config_dict
from spark_nb.notebook.wafer_views import (H200_HBM_BYTES_PER_S, breakdown_svg, code_color, downsample,
                                           matvec_flow_svg, memory_svg, mesh_svg, sram_bytes_per_s)
from spark_nb.wafer.cycles import decode_cycles
from spark_nb.wafer.placement import EMBEDDING_CODE, FREE, LM_HEAD_CODE, place
from spark_nb.wafer.spec import PRESETS

NS = {"s": "http://www.w3.org/2000/svg"}


def tree(svg):
    return ET.fromstring(svg.data)


def mesh_rects(root):
    group = root.find(".//s:g[@id='mesh']", NS)
    return group.findall("s:rect", NS)


@pytest.fixture(scope="module")
def mini():
    spec = dict(SHAPES["llama-10m"])
    return place(config_dict(spec.pop("family"), **spec), "mini", "int8", context=1024)


def test_mesh_svg_colours_every_pe_by_its_code(mini):
    mesh = mini.mesh()
    rects = mesh_rects(tree(mesh_svg(mini)))
    drawn = Counter()
    for r in rects:
        assert r.get("height") == "1"
        drawn[r.get("fill")] += int(r.get("width"))
    codes, counts = np.unique(mesh, return_counts=True)
    expected = Counter({code_color(c, mini.config.n_layers): int(n) for c, n in zip(codes, counts)})
    assert drawn == expected
    assert sum(drawn.values()) == 24 * 32
    # one colour per code: 8 layers of weights, 8 KV caches, embedding, lm_head, free
    assert len(expected) == len(codes) == 8 + 8 + 3


def test_mesh_svg_rects_sit_where_the_mesh_says(mini):
    mesh = mini.mesh()
    n = mini.config.n_layers
    for r in mesh_rects(tree(mesh_svg(mini))):
        y, x, w = int(r.get("y")), int(r.get("x")), int(r.get("width"))
        assert {code_color(c, n) for c in mesh[y, x:x + w]} == {r.get("fill")}


def test_code_colours_are_distinct():
    n = 32
    codes = [FREE, EMBEDDING_CODE, LM_HEAD_CODE] + [s * (l + 1) for l in range(n) for s in (1, -1)]
    assert len({code_color(c, n) for c in codes}) == len(codes)


def test_downsample_keeps_the_first_nonfree_pe_of_each_block():
    rng = np.random.default_rng(0)
    mesh = np.where(rng.random((23, 37)) < 0.7, 0, rng.integers(-5, 6, (23, 37))).astype(np.int16)
    cells, fy, fx = downsample(mesh, max_cells=10)
    assert (fy, fx) == (3, 4) and cells.shape == (8, 10)
    for i in range(8):
        for j in range(10):
            block = [v for row in mesh[i * fy:(i + 1) * fy, j * fx:(j + 1) * fx] for v in row]
            assert cells[i, j] == next((v for v in block if v != 0), 0)


def test_big_mesh_is_downsampled_to_at_most_300_cells():
    llama_8b = config_dict("llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)
    p = place(llama_8b, "wse3", "fp16", context=1024)
    svg = mesh_svg(p)
    rects = mesh_rects(tree(svg))
    rows = Counter()
    for r in rects:
        rows[int(r.get("y"))] += int(r.get("width"))
    assert len(rows) == math.ceil(762 / 3) and set(rows.values()) == {math.ceil(1172 / 4)}
    assert len(svg.data) < 200_000


@pytest.mark.parametrize("rows, cols, tm, tn", [(768, 256, 160, 256), (256, 768, 128, 256),
                                                 (4096, 14336, 96, 224)])
def test_matvec_flow_draws_the_pe_grid_and_both_flows(rows, cols, tm, tn):
    root = tree(matvec_flow_svg(rows, cols, tm, tn))
    gr, gc = min(6, -(-rows // tm)), min(6, -(-cols // tn))
    assert len(root.findall(".//s:rect[@class='pe']", NS)) == gr * gc
    assert len(root.findall(".//s:line[@class='x-flow']", NS)) == gc  # one per PE column
    assert len(root.findall(".//s:line[@class='sum-flow']", NS)) == gr  # one per PE row
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert labels.count(f"{tm}x{tn}") == gr * gc


def test_breakdown_bars_are_proportional_to_cycles(mini):
    b = decode_cycles(mini)
    bars = tree(breakdown_svg(b)).findall(".//s:rect[@class='bar']", NS)
    assert [bar.get("data-op") for bar in bars] == sorted(b.ops, key=lambda op: (-b.ops[op], op))
    widest = max(b.ops.values())
    longest = max(float(bar.get("width")) for bar in bars)
    for bar in bars:
        assert float(bar.get("width")) == pytest.approx(longest * b.ops[bar.get("data-op")] / widest, abs=0.01)


def test_memory_bars_are_log_scaled_and_the_measured_one_is_marked():
    wse3 = PRESETS["wse3"]
    assert sram_bytes_per_s(wse3) == 893_064 * 8 * 1.1e9
    svg = memory_svg(wse3, 65e9, model_bytes=16e9)
    assert svg.data == memory_svg(wse3, 65e9, model_bytes=16e9).data  # deterministic
    root = tree(svg)
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect")]
    assert len(bars) == 3
    widths = [float(r.get("width")) for r in bars]
    decade = widths[1] / math.log10(H200_HBM_BYTES_PER_S / 1e9)  # pixels per factor of 10
    assert widths[0] == pytest.approx(decade * math.log10(sram_bytes_per_s(wse3) / 1e9), abs=0.02)
    assert widths[2] == pytest.approx(decade * math.log10(65), abs=0.02)
    measured = root.findall(".//s:*[@class='measured']", NS)
    assert [e.tag.split("}")[1] for e in measured] == ["rect", "text"]
    assert "65.0 GB/s" in measured[1].text and "4.1 tok/s" in measured[1].text
