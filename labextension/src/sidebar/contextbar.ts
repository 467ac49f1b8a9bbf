/**
 * The context bar: attached chips (labelled by kind: "cell [1] code", "cell [1] output"),
 * buttons to attach the active/selected cells or outputs, the whole-notebook and images
 * toggles, and the token budget line.
 */
import { Widget } from '@lumino/widgets';
import {
  LabIcon,
  bugIcon,
  closeIcon,
  codeIcon,
  imageIcon,
  notebookIcon,
  consoleIcon,
  textEditorIcon
} from '@jupyterlab/ui-components';
import { Notification } from '@jupyterlab/apputils';
import type { IContextPart, IStatus } from '../protocol';
import { partTokens, totalTokens } from '../context';
import { formatTokens } from '../variables';
import { contextLimit } from './varcontext';
import type { INotebookContext } from '../notebookContext';
import type { NotebookBridge } from '../notebook';
import { button, el } from './dom';
import { partLabel } from './format';

export const KIND_ICON: Record<string, LabIcon> = {
  cell: codeIcon,
  output: consoleIcon,
  error: bugIcon,
  image: imageIcon,
  text: textEditorIcon,
  notebook: notebookIcon
};

/** A chip's icon (an SVG LabIcon). */
export function kindIcon(kind: string): HTMLElement {
  return (KIND_ICON[kind] || textEditorIcon).element({ tag: 'span', className: 'jp-MiniCPM-chipIcon' });
}

export class ContextBar extends Widget {
  private chips: IContextPart[] = [];
  private notebookCtx: INotebookContext | null = null;
  private chipList: HTMLElement;
  private budgetText: HTMLElement;
  /** a quiet line about kernel variables ("the kernel is busy"), '' for none */
  private varNote = '';
  readonly notebookToggle: HTMLInputElement;
  readonly imagesToggle: HTMLInputElement;

  constructor(
    private notebooks: NotebookBridge,
    private budget: () => number,
    private status: () => IStatus | null
  ) {
    super();
    this.addClass('jp-MiniCPM-context');
    this.chipList = el('div', {
      class: 'jp-MiniCPM-chips',
      role: 'list',
      'aria-label': 'Attached context',
      'data-testid': 'minicpm-chips'
    });
    const bar = el('div', { class: 'jp-MiniCPM-ctxBar' });
    const add = (label: string, text: string, testid: string, parts: () => IContextPart[]) =>
      button({ label, text, testid, className: 'jp-mod-small', onclick: () => this.attach(parts()) });
    bar.append(
      add('Attach the active cell', '+ Cell', 'minicpm-add-cell', () =>
        this.notebooks.cellContext(undefined, this.imagesToggle.checked)
      ),
      add('Attach the selected cells', '+ Selected', 'minicpm-add-selected', () =>
        this.notebooks.selectedContext(this.imagesToggle.checked)
      ),
      add("Attach the active cell's outputs", '+ Outputs', 'minicpm-add-outputs', () =>
        this.notebooks.outputsContext(undefined, this.imagesToggle.checked)
      )
    );
    const toggle = (testid: string, text: string, title: string) => {
      const label = el('label', { class: 'jp-MiniCPM-toggle', title });
      const box = el('input', { type: 'checkbox', 'data-testid': testid });
      label.append(box, document.createTextNode(` ${text}`));
      bar.append(label);
      return box;
    };
    this.notebookToggle = toggle('minicpm-whole-notebook', 'Whole notebook', 'Send the whole notebook (within the token budget)');
    this.notebookToggle.onchange = () => this.refresh();
    this.imagesToggle = toggle('minicpm-images', 'Images', 'Attach image outputs with cells');
    this.imagesToggle.checked = true;
    this.budgetText = el('div', { class: 'jp-MiniCPM-budget', 'aria-live': 'polite', 'data-testid': 'minicpm-budget' });
    this.node.append(this.chipList, bar, this.budgetText);
  }

  /** Add parts (duplicates skipped). */
  attach(parts: IContextPart[]): void {
    if (!parts.length) {
      Notification.info('MiniCPM: nothing to attach (open a notebook and select a cell).', { autoClose: 3000 });
      return;
    }
    for (const p of parts) {
      const dup = this.chips.some(
        c => c.kind === p.kind && c.label === p.label && c.text === p.text && c.data === p.data
      );
      if (!dup) {
        this.chips.push(p);
      }
    }
    this.refresh();
  }

