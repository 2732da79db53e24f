// StreamView: header (status, tokens, live tok/s and TTFT, host and wafer), the code with changed lines marked,
// and at the end the unified diff, the guard's verdict and the stats. Renders from traits.
//
// Live cells: where spark-nb's JupyterLab extension has published `globalThis.sparkNbLiveCells`
// (labextension/src/index.ts), a view with `live_cell` set also writes the edit into the cell that holds it while
// it streams; the kernel ends that with a message: {cell: "accept", source}, {cell: "restore"}, or {cell: "show",
// source} (the finished edit, waiting for the user's Accept). Stop, Reject and
// Accept act on the cell here at once, then tell the kernel. Typing in the cell hands it back to the user: the
// stream is stopped and their text stays.

function text(tag, cls, content) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (content !== undefined) n.textContent = content;
  return n;
}

function rate(v) {
  return v >= 1e4 ? `${(v / 1e3).toFixed(0)}k` : v.toFixed(v >= 100 ? 0 : 1);
}

function liveCells(model, el) {
  const bridge = globalThis.sparkNbLiveCells;
  model.send({ event: "frontend", live_cells: !!bridge });
  let cell = null; // the extension's handle while this view owns its cell's source
  let handedBack = false; // the user typed during this stream
  const own = () => {
    if (!cell && !handedBack && bridge && model.get("live_cell")) {
      cell = bridge.bind(el, () => { cell = null; handedBack = true; model.send({ event: "typed" }); });
    }
    return cell;
  };
  return {
    streaming(code) { own()?.show(code); },
    restart() { handedBack = false; },
    accept(source) { own()?.accept(source); cell = null; },
    restore() { cell?.restore(); cell = null; },
  };
}

