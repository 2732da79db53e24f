// The refactor panel and live in-cell edits in JupyterLab, with spark-nb's extension:
//   node panel.mjs URL NOTEBOOK SHOTS_DIR
// Cell 1 is `%%spark --panel --model slow` over some code, cell 2 `%%spark --model slow add comments` over the same
// code (tests/slow_engine.py, a few ms a token). Prints one JSON object: for each step the cell's source as it
// changed (page time in ms, source), the click times, and what the view said; tests/test_browser.py judges them.
import { openNotebook } from "./jupyterlab.mjs";

const [url, notebook, shots] = process.argv.slice(2);
const out = { steps: {} };
const lab = await openNotebook(url, notebook);
const { page } = lab;
const PRESET = ".spark-preset[data-family='add comments']";

async function sourceBecomes(i, wanted, timeout = 10000) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    if ((await lab.source(i)) === wanted) return true;
    await page.waitForTimeout(10);
  }
  return false;
}

async function changesWhileStreaming(i, atLeast) { // wait until the cell has changed `atLeast` times
  const end = Date.now() + 60000;
  while (Date.now() < end) {
    const n = await page.evaluate((i) => window.__sparkChanges[i].length, i);
    if (n >= atLeast) return n;
    await page.waitForTimeout(10);
  }
  throw new Error(`cell ${i} did not change ${atLeast} times`);
}

try {
  await lab.run(0);
  await page.waitForTimeout(1500);
  await lab.run(1);
  await lab.cell(1).locator(PRESET).waitFor({ timeout: 60000 });
  const original = await lab.source(1);
  out.original = original;

  // A: a preset streams into the cell; Accept keeps it as one change; Ctrl+Z brings the original back
  await lab.watch(1);
  await lab.click(1, PRESET);
  await lab.waitStatus(1, ["streaming"]);
  await changesWhileStreaming(1, 5);
  await lab.shot(`${shots}/panel-streaming.png`, 1);
  await lab.waitStatus(1, ["done", "stopped", "error"]);
  const streamed = await lab.takeChanges(1);
  const done = await lab.source(1);
  await lab.shot(`${shots}/panel-done.png`, 1);
  const acceptAt = await lab.click(1, ".spark-accept");
  await lab.waitStatus(1, ["accepted"]);
  const accepted = await lab.source(1);
  const acceptChanges = await lab.takeChanges(1);
  await lab.shot(`${shots}/panel-accepted.png`, 1);
  await lab.focusEditor(1);
  await page.keyboard.press("Control+z");
  const undone = await sourceBecomes(1, original);
  out.steps.accept = { streamed, done, accept_at: acceptAt, accept_changes: acceptChanges, accepted,
                       undo_restores: undone, verdict: await lab.cell(1).locator(".spark-verdict").innerText() };

  // B: Stop mid-stream puts the original back at once
  await page.keyboard.press("Escape");
  await lab.takeChanges(1);
  await lab.click(1, PRESET);
  await lab.waitStatus(1, ["streaming"]);
  await changesWhileStreaming(1, 3);
  const stopAt = await lab.click(1, ".spark-stop");
  const stopped = await sourceBecomes(1, original);
  await lab.waitStatus(1, ["stopped"]);
  await page.waitForTimeout(300);
  out.steps.stop = { stop_at: stopAt, changes: await lab.takeChanges(1), restored: stopped,
                     source: await lab.source(1) };
  await lab.shot(`${shots}/panel-stopped.png`, 1);

  // C: Reject after the stream puts the original back
  await lab.click(1, PRESET);
  await lab.waitStatus(1, ["done", "error"]);
  await lab.takeChanges(1);
  const rejectAt = await lab.click(1, ".spark-reject");
  const rejected = await sourceBecomes(1, original);
  out.steps.reject = { reject_at: rejectAt, changes: await lab.takeChanges(1), restored: rejected,
                       status: await lab.waitStatus(1, ["rejected"]) };

  // F: a notebook saved while its cell shows an edit nobody accepted opens with the original
  await lab.click(1, PRESET);
  await lab.waitStatus(1, ["done", "error"]);
  const shown = await lab.source(1);
  await lab.save();
  await page.reload();
  await page.waitForSelector(".jp-Notebook .jp-Cell", { timeout: 120000 });
  await page.waitForTimeout(3000);
  out.steps.reload = { shown, reopened: await lab.source(1) };
  await lab.watch(1);

  // D: typing in the cell while it streams stops the edit and keeps what the user typed
  await lab.click(1, PRESET);
  await lab.waitStatus(1, ["streaming"]);
  await changesWhileStreaming(1, 3);
  await lab.focusEditor(1);
  await page.keyboard.type("\n# mine");
  const typedStatus = await lab.waitStatus(1, ["stopped", "done"]);
  const typedSource = await lab.source(1);
  await page.waitForTimeout(500);
  out.steps.typed = { status: typedStatus, source: typedSource, later: await lab.source(1),
                      verdict: await lab.cell(1).locator(".spark-verdict").innerText() };
  await lab.shot(`${shots}/panel-typed.png`, 1);
  await page.keyboard.press("Escape");

  // E: %%spark streams into its cell and the result is applied; Ctrl+Z brings the original back
  const magicOriginal = await lab.source(2);
  await lab.watch(2);
  await lab.run(2);
  await lab.waitStatus(2, ["streaming"]);
  await changesWhileStreaming(2, 5);
  await lab.shot(`${shots}/magic-streaming.png`, 2);
  await lab.waitStatus(2, ["done", "stopped", "error"]);
  await page.waitForTimeout(1500);
  const magicApplied = await lab.source(2);
  const magicChanges = await lab.takeChanges(2);
  await lab.focusEditor(2);
  await page.keyboard.press("Control+z");
  const magicUndone = await sourceBecomes(2, magicOriginal);
  out.steps.magic = { original: magicOriginal, changes: magicChanges, applied: magicApplied, undo_restores: magicUndone,
                      verdict: await lab.cell(2).locator(".spark-verdict").innerText() };
  await lab.save();
} catch (e) {
  out.error = String(e);
  await page.screenshot({ path: `${shots}/panel-failure.png`, fullPage: true }).catch(() => {});
}
out.page_errors = lab.errors;
console.log(JSON.stringify(out));
await lab.close();
