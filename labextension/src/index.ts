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

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Cell } from '@jupyterlab/cells';
import { INotebookTracker } from '@jupyterlab/notebook';

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
    if (this._done || this._shared.getSource() === source) return;
    this._writing = true;
    try {
      // Untracked transactions keep the stream out of the undo history; the one tracked change is the accept.
      this._shared.transact(() => this._shared.setSource(source), undoable);
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
  }
};

export default plugin;
