// LiveChart: two hand-drawn SVG panels. Left: tok/s through the current stream (x: seconds), or, with no stream in
// flight, decode tok/s per request. Right: per request, TTFT (ms), with the share of speculative draft tokens
// accepted under each pair of bars. Host-measured (solid) and wafer-projected (dashed) side by side, log y axes.
const NS = "http://www.w3.org/2000/svg";
const HOST = "#d9480f", WAFER = "#1971c2";
const W = 340, H = 190, M = { l: 52, r: 10, t: 24, b: 34 };

function el(tag, attrs, parent, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  if (parent) parent.appendChild(n);
  return n;
}

function fmt(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v >= 1e7 ? 0 : 1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + "k";
  if (v >= 1) return v.toFixed(v >= 10 ? 0 : 1);
  return v.toPrecision(1);
}

// A panel with a linear x axis (ticks at 0, xmax/2, xmax when xticks) and a log y axis spanning every positive
// value given.
function panel(svg, x0, title, xlabel, ylabel, xmax, values, xticks = false) {
  const g = el("g", { transform: `translate(${x0},0)` }, svg);
  const pos = values.filter((v) => v > 0);
  let lo = Math.floor(Math.log10(pos.length ? Math.min(...pos) : 1));
  let hi = Math.ceil(Math.log10(pos.length ? Math.max(...pos) : 10));
  if (hi <= lo) hi = lo + 1;
  const iw = W - M.l - M.r, ih = H - M.t - M.b;
  const sx = (x) => M.l + (xmax > 0 ? (x / xmax) * iw : 0);
  const sy = (v) => M.t + ih - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * ih;
  el("text", { x: M.l, y: 14, class: "spark-chart-title" }, g, title);
  el("line", { x1: M.l, y1: M.t + ih, x2: M.l + iw, y2: M.t + ih, class: "spark-axis" }, g);
  el("line", { x1: M.l, y1: M.t, x2: M.l, y2: M.t + ih, class: "spark-axis" }, g);
  for (let e = lo; e <= hi; e++) {
    const y = sy(10 ** e);
    el("line", { x1: M.l, y1: y, x2: M.l + iw, y2: y, class: "spark-grid" }, g);
    el("text", { x: M.l - 4, y: y + 3, "text-anchor": "end", class: "spark-tick" }, g, fmt(10 ** e));
  }
  if (xticks) {
    for (const f of [0, 0.5, 1]) {
      el("text", { x: sx(f * xmax), y: M.t + ih + 12, "text-anchor": "middle", class: "spark-tick" }, g,
        (f * xmax).toFixed(xmax >= 10 ? 0 : xmax >= 1 ? 1 : 2));
    }
  }
  el("text", { x: M.l + iw / 2, y: H - 4, "text-anchor": "middle", class: "spark-label" }, g, xlabel);
  el("text", { x: 10, y: M.t + ih / 2, "text-anchor": "middle", class: "spark-label",
    transform: `rotate(-90 10 ${M.t + ih / 2})` }, g, ylabel);
  return { g, sx, sy, iw, ih };
}

function polyline(p, pts, color, dashed) {
  pts = pts.filter(([, y]) => y > 0);  // nothing to draw where there is no value (a remote model's wafer series)
  if (!pts.length) return;
  el("polyline", { points: pts.map(([x, y]) => `${p.sx(x).toFixed(1)},${p.sy(y).toFixed(1)}`).join(" "),
    fill: "none", stroke: color, "stroke-width": 1.8, "stroke-dasharray": dashed ? "5 3" : "" }, p.g);
  const [x, y] = pts[pts.length - 1];
  el("circle", { cx: p.sx(x), cy: p.sy(y), r: 2.5, fill: color }, p.g);
}

function legend(svg, x, y) {
  const g = el("g", { transform: `translate(${x},${y})` }, svg);
  el("line", { x1: 0, y1: 0, x2: 18, y2: 0, stroke: HOST, "stroke-width": 2 }, g);
  el("text", { x: 22, y: 4, class: "spark-tick" }, g, "host (measured)");
  el("line", { x1: 120, y1: 0, x2: 138, y2: 0, stroke: WAFER, "stroke-width": 2, "stroke-dasharray": "5 3" }, g);
  el("text", { x: 142, y: 4, class: "spark-tick" }, g, "wafer (projected)");
}

