/**
 * The conversation: one node per message of the ChatSession (observed), the answer's Markdown
 * body (markdown.ts), a footer with time, speed, notices, and "Continue" after max tokens.
 */
import { Widget } from '@lumino/widgets';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import type { IStatus } from '../protocol';
import { AnswerBody, ICodeActions, safeRendermime } from './markdown';
import { ChatSession, ISessionMessage, SessionChange } from './session';
import { el, button } from './dom';
import { kindIcon } from './contextbar';
import { assistantName, isStandIn, partLabel, timeLabel, usageLine } from './format';

interface IMessageNodes {
  node: HTMLElement;
  who: HTMLElement;
  body: HTMLElement;
  footer: HTMLElement;
  answer?: AnswerBody;
}

export interface IMessageActions extends ICodeActions {
  /** "Continue" under an answer that hit max tokens */
  continue(): void;
}

export class MessageView extends Widget {
  private rendermime: IRenderMimeRegistry;
  private nodes: IMessageNodes[] = [];
  /** the server's last status, for the empty chat's wording */
  status: IStatus | null = null;

  constructor(
    private session: ChatSession,
    rendermime: IRenderMimeRegistry,
    private actions: IMessageActions
  ) {
    super();
    this.addClass('jp-MiniCPM-log');
    this.node.setAttribute('role', 'log');
    this.node.setAttribute('aria-live', 'polite');
    this.node.setAttribute('aria-label', 'Conversation');
    this.node.tabIndex = 0;
    this.rendermime = safeRendermime(rendermime);
    session.changed.connect(this.onChange, this);
    this.reset();
  }

  private onChange(_: ChatSession, change: SessionChange): void {
    switch (change.type) {
      case 'reset':
        void this.reset();
        break;
      case 'added':
        this.add(change.index);
        this.scrollToEnd(); // scroll to the question at once, not at the first token
        break;
      case 'updated':
        this.refreshMessage(change.index, false);
        break;
      case 'phase':
        this.showPhase(change.phase, change.position);
        break;
    }
  }

  private scrollToEnd(): void {
    this.node.scrollTop = this.node.scrollHeight;
  }

  /** Redraw everything (new chat, reopened chat). */
  async reset(): Promise<void> {
    this.nodes.forEach(n => n.answer?.dispose());
    this.nodes = [];
    this.node.textContent = '';
    if (!this.session.messages.length) {
      this.renderEmpty();
      return;
    }
    const done: Promise<void>[] = [];
    this.session.messages.forEach((_, i) => {
      this.add(i);
      done.push(this.refreshMessage(i, true));
    });
    await Promise.all(done);
    this.scrollToEnd();
  }

  renderEmpty(): void {
    if (this.session.messages.length) {
      return;
    }
    this.node.textContent = '';
    const who = isStandIn(this.status) ? 'the stand-in model' : assistantName(this.status);
    const e = el('div', { class: 'jp-MiniCPM-empty', 'data-testid': 'minicpm-empty' });
    e.append(
      el('p', {}, `Ask about your notebook. Answers come from ${who}, running on this machine.`),
      el('p', {}, 'Attach cells, outputs or figures with the buttons below, or use “Explain cell”, “Fix error” and “Explain image” from a cell’s context menu.')
    );
    this.node.append(e);
  }

