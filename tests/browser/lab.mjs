// Drives JupyterLab in headless Debian Chromium (playwright-core): a user running %%spark cells.
//   node lab.mjs URL NOTEBOOK SHOTS_DIR      (URL: the lab's base URL with ?token=...)
// Prints one JSON object: what each step saw (view statuses, verdicts, timings), then saves the notebook, whose
// cell sources tests/test_browser.py reads back from disk (the editor renders only the lines in view).
import { chromium } from "playwright-core";

const [url, notebook, shots] = process.argv.slice(2);
const out = { steps: {} };
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));

const base = url.split("?")[0].replace(/\/$/, "");
const token = new URL(url).searchParams.get("token");
await page.goto(`${base}/lab/tree/${notebook}?token=${token}`);
await page.waitForSelector(".jp-Notebook .jp-Cell", { timeout: 120000 });
await page.waitForSelector(".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-Toolbar-kernelStatus", { timeout: 120000 }).catch(() => {});
await page.waitForTimeout(3000); // the kernel connects

const cells = () => page.locator(".jp-Notebook .jp-Cell");
const status = (i) => cells().nth(i).locator(".spark-status").first().getAttribute("data-status").catch(() => null);

async function shot(i, name) { // the cell's output view in the viewport, as a user sees it
  await cells().nth(i).locator(".spark-view").first().scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${shots}/${name}.png` });
}

async function run(i) {
  await cells().nth(i).locator(".cm-content").click();
  await page.keyboard.press("Escape");
  await page.keyboard.press("Shift+Enter");
}

async function waitStatus(i, wanted, timeout = 180000) {
  const end = Date.now() + timeout;
  while (Date.now() < end) {
    const s = await status(i);
    if (wanted.includes(s)) return s;
    await page.waitForTimeout(20);
  }
  throw new Error(`cell ${i}: status never became ${wanted} (last: ${await status(i)})`);
}

try {
  // 0: %load_ext spark_nb ; 1: a first edit, applied ; 2: a long edit, stopped ; 3: a long edit, redirected
  await run(0);
  await page.waitForTimeout(1500);

  await run(1);
  await waitStatus(1, ["streaming", "done"]);
  await page.screenshot({ path: `${shots}/edit-streaming.png` });
  await waitStatus(1, ["done", "error", "stopped", "cancelled"]);
  await page.waitForTimeout(1500); // set_next_input lands with the execute reply
  out.steps.edit = { status: await status(1),
                     verdict: await cells().nth(1).locator(".spark-verdict").innerText() };
  await shot(1, "edit-done");

  await run(2);
  await waitStatus(2, ["streaming"]);
  const shownBefore = await cells().nth(2).locator(".spark-code").innerText();
  const t0 = Date.now();
  await cells().nth(2).locator(".spark-stop").click();
  const final2 = await waitStatus(2, ["stopped", "done", "error"]);
  const stopMs = Date.now() - t0;
  await page.waitForTimeout(1000);
  out.steps.stop = { status: final2, stop_ms: stopMs,
                     partial: await cells().nth(2).locator(".spark-code").innerText(), shown_before: shownBefore };
  await shot(2, "stopped");

  await run(3);
  await waitStatus(3, ["streaming"]);
  await cells().nth(3).locator(".spark-code", { hasText: "collected here" }).waitFor({ timeout: 60000 });
  await cells().nth(3).locator(".spark-redirect").fill("add type hints");
  await cells().nth(3).locator(".spark-redirect").press("Enter");
  const final3 = await waitStatus(3, ["done", "stopped", "error"]);
  await page.waitForTimeout(1500);
  out.steps.redirect = { status: final3,
                         title: await cells().nth(3).locator(".spark-title").innerText(),
                         verdict: await cells().nth(3).locator(".spark-verdict").innerText() };
  await shot(3, "redirected");
  await page.screenshot({ path: `${shots}/notebook.png`, fullPage: true });
  await page.keyboard.press("Escape");
  await page.keyboard.press("Control+s");
  await page.waitForTimeout(2000);
} catch (e) {
  out.error = String(e);
  await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
}
out.page_errors = errors;
console.log(JSON.stringify(out));
await browser.close();
