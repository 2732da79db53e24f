// Inline completion (ghost text) from spark-nb's server extension (spark_nb/server): JupyterLab's inline completer
// asks this provider on every keystroke; the provider cancels the request in flight at once, waits the debounce,
// then asks the server for a completion of the cell (prefix and suffix around the cursor, earlier cells as
// context) and streams the tokens into the ghost text as the engine decodes them.
//
// Transport: one WebSocket per browser tab (spark-nb/socket), opened on the first request and kept open, or, for
// the latency comparison, one HTTP POST per request (spark-nb/complete, newline-delimited JSON read as it arrives).
// Both go through Jupyter's own authentication (ServerConnection: the login cookie, the XSRF header, the token).
//
// A model that cannot load answers each request with an error: the ghost text shows it, and a notification says
// it once (once per message, not per keystroke).

import { Notification } from '@jupyterlab/apputils';
import {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider
} from '@jupyterlab/completer';
import { URLExt } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';

/** The user's settings (schema/inline-completion.json). */
export interface ICompletionSettings {
  enabled: boolean;
  model: string; // '' : the built-in model; else a path or a name `spark-nb models` lists
  debounce: number; // ms after the last keystroke before a request goes out
  maxTokens: number;
  transport: 'websocket' | 'http';
  contextChars: number; // earlier cells kept (their end)
}

export const DEFAULTS: ICompletionSettings = {
  enabled: true,
  model: '',
  debounce: 0,
  maxTokens: 48,
  transport: 'websocket',
  contextChars: 2000
};

interface IRequest {
  id: number;
  prefix: string;
  suffix: string;
  context: string;
  max_tokens: number;
  model: string;
}

/** What the server sends for one request. */
type Message =
  | { type: 'token'; id: number; text: string }
  | { type: 'done'; id: number; reason: string; stats: unknown; server_first_token_ms?: number | null }
  | { type: 'error'; id: number; message: string };

/** The messages of one request, as an async iterable; `end()` stops it where it is (a cancel). */
class Channel {
  private _queue: Message[] = [];
  private _wake: (() => void) | null = null;
  private _ended = false;

  push(msg: Message): void {
    if (this._ended) return;
    this._queue.push(msg);
    if (msg.type !== 'token') this._ended = true;
    this._notify();
  }

  end(): void {
    this._ended = true;
    this._notify();
  }

  async *messages(): AsyncGenerator<Message> {
    for (;;) {
      while (this._queue.length) yield this._queue.shift()!;
      if (this._ended) return;
      await new Promise<void>(resolve => (this._wake = resolve));
    }
  }

  private _notify(): void {
    const wake = this._wake;
    this._wake = null;
    wake?.();
  }
}

interface ITransport {
  start(request: IRequest, channel: Channel): void;
  cancel(id: number): void;
}

/** One WebSocket for the tab, reopened when it closes; messages routed to their request by id. */
class SocketTransport implements ITransport {
  private _socket: WebSocket | null = null;
  private _open: Promise<WebSocket> | null = null;
  private _channels = new Map<number, Channel>();

  constructor(private readonly _settings: ServerConnection.ISettings) {}

  start(request: IRequest, channel: Channel): void {
    this._channels.set(request.id, channel);
    const payload = JSON.stringify({ type: 'request', ...request });
    const socket = this._socket;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(payload); // the common case: no await, no microtask between the keystroke and the send
      return;
    }
    this._connect().then(
      s => s.send(payload),
      () => channel.push({ type: 'error', id: request.id, message: 'spark-nb: the completion socket did not open' })
    );
  }

  cancel(id: number): void {
    this._channels.get(id)?.end();
    this._channels.delete(id);
    if (this._socket?.readyState === WebSocket.OPEN) this._socket.send(JSON.stringify({ type: 'cancel', id }));
  }

  private _connect(): Promise<WebSocket> {
    if (this._open) return this._open;
    const s = this._settings;
    let url = URLExt.join(s.wsUrl, 'spark-nb', 'socket');
    if (s.appendToken && s.token) url += `?token=${encodeURIComponent(s.token)}`;
    this._open = new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.onopen = () => {
        this._socket = socket;
        resolve(socket);
      };
      socket.onmessage = event => {
        const msg = JSON.parse(event.data) as Message;
        const channel = this._channels.get(msg.id);
        if (!channel) return; // a cancelled request's last words
        channel.push(msg);
        if (msg.type !== 'token') this._channels.delete(msg.id);
      };
      socket.onclose = () => {
        this._socket = null;
        this._open = null;
        for (const [id, channel] of this._channels) {
          channel.push({ type: 'error', id, message: 'spark-nb: the completion socket closed' });
        }
        this._channels.clear();
        reject(new Error('closed'));
      };
    });
    return this._open;
  }
}

/** One POST per request; aborting the request cancels it on the server. */
class HttpTransport implements ITransport {
  private _aborts = new Map<number, AbortController>();

  constructor(private readonly _settings: ServerConnection.ISettings) {}

