// Run a notebook's cells in JupyterLab one after another, as a user pressing Shift+Enter on each and waiting for it,
// and report what each printed (bench/notebook_in_lab.py).
//   node run-cells.mjs URL NOTEBOOK SHOTS_DIR CELLS      (CELLS: indices, comma-separated, repeats allowed)
// Prints one JSON object: {cells: [{i, ms, text}], page_errors}; a screenshot per run, the cell in view.
import { openNotebook } from "./jupyterlab.mjs";

const [url, notebook, shots, cells] = process.argv.slice(2);
const out = { cells: [] };
const lab = await openNotebook(url, notebook);
const { page } = lab;
try {
  let k = 0;
  for (const i of cells.split(",").map(Number)) {
    const prompt = () => lab.cell(i).locator(".jp-InputPrompt").innerText();
    const before = await prompt();
    const t0 = Date.now();
    await lab.run(i);
    for (;;) { // done: a new execution count in the prompt (the notebook's counts are cleared beforehand)
      const now = await prompt();
      if (now !== before && /\[\d+\]/.test(now)) break;
      await page.waitForTimeout(50);
    }
    await page.waitForTimeout(500); // the outputs' last messages
    const text = await lab.cell(i).locator(".jp-OutputArea").innerText().catch((e) => String(e));
    out.cells.push({ i, ms: Date.now() - t0, text });
    await lab.cell(i).scrollIntoViewIfNeeded();
    await page.screenshot({ path: `${shots}/run-${k++}-cell${i}.png` });
  }
} catch (e) {
  out.error = String(e);
}
out.page_errors = lab.errors;
console.log(JSON.stringify(out));
await lab.close();
