/**
 * The Agent mode's conversation: the user's requests, the model's words (plain text: model
 * output is untrusted), a trace of tool calls, and the cards the user acts on: a proposal
 * (diff, "Accept" / "Reject", "Accept all" when several wait), a run request (code, "Run" /
 * "Skip"), and after a turn that changed cells, "Undo".
 */
import { Widget } from '@lumino/widgets';
import { button, el } from '../sidebar/dom';
import { renderDiff } from './diffview';
import type { IProposal } from './loop';

interface IPending {
  card: HTMLElement;
  settle: (ok: boolean) => void;
  proposal: boolean;
}

export class AgentView extends Widget {
  private pending: IPending[] = [];

  constructor() {
    super();
    this.addClass('jp-MiniCPM-log');
    this.addClass('jp-MiniCPM-agentLog');
    this.node.setAttribute('role', 'log');
    this.node.setAttribute('aria-live', 'polite');
    this.node.setAttribute('aria-label', 'Agent conversation');
    this.node.dataset.testid = 'minicpm-agent-log';
    this.node.tabIndex = 0;
    this.renderEmpty();
  }

  renderEmpty(): void {
    this.node.textContent = '';
    this.node.append(
      el('div', { class: 'jp-MiniCPM-empty', 'data-testid': 'minicpm-agent-empty' },
        'Agent mode: ask for a change to the active notebook. Every edit, insert or delete is shown as a diff first and happens only when you accept it; cells run only when you press Run.')
    );
  }

  private add(node: HTMLElement): HTMLElement {
    this.node.querySelector('.jp-MiniCPM-empty')?.remove();
    this.node.append(node);
    this.node.scrollTop = this.node.scrollHeight;
    return node;
  }

  private message(role: string, who: string, text: string): HTMLElement {
    const node = el('div', { class: `jp-MiniCPM-message jp-MiniCPM-${role}`, 'data-testid': 'minicpm-agent-message', 'data-role': role });
    node.append(el('div', { class: 'jp-MiniCPM-who' }, who));
    node.append(el('div', { class: 'jp-MiniCPM-body jp-MiniCPM-userText' }, text));
    return this.add(node);
  }

  addUser(text: string): void {
    this.message('user', 'You', text);
  }

  addAnswer(text: string): void {
    this.message('assistant', 'Agent', text);
  }

  /** The model's words as they stream in: the message appears with the first words. */
  liveAnswer(): { append(text: string): void; text(): string } {
    let body: Element | null = null;
    let text = '';
    return {
      append: t => {
        text += t;
        body = body ?? this.message('assistant', 'Agent', '').querySelector('.jp-MiniCPM-body');
        if (body) {
          body.textContent = text; // text only
        }
        this.node.scrollTop = this.node.scrollHeight;
      },
      text: () => text
    };
  }

  /** End-of-turn notes (step limit, stopped, errors). */
  note(text: string, alert = false): void {
    this.add(el('div', { class: `jp-MiniCPM-agentNote${alert ? ' jp-MiniCPM-error' : ''}`, role: alert ? 'alert' : 'status', 'data-testid': 'minicpm-agent-note' }, text));
  }

  trace(text: string, kind: 'call' | 'result' | 'error'): void {
    const line = el('div', { class: `jp-MiniCPM-agentTrace jp-mod-${kind}`, 'data-testid': `minicpm-agent-${kind}` });
    line.textContent = `${kind === 'call' ? '→ ' : '← '}${text.length > 300 ? `${text.slice(0, 300)}…` : text}`;
    this.add(line);
  }

  /** A card that waits for a decision; the promise settles once. */
  private wait(card: HTMLElement, proposal: boolean): Promise<boolean> {
    return new Promise<boolean>(resolve => {
      const entry: IPending = {
        card,
        proposal,
        settle: ok => {
          this.pending = this.pending.filter(p => p !== entry);
          card.querySelectorAll('button').forEach(b => b.remove());
          card.classList.add(ok ? 'jp-mod-accepted' : 'jp-mod-rejected');
          card.dataset.decision = ok ? 'accepted' : 'rejected';
          card.append(el('div', { class: 'jp-MiniCPM-decision', role: 'status' }, ok ? (proposal ? 'Accepted' : 'Ran') : proposal ? 'Rejected' : 'Skipped'));
          this.refreshAcceptAll();
          resolve(ok);
        }
      };
      this.pending.push(entry);
      this.add(card);
      this.refreshAcceptAll();
    });
  }