function render({ model, el }) {
  el.classList.add("spark-view");
  const cell = liveCells(model, el);
  const head = text("div", "spark-head");
  const title = text("span", "spark-title");
  const status = text("span", "spark-status");
  const host = text("span", "spark-metric spark-host");
  const wafer = text("span", "spark-metric spark-wafer");
  head.append(status, title, host, wafer);
  // Stop and Redirect: shown while streaming where the kernel handles them during the stream (`controls`).
  const controls = text("div", "spark-controls");
  const stop = text("button", "spark-stop", "Stop");
  const redirect = document.createElement("input");
  redirect.className = "spark-redirect";
  redirect.placeholder = "redirect: a new instruction, then Enter";
  const go = text("button", "spark-redirect-go", "Redirect");
  controls.append(stop, redirect, go);
  stop.addEventListener("click", () => { cell.restore(); model.send({ event: "stop" }); });
  function sendRedirect() {
    const instruction = redirect.value.trim();
    if (!instruction) return;
    model.send({ event: "redirect", instruction });
    redirect.value = "";
  }
  go.addEventListener("click", sendRedirect);
  redirect.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); sendRedirect(); } });
  // Accept / Reject / Retry: shown at the end where the user decides (the panel, `decide`).
  const decision = text("div", "spark-controls spark-decision");
  const accept = text("button", "spark-accept", "Accept");
  const force = text("button", "spark-force", "Accept anyway");
  force.title = "The result does not parse: accept it all the same";
  const reject = text("button", "spark-reject", "Reject");
  const retry = text("button", "spark-retry", "Retry");
  retry.title = "Another attempt at the same instruction, sampled (temperature 0.7)";
  decision.append(accept, force, reject, retry);
  function decide(forced) {
    const source = model.get("code");
    cell.accept(source);
    model.send({ event: "accept", source, forced });
  }
  accept.addEventListener("click", () => decide(false));
  force.addEventListener("click", () => decide(true));
  reject.addEventListener("click", () => { cell.restore(); model.send({ event: "reject" }); });
  retry.addEventListener("click", () => { cell.restore(); model.send({ event: "retry" }); });
  const code = text("pre", "spark-code");
  const diff = text("pre", "spark-diff");
  const verdict = text("div", "spark-verdict");
  const summary = text("div", "spark-summary");
  el.append(head, controls, decision, code, verdict, diff, summary);

  function drawHead() {
    const s = model.get("status");
    status.textContent = s;
    status.dataset.status = s;
    title.textContent = model.get("instruction");
    const ttft = model.get("ttft_s"), wttft = model.get("wafer_ttft_s");
    host.textContent = `host (measured): ${rate(model.get("tok_per_s"))} tok/s · TTFT ${(ttft * 1e3).toFixed(1)} ms`
      + ` · ${model.get("tokens")} tok`;
    wafer.textContent = `wafer (projected): ${rate(model.get("wafer_tok_per_s"))} tok/s · TTFT `
      + `${(wttft * 1e3).toFixed(3)} ms`;
    // speeds only for a model that generates or has generated: an exact refactor (a program, no tokens), a panel
    // not yet asked, a request that failed before its first token have none (the summary says what happened)
    const generating = model.get("tokens") > 0 || s === "waiting" || s === "streaming";
    host.style.display = generating ? "" : "none";
    // a remote server's model has no wafer projection (its time is measured only): no "wafer 0 tok/s" line
    const projected = wttft > 0 || model.get("wafer_tok_per_s") > 0 || s === "waiting";
    wafer.style.display = generating && projected ? "" : "none";
    controls.style.display = model.get("controls") && s === "streaming" ? "" : "none";
    const deciding = model.get("decide") && s === "done";
    decision.style.display = deciding ? "" : "none";
    accept.style.display = model.get("ok") ? "" : "none";
    force.style.display = !model.get("ok") && model.get("diff") ? "" : "none";
    retry.style.display = model.get("exact") ? "none" : "";  // a program's edit comes out the same every time
  }

  function drawCode() {
    const marks = model.get("marks") || [];
    const lines = model.get("code").split("\n");
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    code.replaceChildren(...lines.map((line, i) => {
      const row = text("div", "spark-line" + (marks[i] ? ` spark-${marks[i]}` : ""));
      row.append(text("span", "spark-gutter", marks[i] ? "~" : " "), text("span", "", line || " "));
      return row;
    }));
  }

  function drawEnd() {
    const d = model.get("diff");
    diff.replaceChildren(...d.split("\n").filter((l, i, a) => i < a.length - 1 || l).map((line) => {
      const kind = line.startsWith("+++") || line.startsWith("---") ? "file" : line.startsWith("@@") ? "hunk"
        : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "ctx";
      return text("div", `spark-d-${kind}`, line || " ");
    }));
    diff.style.display = d ? "" : "none";
    verdict.textContent = model.get("verdict");
    // green only where the guard could judge the meaning (or a program made the edit); amber: it parses, unchecked
    verdict.dataset.ok = !model.get("ok") ? "no" : model.get("checked") ? "yes" : "unchecked";
    verdict.style.display = model.get("verdict") ? "" : "none";
    summary.textContent = model.get("summary");
  }

  let lastStatus = model.get("status");
  function onStatus() {
    const s = model.get("status");
    if (s === "streaming" && lastStatus !== "streaming") cell.restart();
    lastStatus = s;
  }
  function onCode() {
    if (model.get("status") === "streaming") cell.streaming(model.get("code"));
  }
  function onMessage(msg) {
    if (msg.cell === "show") cell.streaming(msg.source);
    else if (msg.cell === "accept") cell.accept(msg.source);
    else if (msg.cell === "restore") cell.restore();
  }

  drawHead(); drawCode(); drawEnd();
  const events = [
    ["change:status", onStatus],
    ["change:code", onCode],
    ["msg:custom", onMessage],
    ["change:status change:controls change:decide change:ok change:diff change:exact change:instruction "
      + "change:tokens change:tok_per_s change:ttft_s change:wafer_tok_per_s change:wafer_ttft_s", drawHead],
    ["change:code change:marks", drawCode],
    ["change:diff change:verdict change:ok change:checked change:summary", drawEnd],
  ];
  for (const [names, fn] of events) for (const n of names.split(" ")) model.on(n, fn);
  return () => { for (const [names, fn] of events) for (const n of names.split(" ")) model.off(n, fn); };
}

export default { render };
