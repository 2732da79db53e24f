// RefactorControls: the top of the refactor panel. A button per edit family (presets), a free-text instruction,
// model and wafer pickers. Sends {event: "run", instruction, source}: source is what the owning cell holds now
// (read through spark-nb's JupyterLab extension) when the panel is bound to a cell, so an edit always starts from
// the cell as it is.

function node(tag, cls, content) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (content !== undefined) n.textContent = content;
  return n;
}

function picker(model, name, options) {
  const select = node("select", `spark-pick spark-pick-${name}`);
  const fill = () => {
    select.replaceChildren(...model.get(options).map((v) => {
      const o = node("option", "", v);
      o.value = v;
      return o;
    }));
    select.value = model.get(name);
  };
  select.addEventListener("change", () => { model.set(name, select.value); model.save_changes(); });
  fill();
  return [select, fill];
}

function render({ model, el }) {
  el.classList.add("spark-panel");
  const head = node("div", "spark-head");
  const title = node("span", "spark-title", "spark-nb refactor");
  const [models, fillModels] = picker(model, "model", "models");
  const [wafers, fillWafers] = picker(model, "wafer", "wafers");
  head.append(title, node("span", "spark-label-text", "model"), models, node("span", "spark-label-text", "wafer"),
    wafers);
  const presets = node("div", "spark-presets");
  const ask = node("div", "spark-controls");
  const instruction = document.createElement("input");
  instruction.className = "spark-instruction";
  instruction.placeholder = "an instruction, e.g. add docstrings; then Enter";
  const go = node("button", "spark-run", "Edit");
  ask.append(instruction, go);
  const note = node("div", "spark-note");
  el.append(head, presets, ask, note);

  function run(text) {
    const bridge = globalThis.sparkNbLiveCells;
    const source = model.get("bound") && bridge ? bridge.source(el) : null;
    model.send({ event: "run", instruction: text, source });
  }
  go.addEventListener("click", () => run(instruction.value));
  instruction.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); run(instruction.value); } });

  function drawPresets() {
    presets.replaceChildren(...model.get("presets").map(([label, text, kind]) => {
      const b = node("button", "spark-preset", label);
      b.title = text;
      b.dataset.family = label;
      b.addEventListener("click", () => {
        if (kind === "fill") { instruction.value = text; instruction.focus(); } else run(text);
      });
      return b;
    }));
    drawBusy();
  }
  function drawBusy() {
    const busy = model.get("busy");
    for (const b of [...presets.children, go]) b.disabled = busy;
    el.dataset.busy = busy ? "yes" : "no";
  }
  function drawNote() {
    note.textContent = model.get("note");
    note.style.display = model.get("note") ? "" : "none";
  }

  drawPresets(); drawNote();
  const events = [
    ["change:presets", drawPresets], ["change:busy", drawBusy], ["change:note", drawNote],
    ["change:models change:model", fillModels], ["change:wafers change:wafer", fillWafers],
  ];
  for (const [names, fn] of events) for (const n of names.split(" ")) model.on(n, fn);
  return () => { for (const [names, fn] of events) for (const n of names.split(" ")) model.off(n, fn); };
}

export default { render };
