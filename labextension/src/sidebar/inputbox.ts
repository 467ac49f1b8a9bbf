/** The input box: the question, Send and Stop (Enter sends, Shift+Enter new line, Esc stops). */
import { Widget } from '@lumino/widgets';
import { stopIcon } from '@jupyterlab/ui-components';
import { button, el } from './dom';

export interface IInputActions {
  send(): void;
  stop(): void;
  focused(): void;
}

export class InputBox extends Widget {
  readonly input: HTMLTextAreaElement;
  private sendButton: HTMLButtonElement;
  private stopButton: HTMLButtonElement;

  constructor(actions: IInputActions) {
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
    this.input.onkeydown = ev => {
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
    this.node.append(this.input, buttons);
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
