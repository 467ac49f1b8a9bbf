/**
 * A turn's checkpoint: before the agent first changes a cell, its state is kept by cell id, so
 * one Undo restores every cell the turn edited, inserted or deleted, and touches nothing else
 * (the user's own edits in other cells stay). Pure over `INotebookOps`; jest tests it with an
 * array, the sidebar gives it the live notebook (nbops.ts).
 */

export interface ICellState {
  id: string;
  type: string;
  source: string;
}

/** The notebook operations the agent needs (cells addressed by id). */
export interface INotebookOps {
  cells(): ICellState[];
  setSource(id: string, source: string): void;
  /** insert at `index` (with that id if given and free); returns the new cell's id */
  insert(index: number, type: string, source: string, id?: string): string;
  remove(id: string): void;
}

interface IDeleted {
  state: ICellState;
  /** the cells around it when it was deleted (null: none) */
  afterId: string | null;
  beforeId: string | null;
  index: number;
}

export class TurnCheckpoint {
  /** original state of cells that existed before the turn and were edited */
  private edited = new Map<string, ICellState>();
  private inserted = new Set<string>();
  private deleted: IDeleted[] = [];

  constructor(private nb: INotebookOps) {}

  get empty(): boolean {
    return !this.edited.size && !this.inserted.size && !this.deleted.length;
  }

  /** How many cells the turn changed (for the Undo button's label). */
  get count(): number {
    const ids = new Set([...this.edited.keys(), ...this.inserted, ...this.deleted.map(d => d.state.id)]);
    return ids.size;
  }

  private find(id: string): { index: number; state: ICellState } | null {
    const cells = this.nb.cells();
    const index = cells.findIndex(c => c.id === id);
    return index < 0 ? null : { index, state: cells[index] };
  }

  /** Apply an edit, keeping the cell's first state. */
  edit(id: string, source: string): void {
    const found = this.find(id);
    if (!found) {
      throw new Error('That cell is gone.');
    }
    if (!this.inserted.has(id) && !this.edited.has(id)) {
      this.edited.set(id, { ...found.state });
    }
    this.nb.setSource(id, source);
  }

  /** Insert after the cell `afterId` (null: at the top); returns the new id. */
  insert(afterId: string | null, type: string, source: string): string {
    let index = 0;
    if (afterId !== null) {
      const found = this.find(afterId);
      if (!found) {
        throw new Error('The cell to insert after is gone.');
      }
      index = found.index + 1;
    }
    const id = this.nb.insert(index, type, source);
    this.inserted.add(id);
    return id;
  }

  remove(id: string): void {
    const found = this.find(id);
    if (!found) {
      throw new Error('That cell is gone.');
    }
    const cells = this.nb.cells();
    if (this.inserted.has(id)) {
      this.inserted.delete(id); // it never existed before the turn: nothing to bring back
    } else {
      const state = this.edited.get(id) || { ...found.state };
      this.edited.delete(id);
      const afterId = found.index > 0 ? cells[found.index - 1].id : null;
      const beforeId = found.index + 1 < cells.length ? cells[found.index + 1].id : null;
      this.deleted.push({ state, afterId, beforeId, index: found.index });
    }
    this.nb.remove(id);
  }

  /**
   * Put the turn's cells back: inserted ones removed, edited ones restored, deleted ones
   * re-inserted where they were (after the same neighbour, else at the same index). Returns
   * how many cells it restored.
   */
  undo(): number {
    let n = 0;
    // deletes first, newest first, while the turn's inserted cells still mark the places
    const newIds = new Map<string, string>(); // a re-inserted cell may get a new id
    const mapped = (id: string | null) => (id === null ? null : this.find(newIds.get(id) || id));
    for (const d of [...this.deleted].reverse()) {
      const after = mapped(d.afterId);
      const before = mapped(d.beforeId);
      const index =
        d.afterId === null ? 0 : after ? after.index + 1 : before ? before.index : Math.min(d.index, this.nb.cells().length);
      newIds.set(d.state.id, this.nb.insert(index, d.state.type, d.state.source, d.state.id));
      n++;
    }
    for (const id of this.inserted) {
      if (this.find(id)) {
        this.nb.remove(id);
        n++;
      }
    }
    for (const [id, state] of this.edited) {
      if (this.find(id)) {
        this.nb.setSource(id, state.source);
        n++;
      }
    }
    this.edited.clear();
    this.inserted.clear();
    this.deleted = [];
    return n;
  }
}
