// spark-nb's JupyterLab / Notebook 7 extension: lets spark-nb's widgets write an edit into the cell that owns them,
// live, while it streams.
//
// A kernel can change a cell's source only through `set_next_input` at the end of an execution, and a widget view
// (anywidget) sees its own DOM node, not the notebook. So this extension publishes one small object on the page,
// `globalThis.sparkNbLiveCells`, which the views in spark_nb/notebook/view.js look up:
//
//   sparkNbLiveCells.source(el)                         // the source of the cell whose output holds el, or null
//   const cell = sparkNbLiveCells.bind(el, onUserEdit)  // that cell, to write into (null: el is not in a cell)
//   cell.show(source)     // while streaming: the cell shows the edit so far (not undoable: it is not a change yet)
//   cell.accept(source)   // the original back, then the result as one undoable change: Ctrl+Z restores the cell
//   cell.restore()        // the original, exactly (Reject, Stop)
//
// The original is the source when `bind` was called. Typing in the cell while an edit streams hands the cell back to
// the user: `onUserEdit` runs once (the view stops the stream) and nothing more is written, so the user's text stays.
//
// While a cell shows an edit nobody has accepted, its metadata keeps the original (`spark_nb.original`), so an
// autosave in the meantime still holds it; a notebook that opens with that key (the tab closed mid-edit) gets its
// original back.

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Cell } from '@jupyterlab/cells';
import { CodeEditor } from '@jupyterlab/codeeditor';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { DEFAULTS, ICompletionSettings, nextWord, SparkCompletionProvider } from './completer';

/** What a view holds while it owns a cell's source. */
export interface ILiveCell {
  readonly original: string;
  show(source: string): void;
  accept(source: string): void;
  restore(): void;
}

export interface ILiveCells {
  readonly version: number;
  source(el: HTMLElement): string | null;
  bind(el: HTMLElement, onUserEdit: () => void): ILiveCell | null;
}

type SharedCell = Cell['model']['sharedModel'];
const KEY = 'spark_nb'; // cell metadata: {original} while the cell shows an edit not accepted yet

class LiveCell implements ILiveCell {
  readonly original: string;
  private _writing = false;
  private _done = false;

  constructor(
    private readonly _shared: SharedCell,
    private readonly _onUserEdit: () => void
  ) {
    this.original = _shared.getSource();
    _shared.changed.connect(this._changed, this);
  }

  show(source: string): void {
    if (this._done) return;
    if (this._shared.getMetadata(KEY) === undefined) {
      this._shared.transact(() => this._shared.setMetadata(KEY, { original: this.original }), false);
    }
    this._write(source, false);
  }

  accept(source: string): void {
    if (this._done) return;
    this._write(this.original, false);
    this._write(source, true);
    this._end();
  }

  restore(): void {
    if (this._done) return;
    this._write(this.original, false);
    this._end();
  }

  private _write(source: string, undoable: boolean): void {
    const current = this._shared.getSource();
    if (this._done || current === source) return;
    // Only the span that differs is replaced, so the cursor and selections elsewhere stay where they are.
    let start = 0;
    while (start < current.length && start < source.length && current[start] === source[start]) start++;
    let end = 0;
    while (end < current.length - start && end < source.length - start &&
           current[current.length - 1 - end] === source[source.length - 1 - end]) end++;
    this._writing = true;
    try {
      // Untracked transactions keep the stream out of the undo history; the one tracked change is the accept.
      this._shared.transact(
        () => this._shared.updateSource(start, current.length - end, source.slice(start, source.length - end)),
        undoable
      );
    } finally {
      this._writing = false;
    }
  }

  private _changed(_: SharedCell, change: { sourceChange?: unknown }): void {
    if (this._writing || this._done || !change.sourceChange) return;
    this._end(); // somebody else wrote: the cell is theirs now
    this._onUserEdit();
  }

  private _end(): void {
    this._done = true;
    this._shared.changed.disconnect(this._changed, this);
    forgetOriginal(this._shared);
  }
}

function forgetOriginal(shared: SharedCell): void {
  if (shared.getMetadata(KEY) !== undefined) shared.transact(() => shared.deleteMetadata(KEY), false);
}