  private add(index: number): void {
    const msg = this.session.messages[index];
    this.node.querySelector('.jp-MiniCPM-empty')?.remove();
    const node = el('div', {
      class: `jp-MiniCPM-message jp-MiniCPM-${msg.role}`,
      'data-testid': 'minicpm-message',
      'data-role': msg.role
    });
    const head = el('div', { class: 'jp-MiniCPM-who' });
    const who = el('span', { class: 'jp-MiniCPM-name' }, msg.role === 'user' ? 'You' : msg.model || 'Assistant');
    head.append(who);
    if (typeof msg.time === 'number' && Number.isFinite(msg.time)) {
      const t = el('time', { class: 'jp-MiniCPM-time', 'data-testid': 'minicpm-time', datetime: new Date(msg.time).toISOString() }, timeLabel(msg.time));
      head.append(t);
    }
    node.append(head);
    if (msg.role === 'user' && msg.context && msg.context.length) {
      const used = el('div', { class: 'jp-MiniCPM-used', 'aria-label': 'Context sent' });
      for (const p of msg.context) {
        const chip = el('span', { class: 'jp-MiniCPM-chip jp-mod-readonly', 'data-kind': p.kind });
        chip.append(kindIcon(p.kind), el('span', {}, `${partLabel(p)}${p.truncated ? ' (truncated)' : ''}`));
        used.append(chip);
      }
      node.append(used);
    }
    const body = el('div', { class: 'jp-MiniCPM-body' });
    const footer = el('div', { class: 'jp-MiniCPM-footer', 'data-testid': 'minicpm-usage' });
    node.append(body, footer);
    this.node.append(node);
    const nodes: IMessageNodes = { node, who, body, footer };
    if (msg.role === 'assistant') {
      nodes.answer = new AnswerBody(body, this.rendermime, () => {
        if (this.session.busy) {
          this.scrollToEnd();
        }
      });
    } else {
      body.classList.add('jp-MiniCPM-userText');
      body.textContent = msg.content; // a question is shown as typed, never as HTML
    }
    this.nodes[index] = nodes;
  }

  /** Show a message's current state; `final` when it will not change any more. */
  private async refreshMessage(index: number, final: boolean): Promise<void> {
    const msg = this.session.messages[index];
    const n = this.nodes[index];
    if (!msg || !n || msg.role !== 'assistant' || !n.answer) {
      return;
    }
    const streaming = this.session.busy && index === this.session.messages.length - 1;
    n.node.classList.toggle('jp-mod-streaming', streaming);
    if (streaming) {
      n.node.setAttribute('aria-busy', 'true');
    }
    if (msg.model) {
      n.who.textContent = msg.model;
    }
    if (streaming && !final) {
      if (msg.content) {
        n.answer.update(msg.content);
      }
      if (msg.notice) {
        this.footerNotice(n.footer, msg.notice); // up front: e.g. "cannot see images"
      }
      return;
    }
    await n.answer.render(msg.content);
    if (msg.error) {
      n.body.append(el('div', { class: 'jp-MiniCPM-error', role: 'alert' }, `Error: ${msg.error}`));
    } else {
      n.answer.addCodeActions(this.actions, index);
    }
    this.renderFooter(n.footer, msg, index);
    n.node.removeAttribute('aria-busy');
    n.node.classList.remove('jp-mod-streaming');
  }

  private footerNotice(footer: HTMLElement, notice: string): void {
    if (!footer.querySelector('.jp-MiniCPM-notice')) {
      footer.prepend(el('div', { class: 'jp-MiniCPM-notice', role: 'note' }, notice));
    }
  }

  private renderFooter(footer: HTMLElement, msg: ISessionMessage, index: number): void {
    footer.textContent = msg.error ? '' : usageLine(msg);
    if (msg.notice) {
      this.footerNotice(footer, msg.notice);
    }
    if (msg.truncated) {
      footer.append(el('span', { class: 'jp-MiniCPM-truncNote' }, ' · context truncated to fit the model'));
    }
    const last = index === this.session.messages.length - 1;
    if (msg.finish_reason === 'length' && last) {
      footer.append(
        button({
          label: 'Continue the answer',
          text: 'Continue',
          testid: 'minicpm-continue',
          className: 'jp-mod-small jp-MiniCPM-continue',
          onclick: () => this.actions.continue()
        })
      );
    }
  }

  /** The running answer's footer while it waits. */
  private showPhase(phase: string, position?: number): void {
    const n = this.nodes[this.session.messages.length - 1];
    if (!n || !n.answer) {
      return;
    }
    if (phase === 'waiting') {
      n.node.setAttribute('aria-busy', 'true');
      n.node.classList.add('jp-mod-streaming');
      n.footer.textContent = 'Waiting for the model…';
    } else if (phase === 'queued') {
      n.footer.textContent = `Queued (position ${position})…`;
    } else if (phase === 'generating') {
      n.footer.textContent = 'Generating…';
    }
  }

  dispose(): void {
    this.nodes.forEach(n => n.answer?.dispose());
    super.dispose();
  }
}
