// Inline completion in JupyterLab: ghost text from spark-nb's server extension while a user types.
//   node completion.mjs URL NOTEBOOK SHOTS_DIR [TRIALS] [PINGS]
// Prints one JSON object: whether the provider is registered, what streamed, the cancel frames, keystroke -> first
// ghost character over the WebSocket and over one HTTP request each (ms, per keystroke; with each request's clock:
// sent, first token, the engine's TTFT), keystroke -> the
// keystroke's own character in the editor with completion on and off, and the notifications a model that cannot
// load raises.
import { openNotebook } from "./jupyterlab.mjs";

const [url, notebook, shots, trialsArg, pingsArg] = process.argv.slice(2);
const trials = Number(trialsArg || 30);
const pingsN = Number(pingsArg || 200);
const out = { steps: {} };
const lab = await openNotebook(url, notebook);
const { page } = lab;

const frames = []; // what the page sends and receives on spark-nb's socket
page.on("websocket", (ws) => {
  if (!ws.url().includes("/spark-nb/socket")) return;
  ws.on("framesent", (f) => frames.push(["sent", Date.now(), JSON.parse(f.payload)]));
  ws.on("framereceived", (f) => frames.push(["received", Date.now(), JSON.parse(f.payload)]));
});

// In the page: the time of each keydown, of the editor's change that follows it, and of the first ghost character
// streamed after it.
async function instrument() {
  await page.evaluate(() => {
    const w = window;
    w.__keys = [];
    document.addEventListener("keydown", () => w.__keys.push({ key: performance.now(), echo: null, ghost: null }),
                              true);
    const latest = () => w.__keys[w.__keys.length - 1];
    new MutationObserver(() => {
      const k = latest();
      if (!k || k.ghost !== null) return;
      // A streamed token's span: only a stream update makes one (not the old suggestion, re-shown as typed over)
      for (const g of document.querySelectorAll(".jp-GhostText-streamedToken")) {
        if (g.textContent) {
          k.ghost = performance.now() - k.key;
          w.__ghostText = g.closest(".jp-GhostText")?.textContent;
          return;
        }
      }
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

// Where a request's time goes (the websocket and http latency steps): per request the provider was asked, in page
// ms; the first token's message reached the provider (its channel's push: the socket's message event, or the POST's
// body read); its done message (the server's wall-clock arrival time, set on the page's clock with timeOrigin, and
// its first token out). Beside them, what the main thread did meanwhile: when a task posted right after the send
// ran, when the next frame began (requestAnimationFrame) and when a task posted from it ran (the frame rendered);
// long tasks (over 50 ms) are counted.
async function traceProvider() {
  await page.evaluate(() => {
    const w = window;
    const provider = w.sparkNbCompletion;
    const fetch = provider.fetch.bind(provider);
    w.__trace = [];
    w.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: "longtask" });
    provider.fetch = (request, context) => {
      const t = { key: w.__keys[w.__keys.length - 1]?.key ?? null, asked: performance.now(), push: null, done: null,
                  task: null, frame: null, rendered: null };
      const reply = fetch(request, context); // with no debounce the request has gone out when this returns
      const after = (f) => { const c = new MessageChannel(); c.port1.onmessage = f; c.port2.postMessage(0); };
      after(() => (t.task = performance.now()));
      requestAnimationFrame(() => {
        t.frame = performance.now();
        after(() => (t.rendered = performance.now()));
      });
      const channel = provider._channels.get(String(provider._latest));
      if (channel) {
        t.id = provider._latest;
        const push = channel.push.bind(channel);
        channel.push = (msg) => {
          if (msg.type === "token" && t.push === null) t.push = performance.now();
          if (msg.type === "done") t.done = msg;
          push(msg);
        };
        w.__trace.push(t);
      }
      return reply;
    };
  });
}

// A transport's own round trip, on an idle page, no model and no keystroke: a ping on the provider's open socket
// against a POST to /spark-nb/ping (fetch, as the HTTP transport sends: a kept-alive connection reused),
// interleaved; then the same POST answered with `Connection: close` (the browser opens a new connection for the
// next one; not interleaved: it would close the connection the kept-alive POSTs reuse).
async function pings(n) {
  return page.evaluate(async (n) => {
    const socket = window.sparkNbCompletion._socket._socket;
    const s = window.jupyterapp.serviceManager.serverSettings;
    const url = `${s.baseUrl}spark-nb/ping`;
    const headers = { Authorization: `token ${s.token}` };
    let pong = null;
    socket.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "pong") pong?.(msg);
    });
    const ws = (id) => new Promise((resolve) => {
      pong = resolve;
      socket.send(JSON.stringify({ type: "ping", id }));
    });
    const post = (query) => fetch(url + query, { method: "POST", headers }).then((r) => r.json());
    const out = { websocket: [], http: [], http_new_connection: [],
                  ports: { http: new Set(), http_new_connection: new Set() } };
    for (let i = 0; i < n; i++) {
      let t = performance.now();
      await ws(`ping-${i}`);
      out.websocket.push(performance.now() - t);
      t = performance.now();
      out.ports.http.add((await post("")).port);
      out.http.push(performance.now() - t);
    }
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      out.ports.http_new_connection.add((await post("?close=1")).port);
      out.http_new_connection.push(performance.now() - t);
    }
    out.connections = { http: out.ports.http.size, http_new_connection: out.ports.http_new_connection.size };
    delete out.ports;
    return out;
  }, n);
}