/** A cell saved while it showed an edit nobody accepted gets its original back when the notebook opens. */
function restoreUnaccepted(panel: NotebookPanel): void {
  for (const cell of panel.content.widgets) {
    const shared = cell.model.sharedModel;
    const kept = shared.getMetadata(KEY) as { original?: unknown } | undefined;
    if (kept && typeof kept.original === 'string') {
      const original = kept.original;
      shared.transact(() => shared.setSource(original), false);
    }
    forgetOriginal(shared);
  }
}

function owningCell(tracker: INotebookTracker, el: HTMLElement): Cell | null {
  let found: Cell | null = null;
  tracker.forEach(panel => {
    for (const cell of panel.content.widgets) {
      if (!found && cell.node.contains(el)) found = cell;
    }
  });
  return found;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'spark-nb:live-cells',
  description: 'Streams spark-nb edits into the cell that asked for them, with accept and reject.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_: JupyterFrontEnd, tracker: INotebookTracker) => {
    const api: ILiveCells = {
      version: 1,
      source(el) {
        return owningCell(tracker, el)?.model.sharedModel.getSource() ?? null;
      },
      bind(el, onUserEdit) {
        const cell = owningCell(tracker, el);
        return cell ? new LiveCell(cell.model.sharedModel, onUserEdit) : null;
      }
    };
    (globalThis as unknown as { sparkNbLiveCells: ILiveCells }).sparkNbLiveCells = api;
    tracker.widgetAdded.connect((_, panel) => {
      void panel.context.ready.then(() => restoreUnaccepted(panel));
    });
  }
};

/** Ghost-text completion from spark-nb's server extension (./completer.ts); settings: schema/inline-completion.json. */
const ACCEPT_WORD = 'spark-nb:accept-word';

/** The editor with the keyboard: the active cell's in a notebook, a file editor's own. */
function activeEditor(app: JupyterFrontEnd, tracker: INotebookTracker): CodeEditor.IEditor | null {
  const widget = app.shell.currentWidget;
  if (widget && tracker.currentWidget === widget) return tracker.activeCell?.editor ?? null;
  const content = (widget as unknown as { content?: { editor?: CodeEditor.IEditor } } | null)?.content;
  return content?.editor ?? null;
}

const completion: JupyterFrontEndPlugin<void> = {
  id: 'spark-nb:inline-completion',
  description: 'Inline completion (ghost text) from a warm spark-nb engine on the Jupyter server.',
  autoStart: true,
  requires: [ICompletionProviderManager, INotebookTracker],
  optional: [ISettingRegistry],
  activate: (app: JupyterFrontEnd, manager: ICompletionProviderManager, tracker: INotebookTracker,
             registry: ISettingRegistry | null) => {
    const provider = new SparkCompletionProvider();
    manager.registerInlineProvider(provider);
    // Accept the suggestion a word at a time (JupyterLab's inline completer accepts it whole): the word is typed
    // into the editor, and the completer keeps showing the rest, as it does when the user types what it shows.
    app.commands.addCommand(ACCEPT_WORD, {
      label: 'Accept the Next Word of the Inline Completion',
      execute: () => {
        const editor = activeEditor(app, tracker);
        const ghost = editor?.host.querySelector('.jp-GhostText');
        const word = nextWord(ghost?.textContent ?? '');
        if (editor?.replaceSelection && word) editor.replaceSelection(word);
      }
    });
    app.commands.addKeyBinding({ command: ACCEPT_WORD, keys: ['Alt ArrowRight'],
                                 selector: '.jp-mod-inline-completer-active' });
    (globalThis as unknown as { sparkNbCompletion: SparkCompletionProvider }).sparkNbCompletion = provider;
    if (!registry) return;
    void registry.load(completion.id).then(settings => {
      const apply = () => {
        provider.settings = { ...DEFAULTS, ...(settings.composite as Partial<ICompletionSettings>) };
        if (!provider.settings.enabled) provider.cancel();
      };
      apply();
      settings.changed.connect(apply);
    }).catch(e => console.warn('spark-nb: inline completion settings', e));
  }
};

export default [plugin, completion];