function draw(model, root) {
  const stream = model.get("stream") || [];
  const reqs = model.get("requests") || [];
  root.replaceChildren();
  const svg = el("svg", { width: 2 * W, height: H + 18, viewBox: `0 0 ${2 * W} ${H + 18}`, class: "spark-chart" });
  root.appendChild(svg);
  // Left: this request's stream while one runs; otherwise decode tok/s per request across the history.
  if (stream.length || !reqs.length) {
    const tmax = stream.length ? stream[stream.length - 1][0] : 1;
    const left = panel(svg, 0, "decode speed, this request", "time since request start (s)", "tok/s", tmax,
      stream.flatMap((p) => [p[1], p[2]]), stream.length > 0);
    polyline(left, stream.map((p) => [p[0], p[1]]), HOST, false);
    polyline(left, stream.map((p) => [p[0], p[2]]), WAFER, true);
    if (!stream.length) el("text", { x: M.l + 8, y: M.t + 20, class: "spark-tick" }, left.g, "waiting for tokens…");
  } else {
    const n = reqs.length;
    const left = panel(svg, 0, "decode speed, per request", "request (rolling history)", "tok/s", Math.max(n - 1, 1),
      reqs.flatMap((r) => [r.tok_per_s, r.wafer_tok_per_s]));
    polyline(left, reqs.map((r, i) => [i, r.tok_per_s]), HOST, false);
    polyline(left, reqs.map((r, i) => [i, r.wafer_tok_per_s]), WAFER, true);
  }
  // Right: TTFT per request, host and wafer bars side by side (ms, log), rolling history.
  const drafts = reqs.some((r) => r.drafted);  // the percentages under the bars need saying what they are
  const right = panel(svg, W, "time to first token, per request",
    drafts ? "request (under each: % of draft tokens accepted)" : "request (rolling history)", "TTFT (ms)",
    Math.max(reqs.length, 1), reqs.flatMap((r) => [r.ttft_ms, r.wafer_ttft_ms]));
  const bw = right.iw / Math.max(reqs.length, 1);
  reqs.forEach((r, i) => {
    const x = M.l + i * bw, base = M.t + right.ih, w = Math.max(bw / 2 - 2, 1);
    const bar = (v, dx, color, label) => {
      const y = right.sy(v);
      const b = el("rect", { x: x + dx, y, width: w, height: Math.max(base - y, 0.5), fill: color }, right.g);
      el("title", {}, b, `#${i + 1} ${r.label}: ${label} TTFT ${v.toPrecision(3)} ms; decode ${label === "host" ?
        fmt(r.tok_per_s) : fmt(r.wafer_tok_per_s)} tok/s`);
    };
    bar(r.ttft_ms, 1, HOST, "host");
    if (r.wafer_ttft_ms > 0) bar(r.wafer_ttft_ms, 1 + w + 1, WAFER, "wafer");  // none for a remote model
    if (r.drafted && bw >= 24) {  // speculative edits: the share of draft tokens accepted, under the bars
      el("text", { x: x + bw / 2, y: M.t + right.ih + 12, "text-anchor": "middle", class: "spark-tick" }, right.g,
        `${Math.round((100 * r.accepted) / r.drafted)}%`).appendChild(el("title", {}, null,
        `#${i + 1}: ${r.accepted} of ${r.drafted} draft tokens accepted`));
    }
  });
  if (!reqs.length) el("text", { x: M.l + 8, y: M.t + 20, class: "spark-tick" }, right.g, "no finished requests yet");
  legend(svg, M.l, H + 10);
}

function render({ model, el: root }) {
  root.classList.add("spark-charts");
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(model, root); });
  };
  draw(model, root);
  model.on("change:stream", redraw);
  model.on("change:requests", redraw);
  return () => { model.off("change:stream", redraw); model.off("change:requests", redraw); };
}

export default { render };
