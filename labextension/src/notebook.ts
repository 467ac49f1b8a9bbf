/** The notebook side: reading context from the current notebook and acting on answers. */
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Cell } from '@jupyterlab/cells';
import type { IContextPart } from './protocol';
import {
  ICellLike,
  INotebookContext,
  cellPart,
  errorPart,
  imageParts,
  notebookPart,
  outputParts
} from './context';

export class NotebookBridge {
  constructor(public tracker: INotebookTracker) {}

  get panel(): NotebookPanel | null {
    return this.tracker.currentWidget;
  }

  language(panel = this.panel): string {
    const meta: any = panel?.model?.getMetadata('language_info');
    return (meta && meta.name) || 'python';
  }

  cellJson(cell: Cell): ICellLike {
    return cell.model.toJSON() as unknown as ICellLike;
  }

  activeIndex(): number {
    return this.panel ? this.panel.content.activeCellIndex : -1;
  }

  cellAt(index: number): Cell | null {
    const nb = this.panel?.content;
    return nb && index >= 0 && index < nb.widgets.length ? nb.widgets[index] : null;
  }

  indexOfNode(node: HTMLElement): number {
    const nb = this.panel?.content;
    if (!nb) {
      return -1;
    }
    return nb.widgets.findIndex(c => c.node.contains(node));
  }

  /** The active cell: its source, outputs (text, errors) and, if asked, images. */
  cellContext(index = this.activeIndex(), images = true): IContextPart[] {
    const cell = this.cellAt(index);
    if (!cell) {
      return [];
    }
    const json = this.cellJson(cell);
    const parts = [cellPart(json, index, this.language())];
    parts.push(...outputParts(json, index));
    if (images) {
      parts.push(...imageParts(json, index));
    }
    return parts;
  }

  /** The selected cells (or the active one). */
  selectedContext(images = true): IContextPart[] {
    const nb = this.panel?.content;
    if (!nb) {
      return [];
    }
    const parts: IContextPart[] = [];
    nb.widgets.forEach((cell, i) => {
      if (nb.isSelectedOrActive(cell)) {
        parts.push(...this.cellContext(i, images));
      }
    });
    return parts;
  }

  outputsContext(index = this.activeIndex(), images = true): IContextPart[] {
    const cell = this.cellAt(index);
    if (!cell) {
      return [];
    }
    const json = this.cellJson(cell);
    return [...outputParts(json, index), ...(images ? imageParts(json, index) : [])];
  }

  errorContext(index = this.activeIndex()): IContextPart[] {
    const cell = this.cellAt(index);
    if (!cell) {
      return [];
    }
    const json = this.cellJson(cell);
    const err = errorPart(json, index);
    return err ? [cellPart(json, index, this.language()), err] : [];
  }

  imageContext(index = this.activeIndex()): IContextPart[] {
    const cell = this.cellAt(index);
    return cell ? imageParts(this.cellJson(cell), index) : [];
  }

  notebookContext(budget: number): INotebookContext | null {
    const panel = this.panel;
    if (!panel) {
      return null;
    }
    const cells = panel.content.widgets.map(c => this.cellJson(c));
    return notebookPart(
      cells,
      budget,
      Math.max(0, panel.content.activeCellIndex),
      this.language(panel),
      `notebook ${panel.context.path}`
    );
  }

  // --- acting on answers ---------------------------------------------------------------------
  private requirePanel(): NotebookPanel {
    const panel = this.panel;
    if (!panel) {
      throw new Error('Open a notebook first.');
    }
    return panel;
  }

  insertBelow(code: string): void {
    const panel = this.requirePanel();
    NotebookActions.insertBelow(panel.content);
    const cell = panel.content.activeCell;
    cell?.model.sharedModel.setSource(code);
  }

  replaceActive(code: string): void {
    const panel = this.requirePanel();
    const cell = panel.content.activeCell;
    if (!cell) {
      throw new Error('No active cell to replace.');
    }
    cell.model.sharedModel.setSource(code);
  }

  async insertAndRun(code: string): Promise<void> {
    const panel = this.requirePanel();
    this.insertBelow(code);
    await NotebookActions.run(panel.content, panel.sessionContext);
  }
}