async function watchEcho(i) {
  await page.evaluate((i) => {
    const shared = window.jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel;
    shared.changed.connect((_, change) => {
      const k = window.__keys[window.__keys.length - 1];
      if (change.sourceChange && k && k.echo === null) k.echo = performance.now() - k.key;
    });
  }, i);
}

const settings = (values) => page.evaluate((v) => Object.assign(window.sparkNbCompletion.settings, v), values);
const keys = () => page.evaluate(() => window.__keys.splice(0));

// Type one key at a time (a character, then Backspace, ...), each given `settle` ms for its ghost text to appear.
async function typeKeys(n, settle = 400) {
  for (let t = 0; t < n; t++) {
    await page.keyboard.press(t % 2 === 0 ? "f" : "Backspace");
    const end = Date.now() + settle;
    while (Date.now() < end) {
      const k = await page.evaluate(() => window.__keys[window.__keys.length - 1]);
      if (k && k.ghost !== null) break;
      await page.waitForTimeout(5);
    }
    await page.waitForTimeout(120); // the stream finishes; a user's pause
  }
  return keys();
}

try {
  out.registered = await page.evaluate(() => ({
    plugin: window.jupyterapp.isPluginActivated("spark-nb:inline-completion"),
    provider: !!window.sparkNbCompletion && window.sparkNbCompletion.identifier,
  }));
  await instrument();
  await traceProvider();
  await watchEcho(1);
  await lab.focusEditor(1);

  // Warm: the first request loads the built-in model on the server (the socket opens, the engine loads).
  await page.keyboard.press("f");
  await page.locator(".jp-GhostText").first().waitFor({ timeout: 120000 });
  await page.waitForTimeout(500);
  await page.keyboard.press("Backspace");
  await page.waitForTimeout(800);
  await keys();
  frames.length = 0;

  // Streams: one keystroke, then every frame until its done.
  await page.keyboard.press("f");
  const lastRequest = () => frames.filter(([d, , m]) => d === "sent" && m.type === "request").pop()?.[2];
  for (let end = Date.now() + 15000; Date.now() < end; ) { // until the latest request's done (a loaded machine)
    const id = lastRequest()?.id;
    if (id !== undefined && frames.some(([d, , m]) => d === "received" && m.type === "done" && m.id === id)) break;
    await page.waitForTimeout(50);
  }
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/completion-ghost.png` });
  const shownText = await page.evaluate(() => window.__ghostText);
  const last = lastRequest();
  out.steps.stream = {
    request: last,
    tokens: frames.filter(([d, , m]) => d === "received" && m.type === "token" && m.id === last?.id).length,
    done: frames.find(([d, , m]) => d === "received" && m.type === "done" && m.id === last?.id)?.[2] ?? null,
    shown: shownText,
  };

  // Accept a word of it (Alt+ArrowRight, spark-nb's accept-word), then put the cell back as it was.
  const before = await lab.source(1);
  await page.keyboard.press("Alt+ArrowRight");
  await page.waitForTimeout(300);
  out.steps.word = { before, after: await lab.source(1), ghost: shownText };
  await page.evaluate((src) => window.jupyterapp.shell.currentWidget.content.widgets[1].model.sharedModel
    .setSource(src), before);
  await lab.focusEditor(1);
  await page.waitForTimeout(800);

  await page.keyboard.press("Backspace");
  await page.waitForTimeout(500);
  await keys();

  // Cancel on typing: two keystrokes 5 ms apart; the first one's request is cancelled when the second comes.
  frames.length = 0;
  await page.keyboard.type("ff", { delay: 5 });
  await page.waitForTimeout(1000);
  out.steps.cancel = { frames: frames.map(([d, t, m]) => [d, t, m.type, m.id, m.reason ?? null]) };
  await page.keyboard.press("Backspace");
  await page.keyboard.press("Backspace");
  await page.waitForTimeout(500);
  await keys();

  // Latency: keystroke -> first ghost character, over the socket, then over one POST each.
  out.steps.latency = {};
  for (const transport of ["websocket", "http"]) {
    await settings({ transport });
    await typeKeys(2); // the first POST opens its connection
    await page.evaluate(() => window.sparkNbCompletion.recent.splice(0));
    out.steps.latency[transport] = await typeKeys(trials);
    out.steps.latency[`${transport}_requests`] = await page.evaluate(() => window.sparkNbCompletion.recent.splice(0));
  }
  await settings({ transport: "websocket" });
  out.steps.latency.trace = await page.evaluate(() => ({
    requests: window.__trace.splice(0), long_tasks: window.__longTasks.splice(0), time_origin: performance.timeOrigin,
  }));
  await page.waitForTimeout(500);
  out.steps.ping = await pings(pingsN);

  // Typing with completion off: the keystroke's own character reaches the editor as fast as with it on.
  await settings({ enabled: false });
  out.steps.latency.off = await typeKeys(trials, 60);
  await settings({ enabled: true });

  // The debounce: a burst of 6 keys 90 ms apart (a quick typist), at each setting: requests sent during the burst
  // (each cancels the one before) and the last key -> its first ghost character.
  out.steps.debounce = [];
  for (const debounce of [0, 50, 100, 200]) {
    await settings({ debounce });
    await keys();
    frames.length = 0;
    await page.keyboard.type("ffffff", { delay: 90 });
    await page.waitForTimeout(1200);
    const typed = await keys();
    const sent = frames.filter(([d, , m]) => d === "sent" && m.type === "request").length;
    out.steps.debounce.push({ debounce, keys: typed.length, requests: sent, ghost: typed[typed.length - 1]?.ghost });
    for (let t = 0; t < 6; t++) await page.keyboard.press("Backspace");
    await page.waitForTimeout(800);
  }
  await settings({ debounce: 0 });
  await keys();

  // A model that cannot load: one clear message, however many keystrokes ask for it.
  await settings({ model: "/nonexistent/spark-nb-model" });
  for (let t = 0; t < 3; t++) {
    await page.keyboard.press(t % 2 === 0 ? "f" : "Backspace");
    await page.waitForTimeout(600);
  }
  await page.waitForTimeout(1000);
  out.steps.failed = {
    toasts: await page.locator(".Toastify__toast", { hasText: "could not load" }).allInnerTexts(),
  };
  await page.screenshot({ path: `${shots}/completion-error.png` });
  await settings({ model: "" });
} catch (e) {
  out.error = String(e);
  await page.screenshot({ path: `${shots}/completion-failure.png`, fullPage: true }).catch(() => {});
}
out.page_errors = lab.errors;
console.log(JSON.stringify(out));
await lab.close();
