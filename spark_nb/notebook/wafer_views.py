"""Pictures of the emulated wafer for the teaching notebook, drawn as plain SVG (no plotting library).

Every function is pure: the same inputs give the same SVG, byte for byte, so nbval can compare the notebook's
outputs. Each returns an `IPython.display.SVG`; its `.data` is the markup.

    mesh_svg(placement)                 the mesh as a heatmap: which PE holds which layer, KV cache, vocabulary
    matvec_flow_svg(rows, cols, tm, tn) one matrix-vector product on its PE grid: x down columns, sums along rows
    breakdown_svg(breakdown)            cycles of one decode step by op, as horizontal bars
    memory_svg(spec, cpu_bytes_per_s)   wafer SRAM vs H200 HBM vs this CPU, log scale, with decode ceilings

Elements a measurement on this machine produces carry class="measured", so a sanitize pattern can mask them.
"""
from __future__ import annotations

import colorsys
import math
from html import escape

import numpy as np
from IPython.display import SVG

from ..wafer.placement import EMBEDDING_CODE, FREE, LM_HEAD_CODE

__all__ = ["mesh_svg", "matvec_flow_svg", "breakdown_svg", "memory_svg", "code_color", "downsample",
           "H200_HBM_BYTES_PER_S", "sram_bytes_per_s"]

H200_HBM_BYTES_PER_S = 4.8e12  # NVIDIA H200: 141 GB HBM3e at 4.8 TB/s (vendor datasheet, WAFER.md)
MAX_CELLS = 300  # a heatmap draws at most this many cells along either side
ROOT = 'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12"'

FREE_COLOR = "#eeeeee"
EMBEDDING_COLOR = "#444444"
LM_HEAD_COLOR = "#111111"
X_COLOR = "#1f77b4"  # activations going down the columns
SUM_COLOR = "#d62728"  # partial sums going along the rows


def _hex(h: float, lightness: float, saturation: float) -> str:
    r, g, b = colorsys.hls_to_rgb(h, lightness, saturation)
    return "#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255))


def code_color(code: int, n_layers: int) -> str:
    """Fill of one mesh code: layer l's weights in a hue that walks 0..300 degrees over the layers, its KV cache in a
    light tint of the same hue, the vocabulary matrices in greys, free PEs almost white."""
    code = int(code)
    if code == FREE:
        return FREE_COLOR
    if code == EMBEDDING_CODE:
        return EMBEDDING_COLOR
    if code == LM_HEAD_CODE:
        return LM_HEAD_COLOR
    layer = abs(code) - 1
    hue = (300.0 / 360.0) * layer / max(1, n_layers - 1)
    return _hex(hue, 0.42, 0.70) if code > 0 else _hex(hue, 0.80, 0.70)


def downsample(mesh: np.ndarray, max_cells: int = MAX_CELLS) -> tuple[np.ndarray, int, int]:
    """(cells, fy, fx): the mesh cut into fy x fx blocks so neither side exceeds max_cells; a block shows its first
    non-free PE in row-major order (so a one-PE-wide KV column is not lost), or FREE if it has none."""
    rows, cols = mesh.shape
    fy, fx = math.ceil(rows / max_cells), math.ceil(cols / max_cells)
    if fy == fx == 1:
        return mesh.copy(), 1, 1
    R, C = math.ceil(rows / fy), math.ceil(cols / fx)
    padded = np.full((R * fy, C * fx), FREE, dtype=mesh.dtype)
    padded[:rows, :cols] = mesh
    blocks = padded.reshape(R, fy, C, fx).transpose(0, 2, 1, 3).reshape(R, C, fy * fx)  # [R, C, fy*fx]
    first = np.argmax(blocks != FREE, axis=-1)  # 0 where a block is all free, and then its value is FREE
    return np.take_along_axis(blocks, first[..., None], axis=-1)[..., 0], fy, fx


def _runs(row: np.ndarray):
    """(start, length, code) of every run of equal codes in a row."""
    edges = np.flatnonzero(np.diff(row)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(row)]))
    return [(int(s), int(e - s), int(row[s])) for s, e in zip(starts, ends)]