  start(request: IRequest, channel: Channel): void {
    const abort = new AbortController();
    this._aborts.set(request.id, abort);
    const url = URLExt.join(this._settings.baseUrl, 'spark-nb', 'complete');
    const { id, ...body } = request;
    void (async () => {
      try {
        const reply = await ServerConnection.makeRequest(
          url, { method: 'POST', body: JSON.stringify(body), signal: abort.signal }, this._settings);
        if (!reply.ok || !reply.body) throw new Error(`HTTP ${reply.status}`);
        const reader = reply.body.getReader();
        const decoder = new TextDecoder();
        let buffered = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffered += decoder.decode(value, { stream: true });
          let newline;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            channel.push({ ...JSON.parse(buffered.slice(0, newline)), id });
            buffered = buffered.slice(newline + 1);
          }
        }
        channel.end();
      } catch (e) {
        if (!abort.signal.aborted) channel.push({ type: 'error', id, message: `spark-nb: ${e}` });
      } finally {
        this._aborts.delete(id);
      }
    })();
  }

  cancel(id: number): void {
    this._aborts.get(id)?.abort();
    this._aborts.delete(id);
  }
}

/** The next word of a suggestion (with the spaces before it), or a run of punctuation: what accept-word takes. */
export function nextWord(text: string): string {
  return /^\s*(\w+|[^\w\s]+)|^\s+/.exec(text)?.[0] ?? '';
}

/** The code of the cells above the active one, the end of it kept, IPython's magic and shell lines left out. */
export function earlierCells(widget: unknown, limit: number): string {
  if (!(widget instanceof NotebookPanel)) return '';
  const notebook = widget.content;
  const parts: string[] = [];
  for (const cell of notebook.widgets.slice(0, notebook.activeCellIndex)) {
    if (cell.model.type !== 'code') continue;
    const code = cell.model.sharedModel.getSource().split('\n')
      .filter(line => !/^\s*[%!]/.test(line)).join('\n').trim();
    if (code) parts.push(code);
  }
  return parts.join('\n\n').slice(-limit);
}

/** One request's clock, for the latency measurements (bench/completion_latency.py): page times in ms. */
export interface ITiming {
  id: number;
  transport: string;
  sent: number; // the request went out
  first: number | null; // its first token arrived
  ttft: number | null; // the engine's own time to first token (Stats.ttft_s), from its done message
  server: number | null; // the server's: the request's arrival -> its first token sent
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

export class SparkCompletionProvider implements IInlineCompletionProvider {
  readonly identifier = 'spark-nb';
  readonly name = 'spark-nb';
  // JupyterLab's own debounce for this provider stays 0: the provider debounces itself (settings.debounce), after
  // cancelling the request in flight, so a keystroke stops the engine at once instead of after the delay.
  readonly schema = { default: { debouncerDelay: 0, timeout: 15000 } };
  settings: ICompletionSettings = { ...DEFAULTS };
  readonly recent: ITiming[] = []; // the last 200 requests' clocks

  private _latest = 0;
  private _inFlight: { id: number; transport: ITransport } | null = null;
  private _channels = new Map<string, Channel>();
  private _said = new Set<string>(); // errors already notified
  private _socket: SocketTransport;
  private _http: HttpTransport;

  constructor(server: ServerConnection.ISettings = ServerConnection.makeSettings()) {
    this._socket = new SocketTransport(server);
    this._http = new HttpTransport(server);
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    const id = ++this._latest;
    this.cancel(); // every keystroke: the engine stops within one token
    const s = this.settings;
    if (!s.enabled) return { items: [] };
    if (s.debounce > 0) {
      await sleep(s.debounce);
      if (id !== this._latest) return { items: [] }; // typed again meanwhile
    }
    const transport = s.transport === 'http' ? this._http : this._socket;
    const channel = new Channel();
    this._channels.set(String(id), channel);
    this._inFlight = { id, transport };
    this.recent.push({ id, transport: s.transport, sent: performance.now(), first: null, ttft: null,
                       server: null });
    if (this.recent.length > 200) this.recent.shift();
    transport.start({
      id,
      prefix: request.text.slice(0, request.offset),
      suffix: request.text.slice(request.offset),
      context: earlierCells(context.widget, s.contextChars),
      max_tokens: s.maxTokens,
      model: s.model
    }, channel);
    return { items: [{ insertText: '', isIncomplete: true, token: String(id) }] };
  }

  async *stream(token: string): AsyncGenerator<{ response: IInlineCompletionItem }> {
    const channel = this._channels.get(token);
    this._channels.delete(token);
    if (!channel) return;
    const timing = this.recent.find(t => String(t.id) === token);
    let text = '';
    for await (const msg of channel.messages()) {
      if (msg.type === 'token') {
        if (timing && timing.first === null) timing.first = performance.now();
        text += msg.text;
        yield { response: { insertText: text, isIncomplete: true } };
      } else if (msg.type === 'done') {
        const stats = msg.stats as { ttft_s?: number } | null;
        if (timing && stats?.ttft_s !== undefined) timing.ttft = stats.ttft_s * 1000;
        if (timing) timing.server = msg.server_first_token_ms ?? null;
      } else if (msg.type === 'error') {
        this._say(msg.message);
        yield { response: { insertText: text, error: { message: msg.message } } };
      }
    }
  }

  /** Cancel the request in flight, if any. */
  cancel(): void {
    const current = this._inFlight;
    if (!current) return;
    this._inFlight = null;
    current.transport.cancel(current.id);
    this._channels.delete(String(current.id)); // a reply the completer dropped: its stream is never asked for
  }

  private _say(message: string): void {
    if (this._said.has(message)) return;
    this._said.add(message);
    Notification.error(message, { autoClose: false });
  }
}
