// JupyterLab in headless Debian Chromium (playwright-core), for the browser tests: open a notebook, run cells,
// read a view's status, read and watch a cell's source through the app (the server runs with
// --expose-app-in-browser, so `window.jupyterapp` is there).
import { chromium } from "playwright-core";

export async function openNotebook(url, notebook) {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("dialog", (d) => d.accept()); // "leave the page?" on reload: yes
  const base = url.split("?")[0].replace(/\/$/, "");
  const token = new URL(url).searchParams.get("token");
  const workspace = notebook.replace(/\W/g, "-"); // one per notebook: no tab from another test comes back
  await page.goto(`${base}/lab/workspaces/${workspace}/tree/${notebook}?token=${token}`);
  await page.waitForSelector(".jp-Notebook .jp-Cell", { timeout: 120000 });
  await page.waitForTimeout(3000); // the kernel connects
  return new Lab(browser, page, errors);
}

class Lab {
  constructor(browser, page, errors) {
    this.browser = browser;
    this.page = page;
    this.errors = errors;
  }

  cell(i) { return this.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(i); }

  status(i) {
    return this.cell(i).locator(".spark-status").first().getAttribute("data-status").catch(() => null);
  }

  async run(i) { // select cell i, then Shift+Enter as a user would
    await this.page.evaluate((i) => {
      const notebook = window.jupyterapp.shell.currentWidget.content;
      notebook.activeCellIndex = i;
      notebook.mode = "command";
      notebook.node.focus();
    }, i);
    await this.page.keyboard.press("Shift+Enter");
  }

  async waitStatus(i, wanted, timeout = 180000) {
    const end = Date.now() + timeout;
    while (Date.now() < end) {
      const s = await this.status(i);
      if (wanted.includes(s)) return s;
      await this.page.waitForTimeout(20);
    }
    throw new Error(`cell ${i}: status never became ${wanted} (last: ${await this.status(i)})`);
  }

  async shot(path, i) { // the cell's spark output in the viewport, as a user sees it
    if (i !== undefined) await this.cell(i).locator(".spark-view").first().scrollIntoViewIfNeeded();
    await this.page.screenshot({ path });
  }

  source(i) {
    return this.page.evaluate((i) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel
      .getSource(), i);
  }

  // Put the keyboard in cell i's editor (at the end of its text), as a click would, without aiming at a spot that a
  // growing output may have moved.
  focusEditor(i) {
    return this.page.evaluate((i) => {
      const notebook = window.jupyterapp.shell.currentWidget.content;
      notebook.activeCellIndex = i;
      notebook.mode = "edit";
      const editor = notebook.widgets[i].editor;
      editor.focus();
      editor.setCursorPosition(editor.getPositionAt(editor.model.sharedModel.getSource().length));
    }, i);
  }

  // Record every change of cell i's source from now on: [[ms, source], ...] via takeChanges(i).
  watch(i) {
    return this.page.evaluate((i) => {
      const shared = window.jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel;
      window.__sparkChanges = window.__sparkChanges || {};
      window.__sparkChanges[i] = [];
      if (!shared.__sparkWatched) {
        shared.__sparkWatched = true;
        shared.changed.connect((_, change) => {
          if (change.sourceChange) window.__sparkChanges[i]?.push([performance.now(), shared.getSource()]);
        });
      }
    }, i);
  }

  takeChanges(i) {
    return this.page.evaluate((i) => { const c = window.__sparkChanges[i]; window.__sparkChanges[i] = []; return c; }, i);
  }

  // Click `selector` inside cell i from the page itself and return the page time of the click (for latencies).
  click(i, selector) {
    return this.page.evaluate(([i, selector]) => {
      const node = window.jupyterapp.shell.currentWidget.content.widgets[i].node.querySelector(selector);
      const t = performance.now();
      node.click();
      return t;
    }, [i, selector]);
  }

  async save() {
    await this.page.keyboard.press("Escape");
    await this.page.keyboard.press("Control+s");
    await this.page.waitForTimeout(2000);
  }

  close() { return this.browser.close(); }
}
