// A user running %%spark cells in JupyterLab: an edit applied, Stop and Redirect while streaming.
//   node lab.mjs URL NOTEBOOK SHOTS_DIR      (URL: the lab's base URL with ?token=...)
// Prints one JSON object: what each step saw (view statuses, verdicts, timings), then saves the notebook, whose
// cell sources tests/test_browser.py reads back from disk.
import { openNotebook } from "./jupyterlab.mjs";

const [url, notebook, shots] = process.argv.slice(2);
const out = { steps: {} };
const lab = await openNotebook(url, notebook);
const { page } = lab;

try {
  // 0: %load_ext spark_nb ; 1: a first edit, applied ; 2: a long edit, stopped ; 3: a long edit, redirected
  await lab.run(0);
  await page.waitForTimeout(1500);

  await lab.run(1);
  await lab.waitStatus(1, ["streaming", "done"]);
  await page.screenshot({ path: `${shots}/edit-streaming.png` });
  await lab.waitStatus(1, ["done", "error", "stopped", "cancelled"]);
  await page.waitForTimeout(1500); // set_next_input, where it is used, lands with the execute reply
  out.steps.edit = { status: await lab.status(1), verdict: await lab.cell(1).locator(".spark-verdict").innerText() };
  await lab.shot(`${shots}/edit-done.png`, 1);

  await lab.run(2);
  await lab.waitStatus(2, ["streaming"]);
  const shownBefore = await lab.cell(2).locator(".spark-code").innerText();
  const t0 = Date.now();
  await lab.cell(2).locator(".spark-stop").click();
  const final2 = await lab.waitStatus(2, ["stopped", "done", "error"]);
  const stopMs = Date.now() - t0;
  await page.waitForTimeout(1000);
  out.steps.stop = { status: final2, stop_ms: stopMs,
                     partial: await lab.cell(2).locator(".spark-code").innerText(), shown_before: shownBefore };
  await lab.shot(`${shots}/stopped.png`, 2);

  await lab.run(3);
  await lab.waitStatus(3, ["streaming"]);
  await lab.cell(3).locator(".spark-code", { hasText: "collected here" }).waitFor({ timeout: 60000 });
  await lab.cell(3).locator(".spark-redirect").fill("add type hints");
  await lab.cell(3).locator(".spark-redirect").press("Enter");
  const final3 = await lab.waitStatus(3, ["done", "stopped", "error"]);
  await page.waitForTimeout(1500);
  out.steps.redirect = { status: final3,
                         title: await lab.cell(3).locator(".spark-title").innerText(),
                         verdict: await lab.cell(3).locator(".spark-verdict").innerText() };
  await lab.shot(`${shots}/redirected.png`, 3);
  await page.screenshot({ path: `${shots}/notebook.png`, fullPage: true });
  await lab.save();
} catch (e) {
  out.error = String(e);
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
}
out.page_errors = lab.errors;
console.log(JSON.stringify(out));
await lab.close();