def mesh_svg(placement, wafer: int = 0, max_cells: int = MAX_CELLS, width: int = 640) -> SVG:
    """The mesh of one wafer as a heatmap with a legend. Runs of equal PEs along a mesh row are one <rect> each
    (inside <g id="mesh">, one unit per cell), so even a full WSE-3 stays a few hundred kilobytes."""
    mesh = placement.mesh(wafer)
    cells, fy, fx = downsample(mesh, max_cells)
    R, C = cells.shape
    n_layers = placement.config.n_layers
    scale = min(20.0, width / C)
    w, h = C * scale, R * scale
    title = (f"{placement.spec.name} wafer {wafer}: {mesh.shape[0]} x {mesh.shape[1]} PEs"
             + (f", one cell per {fy} x {fx} PEs" if (fy, fx) != (1, 1) else ", one cell per PE"))
    legend_y = 24 + h + 16
    out = [f'<svg {ROOT} width="{w + 2:.0f}" height="{legend_y + 56:.0f}">',
           f'<text x="0" y="14">{escape(title)}</text>',
           f'<g id="mesh" transform="translate(1,24) scale({scale:g})" shape-rendering="crispEdges">']
    for r in range(R):
        for start, length, code in _runs(cells[r]):
            out.append(f'<rect x="{start}" y="{r}" width="{length}" height="1" fill="{code_color(code, n_layers)}"/>')
    out.append("</g>")
    out.append(f'<g id="legend" transform="translate(0,{legend_y:.0f})">')
    x = 0
    for label, color in (("embedding", EMBEDDING_COLOR), ("lm_head", LM_HEAD_COLOR), ("free", FREE_COLOR)):
        out.append(f'<rect x="{x}" y="0" width="12" height="12" fill="{color}" stroke="#999"/>')
        out.append(f'<text x="{x + 16}" y="11">{label}</text>')
        x += 28 + 7 * len(label)
    swatch = max(2.0, min(12.0, 240.0 / n_layers))
    for row, (label, sign) in enumerate((("layer weights", 1), ("layer KV cache", -1))):
        y = 20 + 18 * row
        for l in range(n_layers):
            out.append(f'<rect x="{l * swatch:g}" y="{y}" width="{swatch:g}" height="12" '
                       f'fill="{code_color(sign * (l + 1), n_layers)}"/>')
        out.append(f'<text x="{n_layers * swatch + 6:g}" y="{y + 11}">{label}, layer 0 .. {n_layers - 1}</text>')
    out.append("</g></svg>")
    return SVG("\n".join(out))


