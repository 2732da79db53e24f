// The README's picture of the refactor panel: a preset's edit from the built-in model, waiting for Accept.
//   node readme-shot.mjs URL NOTEBOOK OUT.png     (NOTEBOOK: `%load_ext spark_nb`, then `%%spark --panel` over code)
import { openNotebook } from "./jupyterlab.mjs";

const [url, notebook, png] = process.argv.slice(2);
const lab = await openNotebook(url, notebook);
await lab.run(0);
await lab.page.waitForTimeout(1500);
await lab.run(1);
await lab.cell(1).locator(".spark-preset[data-family='add docstrings']").click({ timeout: 60000 }); // compiles
await lab.waitStatus(1, ["done", "error"]);
await lab.cell(1).locator(".spark-reject").click();
await lab.waitStatus(1, ["rejected"]);
await lab.cell(1).locator(".spark-preset[data-family='add docstrings']").click();
await lab.waitStatus(1, ["done", "error"]);
await lab.page.waitForTimeout(500);
const box = await lab.cell(1).boundingBox();
await lab.page.screenshot({ path: png, clip: { x: box.x, y: box.y, width: box.width, height: Math.min(box.height, 700) } });
await lab.close();
