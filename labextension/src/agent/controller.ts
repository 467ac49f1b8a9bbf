/**
 * Agent mode in the sidebar: the mode switch ("Agent", chat stays the default), the session's
 * "Allow runs" toggle, the agent's conversation (view.ts) and one turn at a time (loop.ts) on
 * the active notebook (nbops.ts). The panel forwards Send and Stop here while the mode is on.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';
import type { NotebookPanel } from '@jupyterlab/notebook';
import { el } from '../sidebar/dom';
import type { KernelVariables } from '../sidebar/kernelvars';
import { MENTION_TOKENS } from '../variables';
import { AgentTurn, IAgentHost, IAgentMessage, ToolChoice } from './loop';
import { NotebookOps } from './nbops';
import { readChatStream } from './stream';
import { AgentView } from './view';

export interface IAgentDeps {
  /** the active notebook (the agent works on it) */
  panel(): NotebookPanel | null;
  /** the sidebar's kernel-variable inspector */
  kernel(): KernelVariables;
  settings(): { stepLimit: number; temperature: number; maxTokens: number; agentToolChoice?: ToolChoice };
  /** the mode or the busy state changed (the panel makes Send or Stop live) */
  changed(): void;
  /** the chat's log and context bar, hidden in Agent mode */
  chatParts: Widget[];
  input: HTMLTextAreaElement;
}

/** Earlier turns' words the next turn sees (tool traffic is not kept: the outline is fresh). */
const HISTORY_TURNS = 4;

export class AgentController {
  readonly view = new AgentView();
  readonly bar = new Widget();
  readonly toggle: HTMLButtonElement;
  readonly allowRuns: HTMLInputElement;
  private turn: AgentTurn | null = null;
  private streamed = ''; // the words of the latest request, as shown while they streamed
  private history: IAgentMessage[] = [];

  constructor(private deps: IAgentDeps) {
    this.bar.addClass('jp-MiniCPM-agentBar');
    this.toggle = el('button', {
      class: 'jp-MiniCPM-button jp-Button jp-mod-styled jp-mod-small jp-MiniCPM-agentToggle',
      type: 'button',
      'aria-pressed': 'false',
      'aria-label': 'Agent',
      title: 'Agent mode: the assistant proposes cell edits, inserts, deletes and runs for you to accept',
      'data-testid': 'minicpm-agent-toggle'
    }, 'Agent');
    this.toggle.onclick = () => this.setActive(!this.active);
    const label = el('label', { class: 'jp-MiniCPM-agentAllow', title: 'Run cells the agent asks to run without asking first (this session only)' });
    this.allowRuns = el('input', { type: 'checkbox', 'data-testid': 'minicpm-agent-allow-runs' });
    label.append(this.allowRuns, el('span', {}, 'Allow runs'));
    label.hidden = true;
    this.bar.node.append(this.toggle, label);
    this.view.hide();
  }

  get active(): boolean {
    return this.toggle.getAttribute('aria-pressed') === 'true';
  }

  get busy(): boolean {
    return this.turn !== null;
  }

  setActive(on: boolean): void {
    this.toggle.setAttribute('aria-pressed', String(on));
    this.toggle.classList.toggle('jp-mod-active', on);
    (this.allowRuns.parentElement as HTMLElement).hidden = !on;
    this.view.setHidden(!on);
    this.deps.chatParts.forEach(w => w.setHidden(on));
    this.deps.input.placeholder = on ? 'Ask the agent to change the notebook…' : 'Ask about your notebook…';
    this.deps.changed();
  }

  stop(): void {
    this.turn?.stop();
    this.view.declineAll();
  }

  newChat(): void {
    this.stop();
    this.history = [];
    this.view.renderEmpty();
  }

  private host(ops: NotebookOps): IAgentHost {
    const view = this.view;
    return {
      cells: () => ops.cells(),
      setSource: (id, s) => ops.setSource(id, s),
      insert: (i, t, s, id) => ops.insert(i, t, s, id),
      remove: id => ops.remove(id),
      language: () => ops.language(),
      readCells: (a, b) => ops.readCells(a, b),
      run: id => ops.run(id),
      readVariable: name => this.describe(name),
      complete: (body, signal) => this.stream(body, signal),
      propose: p => view.propose(p),
      askRun: (cell, source) => view.askRun(cell, source),
      allowRuns: () => this.allowRuns.checked,
      trace: (text, kind) => view.trace(text, kind)
    };
  }

  /** One model request, streamed: its words appear as they come; the folded reply returns. */
  private async stream(body: Record<string, unknown>, signal: AbortSignal): Promise<any> {
    const live = this.view.liveAnswer();
    const settings = ServerConnection.makeSettings();
    const url = URLExt.join(settings.baseUrl, 'minicpm/v1/chat/completions');
    const init = { method: 'POST', body: JSON.stringify({ ...body, stream: true }), headers: { 'Content-Type': 'application/json' }, signal };
    const reply = await readChatStream(await ServerConnection.makeRequest(url, init, settings), live.append);
    this.streamed = live.text();
    return reply;
  }

  /** read_variable: the inspector's description (as an @mention gets it), or why there is none. */
  private async describe(name: string): Promise<string> {
    const kernel = this.deps.kernel();
    const { descriptions, missing } = await kernel.describe([name], MENTION_TOKENS, MENTION_TOKENS);
    if (descriptions.length) {
      return descriptions[0].text;
    }
    return missing.length ? `no variable named ${name} in the kernel` : `error: ${kernel.note || 'the kernel did not answer'}`;
  }

  /** Run one turn on the active notebook. */
  async send(text: string): Promise<void> {
    if (this.turn || !text.trim()) {
      return;
    }
    const panel = this.deps.panel();
    this.view.addUser(text);
    if (!panel) {
      this.view.note('Open a notebook first: the agent works on the active notebook.', true);
      return;
    }
    const turn = new AgentTurn(this.host(new NotebookOps(panel)), this.deps.settings());
    this.streamed = '';
    this.turn = turn;
    this.deps.changed();
    try {
      const r = await turn.run(this.history.slice(-2 * HISTORY_TURNS), text);
      if (r.answer && r.answer !== this.streamed) {
        this.view.addAnswer(r.answer); // (streamed words are on screen already)
      }
      if (r.reason === 'step-limit') {
        this.view.note(`Stopped after ${r.steps} steps (the step limit; change it in the settings).`);
      } else if (r.reason === 'stopped') {
        this.view.note('Stopped.');
      } else if (r.reason === 'error') {
        this.view.note(`Error: ${r.error}`, true);
      }
      this.history.push({ role: 'user', content: text }, { role: 'assistant', content: r.answer || '(no answer)' });
      if (!r.checkpoint.empty) {
        this.view.offerUndo(r.checkpoint.count, () => r.checkpoint.undo());
      }
    } finally {
      this.turn = null;
      this.deps.changed();
    }
  }
}