  /** "Accept all" on every waiting proposal card while more than one waits. */
  private refreshAcceptAll(): void {
    const proposals = this.pending.filter(p => p.proposal);
    for (const p of proposals) {
      const bar = p.card.querySelector('.jp-MiniCPM-agentActions');
      const all = bar?.querySelector('[data-testid="minicpm-agent-accept-all"]');
      if (proposals.length > 1 && bar && !all) {
        bar.append(button({ label: 'Accept all', text: 'Accept all', testid: 'minicpm-agent-accept-all', className: 'jp-mod-small', onclick: () => this.acceptAll() }));
      } else if (proposals.length <= 1) {
        all?.remove();
      }
    }
  }

  private acceptAll(): void {
    // one by one, in the order the model proposed them
    for (const p of this.pending.filter(x => x.proposal)) {
      p.settle(true);
    }
  }

  propose(p: IProposal): Promise<boolean> {
    const card = el('div', { class: 'jp-MiniCPM-agentCard', 'data-testid': 'minicpm-proposal', 'data-tool': p.call.tool });
    const { node, summary } = renderDiff(p.before, p.after, p.language);
    const head = el('div', { class: 'jp-MiniCPM-agentCardHead' });
    head.append(el('strong', {}, p.title), el('span', { class: 'jp-MiniCPM-diffSummary' }, ` ${summary}`));
    const bar = el('div', { class: 'jp-MiniCPM-agentActions' });
    card.append(head, node, bar);
    const done = this.wait(card, true);
    const settle = (ok: boolean) => this.pending.find(x => x.card === card)?.settle(ok);
    bar.append(
      button({ label: 'Accept', text: 'Accept', testid: 'minicpm-agent-accept', className: 'jp-mod-small jp-mod-accept', onclick: () => settle(true) }),
      button({ label: 'Reject', text: 'Reject', testid: 'minicpm-agent-reject', className: 'jp-mod-small', onclick: () => settle(false) })
    );
    this.refreshAcceptAll();
    return done;
  }

  askRun(cell: number, source: string): Promise<boolean> {
    const card = el('div', { class: 'jp-MiniCPM-agentCard', 'data-testid': 'minicpm-run-request' });
    card.append(el('div', { class: 'jp-MiniCPM-agentCardHead' }, `Run cell ${cell}?`));
    const pre = el('pre', { class: 'jp-MiniCPM-diff jp-MiniCPM-runCode' });
    pre.textContent = source; // text only
    const bar = el('div', { class: 'jp-MiniCPM-agentActions' });
    card.append(pre, bar);
    const done = this.wait(card, false);
    const settle = (ok: boolean) => this.pending.find(x => x.card === card)?.settle(ok);
    bar.append(
      button({ label: 'Run', text: 'Run', testid: 'minicpm-agent-run', className: 'jp-mod-small jp-mod-accept', onclick: () => settle(true) }),
      button({ label: 'Skip', text: 'Skip', testid: 'minicpm-agent-skip', className: 'jp-mod-small', onclick: () => settle(false) })
    );
    return done;
  }

  /** Stop: every waiting card is declined. */
  declineAll(): void {
    for (const p of [...this.pending]) {
      p.settle(false);
    }
  }

  /** After a turn that changed cells: one "Undo" for all of them. */
  offerUndo(count: number, undo: () => number): void {
    const row = el('div', { class: 'jp-MiniCPM-undoNote', role: 'status', 'data-testid': 'minicpm-agent-undo-row' },
      `This turn changed ${count} cell${count === 1 ? '' : 's'}. `);
    const b = button({
      label: 'Undo',
      text: 'Undo',
      testid: 'minicpm-agent-undo',
      className: 'jp-mod-small',
      onclick: () => {
        const n = undo();
        b.remove();
        row.append(el('span', {}, `Undone (${n} cell${n === 1 ? '' : 's'} restored).`));
      }
    });
    row.append(b);
    this.add(row);
  }
}
