/**
 * The input box: the question, Send and Stop (Enter sends, Shift+Enter new line, Esc stops),
 * and `@name` completion from the kernel's variables (↑/↓ pick, Enter/Tab insert, Esc closes).
 */
import { Widget } from '@lumino/widgets';
import { stopIcon } from '@jupyterlab/ui-components';
import { IKernelVariable, completeMention, insertMention, mentionAt } from '../variables';
import { button, el } from './dom';

export interface IInputActions {
  send(): void;
  stop(): void;
  focused(): void;
  /** the kernel's variables, for `@` completion */
  variables?(): Promise<IKernelVariable[]>;
  /** a mention was completed or the text changed (debounced): sync the mention chips */
  mentionsChanged?(): void;
}

const MAX_OPTIONS = 8;

export class InputBox extends Widget {
  readonly input: HTMLTextAreaElement;
  private sendButton: HTMLButtonElement;
  private stopButton: HTMLButtonElement;
  private popup: HTMLElement;
  private options: IKernelVariable[] = [];
  private selected = 0;
  private typing: ReturnType<typeof setTimeout> | undefined;

  constructor(private actions: IInputActions) {
    super();
    this.addClass('jp-MiniCPM-inputRow');
    this.input = el('textarea', {
      class: 'jp-MiniCPM-input',
      'data-testid': 'minicpm-input',
      'aria-label': 'Message',
      rows: '3',
      placeholder: 'Ask about your notebook…',
      title: 'Enter sends · Shift+Enter new line · Esc stops'
    });
    this.popup = el('div', {
      class: 'jp-MiniCPM-mentions',
      role: 'listbox',
      'aria-label': 'Kernel variables',
      'data-testid': 'minicpm-mentions'
    });
    this.popup.hidden = true;
    this.input.setAttribute('aria-autocomplete', 'list');
    this.input.oninput = () => {
      void this.updateMentions();
      clearTimeout(this.typing);
      this.typing = setTimeout(() => actions.mentionsChanged?.(), 600);
    };
    this.input.onblur = () => setTimeout(() => this.closeMentions(), 200);
    this.input.onkeydown = ev => {
      if (!this.popup.hidden && this.mentionKey(ev)) {
        ev.preventDefault();
        return;
      }
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        actions.send();
      } else if (ev.key === 'Escape' && this.node.classList.contains('jp-mod-busy')) {
        ev.preventDefault();
        actions.stop();
      }
    };
    this.input.onfocus = () => actions.focused();
    const buttons = el('div', { class: 'jp-MiniCPM-sendButtons' });
    this.sendButton = button({
      label: 'Send',
      text: 'Send',
      testid: 'minicpm-send',
      className: 'jp-mod-accept',
      onclick: () => actions.send()
    });
    this.stopButton = button({
      label: 'Stop generating',
      text: 'Stop',
      icon: stopIcon,
      testid: 'minicpm-stop',
      className: 'jp-MiniCPM-stop',
      onclick: () => actions.stop()
    });
    this.stopButton.disabled = true;
    buttons.append(this.sendButton, this.stopButton);
    this.node.append(this.popup, this.input, buttons);
  }

  /** Keys while the completion list is open; true when handled. */
  private mentionKey(ev: KeyboardEvent): boolean {
    const n = this.options.length;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      this.selected = (this.selected + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.renderMentions();
      return true;
    }
    if ((ev.key === 'Enter' || ev.key === 'Tab') && !ev.shiftKey) {
      this.choose(this.options[this.selected].name);
      return true;
    }
    if (ev.key === 'Escape') {
      this.closeMentions();
      return true;
    }
    return false;
  }

  /** Show the kernel variables matching the `@prefix` at the cursor. */
  private async updateMentions(): Promise<void> {
    const at = mentionAt(this.input.value, this.input.selectionStart ?? this.input.value.length);
    if (!at || !this.actions.variables) {
      this.closeMentions();
      return;
    }
    const vars = await this.actions.variables();
    // the text may have moved on while the kernel answered
    const now = mentionAt(this.input.value, this.input.selectionStart ?? this.input.value.length);
    if (!now || now.prefix !== at.prefix) {
      return;
    }
    this.options = completeMention(at.prefix, vars).slice(0, MAX_OPTIONS);
    this.selected = 0;
    this.renderMentions();
  }

  private renderMentions(): void {
    this.popup.textContent = '';
    this.options.forEach((v, i) => {
      const o = el('div', {
        class: 'jp-MiniCPM-mention' + (i === this.selected ? ' jp-mod-selected' : ''),
        role: 'option',
        'aria-selected': String(i === this.selected),
        'data-testid': 'minicpm-mention-option',
        title: v.summary
      });
      o.append(el('b', {}, v.name), el('span', { class: 'jp-MiniCPM-mentionType' }, ` ${v.type}`));
      o.onmousedown = ev => {
        ev.preventDefault(); // keep the focus in the input
        this.choose(v.name);
      };
      this.popup.append(o);
    });
    this.popup.hidden = !this.options.length;
  }

  private closeMentions(): void {
    this.options = [];
    this.popup.hidden = true;
  }

  private choose(name: string): void {
    const r = insertMention(this.input.value, this.input.selectionStart ?? this.input.value.length, name);
    this.input.value = r.text;
    this.input.setSelectionRange(r.cursor, r.cursor);
    this.closeMentions();
    this.actions.mentionsChanged?.();
  }

  setBusy(busy: boolean): void {
    this.stopButton.disabled = !busy;
    this.sendButton.disabled = busy;
    this.node.classList.toggle('jp-mod-busy', busy);
  }

  /** Take the text out (for sending). */
  take(): string {
    const t = this.input.value;
    this.input.value = '';
    return t;
  }
}