def _arrow_marker(name: str, color: str) -> str:
    return (f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
            f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>')


def matvec_flow_svg(rows: int, cols: int, tm: int, tn: int, max_grid: int = 6) -> SVG:
    """y = W x for W[rows, cols] cut into tm x tn tiles on a gr x gc PE grid (at most max_grid x max_grid drawn;
    the rest is elided). Blue arrows: x[c*tn:(c+1)*tn] enters the top of PE column c and is forwarded down it.
    Red arrows: the partial sums of tile row r travel west to east along PE row r and leave as y[r*tm:(r+1)*tm].
    PEs are <rect class="pe">, the arrows <line class="x-flow"> and <line class="sum-flow">."""
    gr, gc = math.ceil(rows / tm), math.ceil(cols / tn)
    sr, sc = min(gr, max_grid), min(gc, max_grid)
    pe, gap, left, top = 64, 26, 90, 78
    width = max(660, left + sc * (pe + gap) + 120)
    height = top + sr * (pe + gap) + 48
    out = [f'<svg {ROOT} width="{width}" height="{height}">',
           f'<defs>{_arrow_marker("ax", X_COLOR)}{_arrow_marker("as", SUM_COLOR)}</defs>',
           f'<text x="0" y="16" font-weight="bold">y = W x, W is {rows} x {cols}: {gr} x {gc} = '
           f'{gr * gc:,} PEs, each holding one {tm} x {tn} tile</text>',
           f'<text x="0" y="34" fill="{X_COLOR}">x slices ({tn} values) broadcast down each PE column</text>',
           f'<text x="0" y="50" fill="{SUM_COLOR}">partial sums ({tm} per PE) reduced west to east along '
           f'each PE row</text>']
    for c in range(sc):
        cx = left + c * (pe + gap) + pe / 2
        label = f"x[{c * tn}:{min(cols, (c + 1) * tn)}]"
        out.append(f'<text x="{cx:g}" y="{top - 10}" font-size="10" text-anchor="middle" '
                   f'fill="{X_COLOR}">{label}</text>')
        y1, y2 = top - 4, top + (sr - 1) * (pe + gap) + pe / 2
        out.append(f'<line class="x-flow" x1="{cx:g}" y1="{y1}" x2="{cx:g}" y2="{y2:g}" stroke="{X_COLOR}" '
                   f'stroke-width="3" stroke-opacity="0.6" marker-end="url(#ax)"/>')
    for r in range(sr):
        cy = top + r * (pe + gap) + pe / 2
        out.append(f'<text x="{left - 8}" y="{cy + 4:g}" font-size="10" text-anchor="end">row {r}</text>')
        x1, x2 = left + pe / 2, left + sc * (pe + gap) - gap + 30
        out.append(f'<line class="sum-flow" x1="{x1:g}" y1="{cy:g}" x2="{x2:g}" y2="{cy:g}" stroke="{SUM_COLOR}" '
                   f'stroke-width="3" stroke-opacity="0.6" marker-end="url(#as)"/>')
        label = f"y[{r * tm}:{min(rows, (r + 1) * tm)}]"
        out.append(f'<text x="{x2 + 4:g}" y="{cy + 4:g}" font-size="10" fill="{SUM_COLOR}">{label}</text>')
        for c in range(sc):
            x, y = left + c * (pe + gap), top + r * (pe + gap)
            out.append(f'<rect class="pe" x="{x}" y="{y}" width="{pe}" height="{pe}" fill="#f4f4f4" '
                       f'fill-opacity="0.85" stroke="#555"/>')
            out.append(f'<text x="{x + pe / 2:g}" y="{y + pe / 2 + 4:g}" font-size="10" '
                       f'text-anchor="middle">{tm}x{tn}</text>')
    if gc > sc:
        out.append(f'<text x="{left + sc * (pe + gap) - gap / 2:g}" y="{top + pe + 14}">'
                   f'... {gc - sc} more columns</text>')
    if gr > sr:
        out.append(f'<text x="{left}" y="{top + sr * (pe + gap) + 12}">... {gr - sr} more rows</text>')
    out.append("</svg>")
    return SVG("\n".join(out))


def breakdown_svg(breakdown, width: int = 640, title: str = "") -> SVG:
    """The ops of a cycles.Breakdown as horizontal bars, longest first, each labelled with cycles and share.
    Bars are <rect class="bar" data-op="..."> whose widths are proportional to cycles."""
    ops = sorted(breakdown.ops.items(), key=lambda kv: (-kv[1], kv[0]))
    total = breakdown.total_cycles
    biggest = max((c for _, c in ops), default=0) or 1
    label_w, bar_w, row = 130, width - 130 - 170, 20
    head = title or (f"one decode step: {total:,.0f} cycles = {breakdown.seconds * 1e6:,.1f} us "
                     f"at {breakdown.clock_hz / 1e9:g} GHz")
    out = [f'<svg {ROOT} width="{width}" height="{30 + row * len(ops)}">',
           f'<text x="0" y="16" font-weight="bold">{escape(head)}</text>']
    for i, (op, cycles) in enumerate(ops):
        y = 26 + i * row
        w = bar_w * cycles / biggest
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(op)}</text>')
        out.append(f'<rect class="bar" data-op="{escape(op)}" x="{label_w}" y="{y + 2}" width="{w:.2f}" '
                   f'height="{row - 5}" fill="#4c72b0"/>')
        out.append(f'<text x="{label_w + w + 6:.2f}" y="{y + 13}">{cycles:,.0f} '
                   f'({100 * cycles / total:.1f}%)</text>')
    out.append("</svg>")
    return SVG("\n".join(out))


