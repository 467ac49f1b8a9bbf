/**
 * The live notebook behind the agent: cells by id through the shared model (the same edits a
 * user makes, so the notebook's own undo and collaboration see them), outputs as text for the
 * model, and running a cell. A turn keeps the notebook it started in, even if the user switches
 * tabs meanwhile.
 */
import { CodeCell } from '@jupyterlab/cells';
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { ICellState, INotebookOps } from './checkpoint';

const OUTPUT_CHARS = 2000;
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

function joined(v: unknown): string {
  return Array.isArray(v) ? v.join('') : typeof v === 'string' ? v : '';
}

/** A cell's outputs as the model reads them: text, results, errors (ANSI stripped, truncated). */
export function outputsText(outputs: any[]): string {
  const parts: string[] = [];
  for (const o of outputs || []) {
    if (o.output_type === 'stream') {
      parts.push(joined(o.text));
    } else if (o.output_type === 'error') {
      parts.push(`${o.ename}: ${o.evalue}\n${joined((o.traceback || []).slice(-3).join('\n'))}`);
    } else if (o.data) {
      const d = o.data;
      parts.push(d['text/plain'] !== undefined ? joined(d['text/plain']) : `[${Object.keys(d).join(', ')}]`);
    }
  }
  let text = parts.join('\n').replace(ANSI, '').trim();
  if (text.length > OUTPUT_CHARS) {
    text = `${text.slice(0, OUTPUT_CHARS)}\n… (truncated)`;
  }
  return text || '(no output)';
}

export class NotebookOps implements INotebookOps {
  constructor(readonly panel: NotebookPanel) {}

  private get shared() {
    const model = this.panel.content.model;
    if (!model || this.panel.isDisposed) {
      throw new Error('The notebook was closed.');
    }
    return model.sharedModel;
  }

  cells(): ICellState[] {
    return this.shared.cells.map(c => ({ id: c.id, type: c.cell_type, source: c.getSource() }));
  }

  private indexOf(id: string): number {
    const i = this.shared.cells.findIndex(c => c.id === id);
    if (i < 0) {
      throw new Error('That cell is gone.');
    }
    return i;
  }

  setSource(id: string, source: string): void {
    this.shared.cells[this.indexOf(id)].setSource(source);
  }

  insert(index: number, type: string, source: string, id?: string): string {
    const shared = this.shared;
    const free = id && !shared.cells.some(c => c.id === id);
    const cell = shared.insertCell(Math.max(0, Math.min(index, shared.cells.length)), {
      cell_type: type === 'markdown' ? 'markdown' : type === 'raw' ? 'raw' : 'code',
      source,
      ...(free ? { id } : {})
    } as any);
    return cell.id;
  }

  remove(id: string): void {
    this.shared.deleteCell(this.indexOf(id));
  }

  language(): string {
    const meta: any = this.panel.model?.getMetadata('language_info');
    return (meta && meta.name) || 'python';
  }

  /** Cells `first`..`last` (from 1): source and outputs. */
  readCells(first: number, last: number): string {
    const cells = this.shared.cells;
    const out: string[] = [];
    for (let i = first - 1; i < Math.min(last, cells.length); i++) {
      const c = cells[i];
      let text = `# cell ${i + 1} (${c.cell_type})\n${c.getSource()}`;
      if (c.cell_type === 'code') {
        text += `\n# output of cell ${i + 1}:\n${outputsText((c as any).getOutputs?.() || [])}`;
      }
      out.push(text);
    }
    return out.join('\n\n') || '(no cells)';
  }

  /** Run the cell in the notebook's kernel; its outputs as text. */
  async run(id: string): Promise<string> {
    const index = this.indexOf(id);
    const widget = this.panel.content.widgets[index];
    if (!(widget instanceof CodeCell)) {
      throw new Error('Only code cells run.');
    }
    this.panel.content.activeCellIndex = index;
    await CodeCell.execute(widget, this.panel.sessionContext);
    return outputsText(widget.model.outputs.toJSON());
  }
}
