/** The notebook side: reading context from the current notebook and acting on answers. */
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Cell } from '@jupyterlab/cells';
import type { IContextPart } from './protocol';
import {
  ICellLike,
  cellPart,
  errorPart,
  imageParts,
  outputParts
} from './context';
import { INotebookContext, notebookPart } from './notebookContext';

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

  /** Mark parts with their cell's id (frontend only): "Replace cell" finds the cell by it. */
  private tag(parts: IContextPart[], cell: Cell): IContextPart[] {
    parts.forEach(p => (p.cellId = cell.model.id));
    return parts;
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
    return this.tag(parts, cell);
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
    return this.tag([...outputParts(json, index), ...(images ? imageParts(json, index) : [])], cell);
  }

  errorContext(index = this.activeIndex()): IContextPart[] {
    const cell = this.cellAt(index);
    if (!cell) {
      return [];
    }
    const json = this.cellJson(cell);
    const err = errorPart(json, index);
    return err ? this.tag([cellPart(json, index, this.language()), err], cell) : [];
  }

  imageContext(index = this.activeIndex()): IContextPart[] {
    const cell = this.cellAt(index);
    return cell ? this.tag(imageParts(this.cellJson(cell), index), cell) : [];
  }

  /** The code of the cell at `index` (Explain image sends the code that drew the figure). */
  codeContext(index = this.activeIndex()): IContextPart[] {
    const cell = this.cellAt(index);
    if (!cell || cell.model.type !== 'code') {
      return [];
    }
    return this.tag([cellPart(this.cellJson(cell), index, this.language())], cell);
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

  private findCell(cellId?: string): { cell: Cell; index: number } | null {
    const nb = this.requirePanel().content;
    const index = cellId ? nb.widgets.findIndex(c => c.model.id === cellId) : nb.activeCellIndex;
    return index >= 0 && index < nb.widgets.length ? { cell: nb.widgets[index], index } : null;
  }

  /** Where replaceCell(…, cellId) would write: "cell #2", or null without a notebook. */
  replaceTarget(cellId?: string): string | null {
    if (!this.panel) {
      return null;
    }
    const found = this.findCell(cellId) || this.findCell();
    return found ? `cell #${found.index + 1}` : null;
  }

  /** What replaceCell(…, cellId) would replace: the cell's source and label, or null. */
  replaceSource(cellId?: string): { source: string; label: string } | null {
    const found = this.panel ? this.findCell(cellId) || this.findCell() : null;
    return found ? { source: found.cell.model.sharedModel.getSource(), label: `cell #${found.index + 1}` } : null;
  }

  /**
   * Replace the source of the cell `cellId` (the cell an answer was about), else of the active
   * cell; returns what Undo needs.
   */
  replaceCell(code: string, cellId?: string): { cellId: string; previous: string; label: string } {
    const found = this.findCell(cellId) || this.findCell();
    if (!found) {
      throw new Error('No cell to replace.');
    }
    const { cell, index } = found;
    const previous = cell.model.sharedModel.getSource();
    cell.model.sharedModel.setSource(code);
    this.requirePanel().content.activeCellIndex = index;
    return { cellId: cell.model.id, previous, label: `cell #${index + 1}` };
  }

  /** Undo of replaceCell. */
  restoreCell(cellId: string, source: string): void {
    const found = this.findCell(cellId);
    if (!found) {
      throw new Error('That cell is gone.');
    }
    found.cell.model.sharedModel.setSource(source);
  }

  async insertAndRun(code: string): Promise<void> {
    const panel = this.requirePanel();
    this.insertBelow(code);
    await NotebookActions.run(panel.content, panel.sessionContext);
  }
}