  /** Say why variables could not be read (quietly, under the chips); '' clears it. */
  setVariablesNote(note: string): void {
    if (note !== this.varNote) {
      this.varNote = note;
      this.refresh();
    }
  }

  /** Remove the chips `drop` selects. */
  remove(drop: (p: IContextPart) => boolean): void {
    this.chips = this.chips.filter(p => !drop(p));
    this.refresh();
  }

  clear(): void {
    this.chips = [];
    this.refresh();
  }

  /** What goes with the next question: the chips, then the whole notebook if switched on. */
  parts(): IContextPart[] {
    this.refresh();
    return this.notebookCtx ? [...this.chips, this.notebookCtx.part] : [...this.chips];
  }

  get attached(): IContextPart[] {
    return [...this.chips];
  }

  private chip(p: IContextPart, onRemove: () => void): void {
    const label = partLabel(p);
    const c = el('span', {
      class: `jp-MiniCPM-chip jp-MiniCPM-chip-${p.kind}`,
      role: 'listitem',
      'data-testid': 'minicpm-chip',
      'data-kind': p.kind,
      title: p.kind === 'image' ? label : (p.text || '').slice(0, 400)
    });
    c.append(kindIcon(p.kind), el('span', { class: 'jp-MiniCPM-chipLabel' }, label));
    if (p.kind === 'text') {
      // variables and other text parts: what each costs (the budget line has the total)
      c.append(el('span', { class: 'jp-MiniCPM-chipNote', 'data-testid': 'minicpm-chip-tokens' },
        `${formatTokens(partTokens(p))} tokens`));
    }
    if (p.truncated) {
      c.append(el('span', { class: 'jp-MiniCPM-chipNote' }, 'truncated'));
    }
    const x = el('button', {
      class: 'jp-MiniCPM-chipRemove',
      type: 'button',
      'aria-label': `Remove ${label} from context`,
      title: 'Remove'
    });
    x.append(closeIcon.element({ tag: 'span', className: 'jp-MiniCPM-icon' }));
    x.onclick = ev => {
      ev.preventDefault();
      onRemove();
    };
    c.append(x);
    this.chipList.append(c);
  }

  /** Redraw chips, the whole-notebook chip and the budget line. */
  refresh(): void {
    this.chipList.textContent = '';
    this.chips.forEach((p, i) =>
      this.chip(p, () => {
        this.chips.splice(i, 1);
        this.refresh();
      })
    );
    this.notebookCtx = null;
    if (this.notebookToggle.checked) {
      this.notebookCtx = this.notebooks.notebookContext(this.budget());
      if (this.notebookCtx) {
        this.chip(this.notebookCtx.part, () => {
          this.notebookToggle.checked = false;
          this.refresh();
        });
      }
    }
    const tokens = totalTokens(this.chips) + (this.notebookCtx?.tokens || 0);
    let line = tokens ? `Context ≈ ${tokens} tokens` : '';
    if (tokens && this.chips.some(p => p.kind === 'text')) {
      line += ` of ${contextLimit(this.status())} (half the window)`;
    }
    if (this.notebookToggle.checked) {
      const n = this.notebookCtx;
      if (!n) {
        line = 'Whole notebook: no notebook open';
      } else {
        line = `Context ≈ ${tokens} tokens · notebook ${n.tokens} / ${n.budget} budget`;
        if (n.truncated) {
          line += ` · truncated: ${n.included} of ${n.included + n.omitted} cells fit (nearest the active cell kept)`;
        }
      }
    }
    this.budgetText.textContent = line;
    const model = this.status()?.model;
    if (model && !model.vision && this.chips.some(p => p.kind === 'image')) {
      // said before sending, not under a long answer
      this.budgetText.append(
        el('div', { class: 'jp-MiniCPM-visionNote', role: 'note', 'data-testid': 'minicpm-vision-note' },
          `${model.label || model.model} cannot see images: it gets the code and labels, not the pixels.`)
      );
    }
    if (this.varNote) {
      this.budgetText.append(
        el('div', { class: 'jp-MiniCPM-varNote', role: 'note', 'data-testid': 'minicpm-vars-note' }, this.varNote)
      );
    }
    this.budgetText.hidden = !this.budgetText.textContent;
    this.budgetText.classList.toggle('jp-mod-truncated', !!this.notebookCtx?.truncated);
  }
}
