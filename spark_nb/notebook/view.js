// StreamView: header (status, tokens, live tok/s and TTFT, host and wafer), the code with changed lines marked,
// and at the end the unified diff, the guard's verdict and the stats. Renders from traits only.

function text(tag, cls, content) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (content !== undefined) n.textContent = content;
  return n;
}

function rate(v) {
  return v >= 1e4 ? `${(v / 1e3).toFixed(0)}k` : v.toFixed(v >= 100 ? 0 : 1);
}

function render({ model, el }) {
  el.classList.add("spark-view");
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
  stop.addEventListener("click", () => model.send({ event: "stop" }));
  function sendRedirect() {
    const instruction = redirect.value.trim();
    if (!instruction) return;
    model.send({ event: "redirect", instruction });
    redirect.value = "";
  }
  go.addEventListener("click", sendRedirect);
  redirect.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); sendRedirect(); } });
  const code = text("pre", "spark-code");
  const diff = text("pre", "spark-diff");
  const verdict = text("div", "spark-verdict");
  const summary = text("div", "spark-summary");
  el.append(head, controls, code, verdict, diff, summary);

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
    controls.style.display = model.get("controls") && s === "streaming" ? "" : "none";
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
    verdict.dataset.ok = model.get("ok") ? "yes" : "no";
    verdict.style.display = model.get("verdict") ? "" : "none";
    summary.textContent = model.get("summary");
  }

  drawHead(); drawCode(); drawEnd();
  const events = [
    ["change:status change:controls change:instruction change:tokens change:tok_per_s change:ttft_s change:wafer_tok_per_s "
      + "change:wafer_ttft_s", drawHead],
    ["change:code change:marks", drawCode],
    ["change:diff change:verdict change:ok change:summary", drawEnd],
  ];
  for (const [names, fn] of events) for (const n of names.split(" ")) model.on(n, fn);
  return () => { for (const [names, fn] of events) for (const n of names.split(" ")) model.off(n, fn); };
}

export default { render };
