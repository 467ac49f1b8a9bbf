/**
 * The sidebar's kernel variables, between the input box, the context bar and the active
 * notebook's kernel: `@name` completion, mention chips, the automatic variables and defining
 * cells of "Explain cell" / "Fix error", and "Explain this DataFrame".
 */
import type { NotebookBridge } from '../notebook';
import type { IContextPart, IStatus } from '../protocol';
import { ICellLike, joinText } from '../context';
import { IKernelVariable, MENTION_TOKENS, parseMentions } from '../variables';
import type { ContextBar } from './contextbar';
import { KernelVariables } from './kernelvars';
import { automaticParts, mentionOf, roomLeft, shownName, variableChip } from './varcontext';

export class VariablesController {
  readonly kernel: KernelVariables;
  /** names already turned into chips for the current input (a removed chip stays removed) */
  private synced = new Set<string>();
  /** mention syncs run one after another, so a send waits for the one typing started */
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private notebooks: NotebookBridge,
    private bar: ContextBar,
    private status: () => IStatus | null,
    private autoVariables: () => boolean
  ) {
    this.kernel = new KernelVariables(() => notebooks.panel?.sessionContext.session?.kernel);
  }

  /** For `@` completion; an empty list (and a quiet note) when the kernel cannot say. */
  async variables(): Promise<IKernelVariable[]> {
    const list = await this.kernel.list();
    this.bar.setVariablesNote(this.kernel.note ? `Variables: ${this.kernel.note}` : '');
    return list;
  }

  /** Describe the `@names` in `text` that have no chip yet and attach them (each ≤ 512 tokens). */
  syncMentions(text: string): Promise<void> {
    this.pending = this.pending.then(() => this.sync(text)).catch(() => undefined);
    return this.pending;
  }

  private async sync(text: string): Promise<void> {
    const names = parseMentions(text).filter(
      n => !this.synced.has(n) && !this.bar.attached.some(p => mentionOf(p) === n)
    );
    if (!names.length) {
      return;
    }
    names.forEach(n => this.synced.add(n));
    const room = roomLeft(this.status(), this.bar.parts());
    const { descriptions, missing } = await this.kernel.describe(names, MENTION_TOKENS, room);
    let note = this.kernel.note ? `Variables: ${this.kernel.note}` : '';
    if (missing.length) {
      note = `No variable named ${missing.map(n => `@${n}`).join(', ')} in the kernel`;
    }
    this.bar.setVariablesNote(note);
    if (descriptions.length) {
      this.bar.attach(descriptions.map(d => variableChip(d, true)));
    } else if (this.kernel.note) {
      names.forEach(n => this.synced.delete(n)); // try again once the kernel can answer
    }
  }

  /** After sending or a new chat: the next input starts afresh. */
  reset(): void {
    this.synced.clear();
  }

  private cells(): ICellLike[] {
    const nb = this.notebooks.panel?.content;
    return nb ? nb.widgets.map(c => this.notebooks.cellJson(c)) : [];
  }

  /**
   * "Explain cell" / "Fix error": the variables the cell reads (≤ 256 tokens) and the cells
   * defining them, latest first, within half the window. Off with the autoVariables setting.
   */
  async automatic(index: number, parts: IContextPart[]): Promise<IContextPart[]> {
    if (!this.autoVariables() || index < 0) {
      return [];
    }
    const have = [...this.bar.parts(), ...parts];
    const found = await automaticParts(
      this.cells(),
      index,
      (names, each, total) => this.kernel.describe(names, each, total),
      roomLeft(this.status(), have),
      have,
      undefined,
      this.notebooks.language()
    );
    this.bar.setVariablesNote(this.kernel.note ? `Variables: ${this.kernel.note}` : '');
    return found;
  }

  /** "Explain this DataFrame": the variable the cell shows, else the cell's outputs. */
  async dataFrame(index: number): Promise<IContextPart[]> {
    const cell = this.cells()[index];
    const name = cell ? shownName(joinText(cell.source)) : null;
    if (name) {
      const room = roomLeft(this.status(), this.bar.parts());
      const { descriptions } = await this.kernel.describe([name], MENTION_TOKENS, room);
      if (descriptions.length) {
        this.synced.add(name);
        return [...this.notebooks.codeContext(index), variableChip(descriptions[0], true)];
      }
    }
    return this.notebooks.outputsContext(index, false);
  }
}