def sram_bytes_per_s(spec) -> float:
    """What the cycle model lets a whole wafer read from SRAM per second: every PE, R bytes per cycle."""
    return spec.pes * spec.sram_read_bytes_per_cycle * spec.clock_hz


def _rate(bytes_per_s: float) -> str:
    for unit, scale in (("PB/s", 1e15), ("TB/s", 1e12), ("GB/s", 1e9)):
        if bytes_per_s >= scale:
            return f"{bytes_per_s / scale:,.1f} {unit}"
    return f"{bytes_per_s / 1e6:,.1f} MB/s"


def _tick(bytes_per_s: float) -> str:
    """A decade's label: 1 GB/s, 10 GB/s, 100 GB/s, 1 TB/s ..."""
    for unit, scale in (("PB/s", 1e15), ("TB/s", 1e12), ("GB/s", 1e9)):
        if bytes_per_s >= scale:
            return f"{bytes_per_s / scale:.0f} {unit}"
    return f"{bytes_per_s / 1e6:.0f} MB/s"


def memory_svg(spec, cpu_bytes_per_s: float, gpu_bytes_per_s: float = H200_HBM_BYTES_PER_S,
               model_bytes: float | None = None, width: int = 640) -> SVG:
    """Memory bandwidth, log scale (one decade per tick from 1 GB/s): the wafer's SRAM (sram_bytes_per_s(spec)),
    an H200's HBM and this CPU's measured bandwidth. With model_bytes, each bar also says the decode ceiling of a
    machine that must read every weight once per token: bandwidth / model_bytes tokens per second.
    The CPU's bar and labels carry class="measured" (they change run to run)."""
    bars = [(f"{spec.name} SRAM (all PEs)", sram_bytes_per_s(spec), "#2ca02c", False),
            ("H200 HBM3e", gpu_bytes_per_s, "#ff7f0e", False),
            ("this CPU (measured)", cpu_bytes_per_s, "#7f7f7f", True)]
    lo = 1e9
    hi = 10 ** math.ceil(math.log10(max(b for _, b, _, _ in bars)))
    label_w, bar_w, row = 150, width - 150 - 20, 40
    decades = round(math.log10(hi / lo))

    def x_of(v):
        return label_w + bar_w * math.log10(max(v, lo) / lo) / decades

    head = "memory bandwidth, log scale" + (f"; decode ceiling for {model_bytes / 1e9:,.2f} GB of weights"
                                            if model_bytes else "")
    height = 30 + row * len(bars) + 30
    out = [f'<svg {ROOT} width="{width}" height="{height}">',
           f'<text x="0" y="16" font-weight="bold">{escape(head)}</text>']
    for k in range(decades + 1):
        x = label_w + bar_w * k / decades
        out.append(f'<line x1="{x:.2f}" y1="24" x2="{x:.2f}" y2="{height - 24}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.2f}" y="{height - 10}" font-size="10" text-anchor="middle">'
                   f'{_tick(lo * 10 ** k)}</text>')
    for i, (label, value, color, measured) in enumerate(bars):
        y = 30 + i * row
        cls = ' class="measured"' if measured else ""
        text = _rate(value)
        if model_bytes:
            text += f", <= {value / model_bytes:,.1f} tok/s"
        w = x_of(value) - label_w
        out.append(f'<text x="{label_w - 6}" y="{y + 20}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect{cls} x="{label_w}" y="{y + 6}" width="{w:.2f}" height="22" fill="{color}"/>')
        out.append(f'<text{cls} x="{label_w + 4}" y="{y + 21}" fill="#000">{escape(text)}</text>')
    out.append("</svg>")
    return SVG("\n".join(out))
