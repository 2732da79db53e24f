// RefactorControls: the top of the refactor panel. A button per edit family (presets), a free-text instruction,
// model and wafer pickers, and the "model only" toggle. Sends {event: "run", instruction, source}: source is what
// the owning cell holds now (read through spark-nb's JupyterLab extension) when the panel is bound to a cell, so an
// edit always starts from the cell as it is. A preset a program does exactly carries an "exact" badge, unless
// "model only" is on (then the model makes every edit).

const EXACT = "exact: a program makes this edit, instantly (no model)";
const MODEL = "model: the model writes this edit, the guard checks it";

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
  const only = document.createElement("input");
  only.type = "checkbox";
  only.className = "spark-model-only";
  const toggle = node("label", "spark-toggle");
  toggle.title = "Send every request to the model, even the refactors a program does exactly (renames, imports, " +
    "debug prints, comments, f-strings, logging)";
  toggle.append(only, " model only");
  only.addEventListener("change", () => { model.set("model_only", only.checked); model.save_changes(); });
  head.append(title, node("span", "spark-label-text", "model"), models, node("span", "spark-label-text", "wafer"),
    wafers, toggle);
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
    only.checked = model.get("model_only");
    const exactly = (how) => how === "exact" && !only.checked;
    const buttons = model.get("presets").map(([label, text, kind, how]) => {
      const b = node("button", "spark-preset", label);
      b.dataset.family = label;
      b.dataset.how = exactly(how) ? "exact" : "model";
      if (exactly(how)) b.append(node("span", "spark-badge", "exact"));
      const fill = kind === "fill" ? "\n(fill in the names, then Enter)" : "";
      b.title = `${text}${fill}\n${exactly(how) ? EXACT : MODEL}`;
      b.addEventListener("click", () => {
        if (kind === "fill") { instruction.value = text; instruction.focus(); } else run(text);
      });
      return b;
    });
    const legend = node("span", "spark-legend",
      only.checked ? "model only: the model makes every edit"
        : buttons.some((b) => b.dataset.how === "exact") ? "exact: by a program, instantly · others: by the model" : "");
    presets.replaceChildren(...buttons, legend);
    drawBusy();
  }
  function drawBusy() {
    const busy = model.get("busy");
    for (const b of [...presets.querySelectorAll("button"), go]) b.disabled = busy;
    el.dataset.busy = busy ? "yes" : "no";
  }
  function drawNote() {
    note.textContent = model.get("note");
    note.style.display = model.get("note") ? "" : "none";
  }

  drawPresets(); drawNote();
  const events = [
    ["change:presets change:model_only", drawPresets], ["change:busy", drawBusy], ["change:note", drawNote],
    ["change:models change:model", fillModels], ["change:wafers change:wafer", fillWafers],
  ];
  for (const [names, fn] of events) for (const n of names.split(" ")) model.on(n, fn);
  return () => { for (const [names, fn] of events) for (const n of names.split(" ")) model.off(n, fn); };
}

export default { render };
