/** The MiniCPM sidebar: model picker and status, conversation, context chips, input. */
import { Widget } from '@lumino/widgets';
import { Clipboard, Notification } from '@jupyterlab/apputils';
import { IRenderMimeRegistry, MimeModel, IRenderMime } from '@jupyterlab/rendermime';
import { ApiError, IChatStream, MiniCPMClient } from './api';
import { NotebookBridge } from './notebook';
import type {
  IChatMessage,
  IContextPart,
  IModelRow,
  IStatus,
  IUsage
} from './protocol';
import { INotebookContext, totalTokens } from './context';

export interface IMiniCPMSettings {
  defaultModel: string;
  temperature: number;
  maxTokens: number;
  sendNotebookByDefault: boolean;
  sendImagesByDefault: boolean;
  notebookTokenBudget: number;
}

export const DEFAULT_SETTINGS: IMiniCPMSettings = {
  defaultModel: '',
  temperature: 0.7,
  maxTokens: 512,
  sendNotebookByDefault: false,
  sendImagesByDefault: true,
  notebookTokenBudget: 3000
};

const KIND_ICON: Record<string, string> = {
  cell: '⌨',
  output: '▤',
  error: '⚠',
  image: '🖼',
  text: '¶',
  notebook: '📓'
};

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      e.className = v;
    } else {
      e.setAttribute(k, v);
    }
  }
  if (text !== undefined) {
    e.textContent = text;
  }
  return e;
}

function newChatId(): string {
  return `chat-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

export class ChatPanel extends Widget {
  settings: IMiniCPMSettings = { ...DEFAULT_SETTINGS };
  private chatId = newChatId();
  private title_ = '';
  private messages: IChatMessage[] = [];
  private chips: IContextPart[] = [];
  private stream: IChatStream | null = null;
  private status: IStatus | null = null;
  private pollTimer: any = null;
  private renderers: IRenderMime.IRenderer[] = [];
  private notebookCtx: INotebookContext | null = null;

  // DOM
  private modelSelect: HTMLSelectElement;
  private statusText: HTMLElement;
  private standInBadge: HTMLElement;
  private progress: HTMLProgressElement;
  private hintText: HTMLElement;
  private historyBox: HTMLElement;
  private historyButton: HTMLButtonElement;
  private log: HTMLElement;
  private chipList: HTMLElement;
  private budgetText: HTMLElement;
  private notebookToggle: HTMLInputElement;
  private imagesToggle: HTMLInputElement;
  readonly input: HTMLTextAreaElement;
  private sendButton: HTMLButtonElement;
  private stopButton: HTMLButtonElement;

  constructor(
    private client: MiniCPMClient,
    private rendermime: IRenderMimeRegistry,
    private notebooks: NotebookBridge
  ) {
    super();
    this.id = 'minicpm-chat';
    this.addClass('jp-MiniCPM');
    this.title.caption = 'MiniCPM chat';
    const root = this.node;
    root.setAttribute('role', 'region');
    root.setAttribute('aria-label', 'MiniCPM chat');

    // header: model, status, new chat, history
    const header = el('div', { class: 'jp-MiniCPM-header' });
    this.modelSelect = el('select', {
      class: 'jp-MiniCPM-model jp-mod-styled',
      'aria-label': 'Model',
      'data-testid': 'minicpm-model',
      title: 'Model (choosing one loads it)'
    });
    this.modelSelect.onchange = () => void this.loadModel(this.modelSelect.value);
    const newButton = this.button('New chat', '＋', 'minicpm-new', () => this.newChat());
    this.historyButton = this.button('Saved chats', '☰', 'minicpm-history', () =>
      void this.toggleHistory()
    );
    this.historyButton.setAttribute('aria-expanded', 'false');
    header.append(this.modelSelect, newButton, this.historyButton);

    const statusRow = el('div', { class: 'jp-MiniCPM-statusRow' });
    this.statusText = el('span', {
      class: 'jp-MiniCPM-status',
      role: 'status',
      'aria-live': 'polite',
      'data-testid': 'minicpm-status'
    }, 'Connecting…');
    this.standInBadge = el('span', {
      class: 'jp-MiniCPM-badge',
      title: 'Not a MiniCPM model: the small embedded stand-in (SmolLM2-135M) answers until MiniCPM weights are installed',
      'data-testid': 'minicpm-standin'
    }, 'stand-in');
    this.standInBadge.hidden = true;
    this.progress = el('progress', {
      class: 'jp-MiniCPM-progress',
      max: '1',
      value: '0',
      'aria-label': 'Model loading progress'
    });
    this.progress.hidden = true;
    statusRow.append(this.statusText, this.standInBadge, this.progress);
    this.hintText = el('div', { class: 'jp-MiniCPM-hint' });
    this.hintText.hidden = true;

    this.historyBox = el('div', {
      class: 'jp-MiniCPM-historyBox',
      role: 'list',
      'aria-label': 'Saved chats'
    });
    this.historyBox.hidden = true;

    this.log = el('div', {
      class: 'jp-MiniCPM-log',
      role: 'log',
      'aria-live': 'polite',
      'aria-label': 'Conversation',
      tabindex: '0'
    });
    this.renderEmpty();

    // context
    const ctx = el('div', { class: 'jp-MiniCPM-context' });
    this.chipList = el('div', {
      class: 'jp-MiniCPM-chips',
      role: 'list',
      'aria-label': 'Attached context',
      'data-testid': 'minicpm-chips'
    });
    const ctxBar = el('div', { class: 'jp-MiniCPM-ctxBar' });
    ctxBar.append(
      this.button('Attach the active cell', '+ Cell', 'minicpm-add-cell', () =>
        this.attach(this.notebooks.cellContext(undefined, this.imagesToggle.checked))
      , true),
      this.button('Attach the selected cells', '+ Selected', 'minicpm-add-selected', () =>
        this.attach(this.notebooks.selectedContext(this.imagesToggle.checked))
      , true),
      this.button("Attach the active cell's outputs", '+ Outputs', 'minicpm-add-outputs', () =>
        this.attach(this.notebooks.outputsContext(undefined, this.imagesToggle.checked))
      , true)
    );
    const nbLabel = el('label', { class: 'jp-MiniCPM-toggle' });
    this.notebookToggle = el('input', {
      type: 'checkbox',
      'data-testid': 'minicpm-whole-notebook'
    });
    this.notebookToggle.onchange = () => this.refreshContext();
    nbLabel.append(this.notebookToggle, document.createTextNode(' Whole notebook'));
    const imLabel = el('label', { class: 'jp-MiniCPM-toggle' });
    this.imagesToggle = el('input', { type: 'checkbox', 'data-testid': 'minicpm-images' });
    this.imagesToggle.checked = true;
    imLabel.append(this.imagesToggle, document.createTextNode(' Images'));
    ctxBar.append(nbLabel, imLabel);
    this.budgetText = el('div', {
      class: 'jp-MiniCPM-budget',
      'aria-live': 'polite',
      'data-testid': 'minicpm-budget'
    });
    ctx.append(this.chipList, ctxBar, this.budgetText);

    // input
    const inputRow = el('div', { class: 'jp-MiniCPM-inputRow' });
    this.input = el('textarea', {
      class: 'jp-MiniCPM-input',
      'data-testid': 'minicpm-input',
      'aria-label': 'Message to MiniCPM',
      rows: '3',
      placeholder: 'Ask about your notebook… (Enter sends, Shift+Enter new line, Esc stops)'
    });
    this.input.onkeydown = ev => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        void this.send();
      } else if (ev.key === 'Escape' && this.stream) {
        ev.preventDefault();
        this.stop();
      }
    };
    this.input.onfocus = () => this.refreshContext();
    const buttons = el('div', { class: 'jp-MiniCPM-sendButtons' });
    this.sendButton = this.button('Send', 'Send', 'minicpm-send', () => void this.send());
    this.sendButton.classList.add('jp-mod-accept');
    this.stopButton = this.button('Stop generating', 'Stop', 'minicpm-stop', () => this.stop());
    this.stopButton.classList.add('jp-mod-warn');
    this.stopButton.disabled = true;
    buttons.append(this.sendButton, this.stopButton);
    inputRow.append(this.input, buttons);

    root.append(header, statusRow, this.hintText, this.historyBox, this.log, ctx, inputRow);
    this.refreshContext();
  }

  private button(
    label: string,
    text: string,
    testid: string,
    onclick: () => void,
    small = false
  ): HTMLButtonElement {
    const b = el('button', {
      class: `jp-MiniCPM-button jp-Button jp-mod-styled${small ? ' jp-mod-small' : ''}`,
      type: 'button',
      'aria-label': label,
      title: label,
      'data-testid': testid
    }, text);
    b.onclick = ev => {
      ev.preventDefault();
      onclick();
    };
    return b;
  }

  applySettings(s: Partial<IMiniCPMSettings>): void {
    const first = this.settings === DEFAULT_SETTINGS;
    this.settings = { ...DEFAULT_SETTINGS, ...s };
    void first;
    this.notebookToggle.checked = this.settings.sendNotebookByDefault;
    this.imagesToggle.checked = this.settings.sendImagesByDefault;
    this.refreshContext();
  }

  // --- status and models -------------------------------------------------------------------
  async start(): Promise<void> {
    await this.refreshModels();
    const st = await this.pollStatus();
    if (st && st.state === 'idle' && this.settings.defaultModel) {
      await this.loadModel(this.settings.defaultModel);
    }
  }

  async refreshModels(): Promise<void> {
    try {
      const r = await this.client.models();
      const sel = this.modelSelect;
      sel.textContent = '';
      const auto = el('option', { value: '' }, 'Default model');
      sel.append(auto);
      const rows: IModelRow[] = [...r.models].sort(
        (a, b) => Number(b.available) - Number(a.available)
      );
      for (const m of rows) {
        const label = m.stand_in ? `${m.name} (stand-in)` : m.name;
        const opt = el('option', { value: m.name }, m.available ? label : `${label} — not downloaded`);
        if (!m.available) {
          opt.disabled = true;
        }
        sel.append(opt);
      }
      sel.value = r.current || '';
    } catch (e) {
      this.showStatusError(e);
    }
  }

  private async pollStatus(): Promise<IStatus | null> {
    clearTimeout(this.pollTimer);
    let st: IStatus | null = null;
    try {
      st = await this.client.status();
      this.showStatus(st);
    } catch (e) {
      this.showStatusError(e);
    }
    if (!this.isDisposed) {
      const delay = st && st.state === 'loading' ? 700 : 10000;
      this.pollTimer = setTimeout(() => void this.pollStatus(), delay);
    }
    return st;
  }

  private showStatusError(e: unknown): void {
    this.statusText.textContent =
      e instanceof ApiError && e.status === 404
        ? 'MiniCPM server extension not found (is minicpm_server enabled?)'
        : `Server unreachable: ${(e as Error).message || e}`;
    this.statusText.dataset.state = 'error';
  }

  private showStatus(st: IStatus): void {
    this.status = st;
    this.statusText.dataset.state = st.state;
    const name = st.model ? st.model.label || st.model.model : st.loading || '';
    const standIn =
      !!st.model?.stand_in ||
      (st.state === 'loading' && /SmolLM2|stand-in/i.test(st.loading || ''));
    this.standInBadge.hidden = !standIn;
    this.progress.hidden = st.state !== 'loading';
    this.progress.value = st.progress || 0;
    let text = '';
    switch (st.state) {
      case 'ready':
        text = `Ready · ${name}`;
        break;
      case 'loading':
        text = `Loading ${name || 'model'}… ${Math.round((st.progress || 0) * 100)}%`;
        break;
      case 'error':
        text = `Error: ${st.error || 'the model failed to load'}`;
        break;
      default:
        text = 'No model loaded — the default loads with the first message';
    }
    if (st.queue && st.queue.waiting) {
      text += ` · ${st.queue.waiting} waiting`;
    }
    this.statusText.textContent = text;
    this.hintText.textContent = st.hint || '';
    this.hintText.hidden = !st.hint;
    if (st.model && this.modelSelect.value !== st.model.model) {
      const has = [...this.modelSelect.options].some(o => o.value === st.model!.model);
      if (has) {
        this.modelSelect.value = st.model.model;
      }
    }
  }

  async loadModel(name: string): Promise<void> {
    try {
      const st = await this.client.load(name || null);
      this.showStatus(st);
      void this.pollStatus();
    } catch (e) {
      Notification.error(`MiniCPM: could not load ${name || 'the default model'}: ${(e as Error).message}`);
    }
  }

  // --- context -----------------------------------------------------------------------------
  attach(parts: IContextPart[]): void {
    if (!parts.length) {
      Notification.info('MiniCPM: nothing to attach (open a notebook and select a cell).', {
        autoClose: 3000
      });
      return;
    }
    for (const p of parts) {
      const dup = this.chips.findIndex(
        c => c.kind === p.kind && c.label === p.label && c.text === p.text && c.data === p.data
      );
      if (dup < 0) {
        this.chips.push(p);
      }
    }
    this.refreshContext();
  }

  clearContext(): void {
    this.chips = [];
    this.refreshContext();
  }

  get context(): IContextPart[] {
    return [...this.chips];
  }

  /** Chips, the whole-notebook chip and the token budget line. */
  refreshContext(): void {
    this.chipList.textContent = '';
    const chip = (p: IContextPart, onRemove: () => void) => {
      const c = el('span', {
        class: `jp-MiniCPM-chip jp-MiniCPM-chip-${p.kind}`,
        role: 'listitem',
        'data-testid': 'minicpm-chip',
        'data-kind': p.kind,
        title: p.kind === 'image' ? p.label : (p.text || '').slice(0, 400)
      });
      c.append(el('span', { 'aria-hidden': 'true' }, KIND_ICON[p.kind] || '•'));
      c.append(el('span', { class: 'jp-MiniCPM-chipLabel' }, `${p.label}${p.kind === 'error' ? ' error' : ''}`));
      if (p.truncated) {
        c.append(el('span', { class: 'jp-MiniCPM-chipNote' }, 'truncated'));
      }
      const x = el('button', {
        class: 'jp-MiniCPM-chipRemove',
        type: 'button',
        'aria-label': `Remove ${p.label}${p.kind === 'error' ? ' error' : ''} from context`,
        title: 'Remove'
      }, '×');
      x.onclick = ev => {
        ev.preventDefault();
        onRemove();
      };
      c.append(x);
      this.chipList.append(c);
    };
    this.chips.forEach((p, i) =>
      chip(p, () => {
        this.chips.splice(i, 1);
        this.refreshContext();
      })
    );
    this.notebookCtx = null;
    if (this.notebookToggle.checked) {
      this.notebookCtx = this.notebooks.notebookContext(this.settings.notebookTokenBudget);
      if (this.notebookCtx) {
        chip(this.notebookCtx.part, () => {
          this.notebookToggle.checked = false;
          this.refreshContext();
        });
      }
    }
    const tokens = totalTokens(this.chips) + (this.notebookCtx?.tokens || 0);
    let line = tokens ? `Context ≈ ${tokens} tokens` : '';
    if (this.notebookToggle.checked) {
      if (!this.notebookCtx) {
        line = 'Whole notebook: no notebook open';
      } else {
        const n = this.notebookCtx;
        line = `Context ≈ ${tokens} tokens · notebook ${n.tokens} / ${n.budget} budget`;
        if (n.truncated) {
          line += ` · truncated: ${n.included} of ${n.included + n.omitted} cells fit (nearest the active cell kept)`;
        }
      }
    }
    this.budgetText.textContent = line;
    this.budgetText.hidden = !line;
    this.budgetText.classList.toggle('jp-mod-truncated', !!this.notebookCtx?.truncated);
  }

  // --- conversation ------------------------------------------------------------------------
  private renderEmpty(): void {
    this.log.textContent = '';
    const e = el('div', { class: 'jp-MiniCPM-empty' });
    e.append(
      el('p', {}, 'Ask MiniCPM about your notebook. It runs on this machine.'),
      el('p', {}, 'Attach cells, outputs or figures with the buttons below, or use “Explain cell”, “Fix error” and “Explain image” from a cell’s context menu.')
    );
    this.log.append(e);
  }

  newChat(): void {
    this.stop();
    this.chatId = newChatId();
    this.title_ = '';
    this.messages = [];
    this.renderers.forEach(r => r.dispose());
    this.renderers = [];
    this.renderEmpty();
    this.clearContext();
    this.input.focus();
  }

  /** The last status the server reported. */
  get serverStatus(): IStatus | null {
    return this.status;
  }

  focusInput(): void {
    this.input.focus();
  }

  get busy(): boolean {
    return this.stream !== null;
  }

  private messageNode(msg: IChatMessage): { node: HTMLElement; body: HTMLElement; footer: HTMLElement } {
    this.log.querySelector('.jp-MiniCPM-empty')?.remove();
    const node = el('div', {
      class: `jp-MiniCPM-message jp-MiniCPM-${msg.role}`,
      'data-testid': 'minicpm-message',
      'data-role': msg.role
    });
    const who = el('div', { class: 'jp-MiniCPM-who' }, msg.role === 'user' ? 'You' : (msg.model || 'MiniCPM'));
    const body = el('div', { class: 'jp-MiniCPM-body' });
    const footer = el('div', { class: 'jp-MiniCPM-footer', 'data-testid': 'minicpm-usage' });
    node.append(who);
    if (msg.role === 'user' && msg.context && msg.context.length) {
      const used = el('div', { class: 'jp-MiniCPM-used', 'aria-label': 'Context sent' });
      for (const p of msg.context) {
        used.append(el('span', { class: 'jp-MiniCPM-chip jp-mod-readonly', 'data-kind': p.kind },
          `${KIND_ICON[p.kind] || ''} ${p.label}${p.kind === 'error' ? ' error' : ''}${p.truncated ? ' (truncated)' : ''}`));
      }
      node.append(used);
    }
    node.append(body, footer);
    this.log.append(node);
    return { node, body, footer };
  }

  private renderUser(msg: IChatMessage): void {
    const { body } = this.messageNode(msg);
    body.textContent = msg.content;
    body.classList.add('jp-MiniCPM-userText');
  }

  /** Markdown through JupyterLab's rendermime (code highlighted as in markdown cells). */
  private async renderMarkdown(host: HTMLElement, text: string, prev?: IRenderMime.IRenderer): Promise<IRenderMime.IRenderer> {
    const r = prev || this.rendermime.createRenderer('text/markdown');
    if (!prev) {
      this.renderers.push(r);
      host.textContent = '';
      host.append(r.node);
    }
    await r.renderModel(new MimeModel({ data: { 'text/markdown': text }, trusted: false }));
    return r;
  }

  private addCodeActions(host: HTMLElement): void {
    host.querySelectorAll('pre').forEach(pre => {
      if (pre.parentElement?.classList.contains('jp-MiniCPM-code')) {
        return;
      }
      const wrap = el('div', { class: 'jp-MiniCPM-code' });
      pre.replaceWith(wrap);
      wrap.append(pre);
      const code = () => (pre.textContent || '').replace(/\n$/, '');
      const bar = el('div', { class: 'jp-MiniCPM-codeBar', role: 'toolbar', 'aria-label': 'Code block actions' });
      const act = (label: string, text: string, testid: string, fn: () => void | Promise<void>) => {
        const b = el('button', {
          class: 'jp-MiniCPM-codeButton',
          type: 'button',
          'aria-label': label,
          title: label,
          'data-testid': testid
        }, text);
        b.onclick = async ev => {
          ev.preventDefault();
          try {
            await fn();
          } catch (e) {
            Notification.error(`MiniCPM: ${(e as Error).message}`, { autoClose: 4000 });
          }
        };
        bar.append(b);
      };
      act('Copy code', 'Copy', 'minicpm-copy', () => {
        Clipboard.copyToSystem(code());
        Notification.success('Code copied', { autoClose: 1500 });
      });
      act('Insert code as a new cell below the active cell', 'Insert below', 'minicpm-insert', () =>
        this.notebooks.insertBelow(code())
      );
      act('Replace the active cell with this code', 'Replace cell', 'minicpm-replace', () =>
        this.notebooks.replaceActive(code())
      );
      act('Insert code below and run it', 'Insert & run', 'minicpm-insert-run', () =>
        this.notebooks.insertAndRun(code())
      );
      wrap.prepend(bar);
    });
  }

  private renderFooter(footer: HTMLElement, msg: IChatMessage): void {
    const u: IUsage = msg.usage || {};
    const bits: string[] = [];
    if (typeof u.tokens_per_second === 'number') {
      bits.push(`${u.tokens_per_second.toFixed(1)} tokens/s`);
    }
    if (typeof u.completion_tokens === 'number') {
      bits.push(`${u.completion_tokens} tokens`);
    }
    if (typeof u.time_to_first_token === 'number') {
      bits.push(`first token ${u.time_to_first_token.toFixed(2)} s`);
    }
    if (msg.finish_reason === 'cancelled') {
      bits.push('stopped');
    } else if (msg.finish_reason === 'length') {
      bits.push('hit max tokens');
    }
    footer.textContent = bits.join(' · ');
  }

  private async renderAssistant(msg: IChatMessage): Promise<void> {
    const { body, footer } = this.messageNode(msg);
    await this.renderMarkdown(body, msg.content);
    this.addCodeActions(body);
    this.renderFooter(footer, msg);
  }

  /** Send the input (or `question`) with the attached context. */
  async send(question?: string): Promise<void> {
    if (this.stream) {
      return;
    }
    const text = (question ?? this.input.value).trim();
    this.refreshContext();
    const context = [...this.chips];
    if (this.notebookCtx) {
      context.push(this.notebookCtx.part);
    }
    if (!text && !context.length) {
      this.input.focus();
      return;
    }
    const content = text || 'Explain this.';
    const user: IChatMessage = { role: 'user', content, context };
    if (!this.title_) {
      this.title_ = content.slice(0, 60);
    }
    const history = this.messages.map(m => ({ role: m.role, content: m.content }));
    this.messages.push(user);
    this.renderUser(user);
    this.input.value = '';
    this.chips = [];
    this.refreshContext();

    const answer: IChatMessage = { role: 'assistant', content: '' };
    const { node, body, footer } = this.messageNode(answer);
    node.setAttribute('aria-busy', 'true');
    node.classList.add('jp-mod-streaming');
    const who = node.querySelector('.jp-MiniCPM-who') as HTMLElement;
    footer.textContent = 'Waiting for the model…';
    let notice_ = '';
    let renderer: IRenderMime.IRenderer | undefined;
    let rendering = false;
    let dirty = false;
    const flush = async () => {
      if (rendering) {
        dirty = true;
        return;
      }
      rendering = true;
      do {
        dirty = false;
        renderer = await this.renderMarkdown(body, answer.content, renderer);
      } while (dirty);
      rendering = false;
      this.log.scrollTop = this.log.scrollHeight;
    };
    let timer: any = null;
    const schedule = () => {
      if (!timer) {
        timer = setTimeout(() => {
          timer = null;
          void flush();
        }, 80);
      }
    };
    this.setBusy(true);
    const stream = this.client.chat(
      {
        messages: [...history, { role: 'user', content }],
        context,
        sampling: {
          temperature: this.settings.temperature,
          max_tokens: this.settings.maxTokens
        }
      },
      {
        onQueued: pos => (footer.textContent = `Queued (position ${pos})…`),
        onStart: (model, notice) => {
          answer.model = model;
          notice_ = notice || '';
          who.textContent = model;
          footer.textContent = notice || 'Generating…';
        },
        onDelta: t => {
          answer.content += t;
          schedule();
        }
      }
    );
    this.stream = stream;
    try {
      const done = await stream.done;
      answer.usage = done.usage;
      answer.finish_reason = done.finish_reason;
      clearTimeout(timer);
      timer = null;
      await flush();
      this.addCodeActions(body);
      this.renderFooter(footer, answer);
      if (notice_) {
        footer.append(el('div', { class: 'jp-MiniCPM-notice', role: 'note' }, notice_));
      }
      if (done.truncated) {
        footer.append(el('span', { class: 'jp-MiniCPM-truncNote' }, ' · context truncated to fit the model'));
      }
    } catch (e) {
      clearTimeout(timer);
      await flush();
      const err = el('div', { class: 'jp-MiniCPM-error', role: 'alert' }, `Error: ${(e as Error).message}`);
      body.append(err);
      answer.finish_reason = 'error';
      footer.textContent = '';
    } finally {
      node.removeAttribute('aria-busy');
      node.classList.remove('jp-mod-streaming');
      this.stream = null;
      this.setBusy(false);
    }
    this.messages.push(answer);
    void this.save();
    void this.pollStatus();
  }

  stop(): void {
    this.stream?.stop();
  }

  private setBusy(busy: boolean): void {
    this.stopButton.disabled = !busy;
    this.sendButton.disabled = busy;
    this.node.classList.toggle('jp-mod-busy', busy);
  }

  // --- saved chats ---------------------------------------------------------------------------
  private async save(): Promise<void> {
    try {
      await this.client.saveChat(this.chatId, { title: this.title_, messages: this.messages });
      if (!this.historyBox.hidden) {
        await this.renderHistory();
      }
    } catch (e) {
      console.warn('MiniCPM: could not save the chat', e);
    }
  }

  private async toggleHistory(): Promise<void> {
    const show = this.historyBox.hidden;
    this.historyBox.hidden = !show;
    this.historyButton.setAttribute('aria-expanded', String(show));
    if (show) {
      await this.renderHistory();
    }
  }

  private async renderHistory(): Promise<void> {
    this.historyBox.textContent = '';
    let chats;
    try {
      chats = await this.client.listChats();
    } catch (e) {
      this.historyBox.append(el('div', { class: 'jp-MiniCPM-error' }, `Could not list chats: ${(e as Error).message}`));
      return;
    }
    if (!chats.length) {
      this.historyBox.append(el('div', { class: 'jp-MiniCPM-muted' }, 'No saved chats yet.'));
      return;
    }
    chats.sort((a, b) => (String(b.updated) > String(a.updated) ? 1 : -1));
    for (const c of chats) {
      const row = el('div', { class: 'jp-MiniCPM-historyRow', role: 'listitem' });
      const when = typeof c.updated === 'number' ? new Date(c.updated * 1000).toLocaleString() : String(c.updated || '');
      const open = el('button', {
        class: 'jp-MiniCPM-historyOpen',
        type: 'button',
        'aria-label': `Open chat ${c.title || c.id}`,
        title: when
      });
      open.append(
        el('span', { class: 'jp-MiniCPM-historyTitle' }, c.title || c.id),
        el('span', { class: 'jp-MiniCPM-muted' }, ` · ${c.n_messages} messages`)
      );
      if (c.id === this.chatId) {
        row.classList.add('jp-mod-current');
      }
      open.onclick = () => void this.openChat(c.id);
      const del = el('button', {
        class: 'jp-MiniCPM-chipRemove',
        type: 'button',
        'aria-label': `Delete chat ${c.title || c.id}`,
        title: 'Delete'
      }, '🗑');
      del.onclick = async () => {
        await this.client.deleteChat(c.id);
        if (c.id === this.chatId) {
          this.chatId = newChatId();
        }
        await this.renderHistory();
      };
      row.append(open, del);
      this.historyBox.append(row);
    }
  }

  async openChat(id: string): Promise<void> {
    this.stop();
    const chat = await this.client.getChat(id);
    this.chatId = chat.id;
    this.title_ = chat.title;
    this.messages = chat.messages || [];
    this.renderers.forEach(r => r.dispose());
    this.renderers = [];
    this.log.textContent = '';
    if (!this.messages.length) {
      this.renderEmpty();
    }
    for (const m of this.messages) {
      if (m.role === 'user') {
        this.renderUser(m);
      } else if (m.role === 'assistant') {
        await this.renderAssistant(m);
      }
    }
    this.log.scrollTop = this.log.scrollHeight;
  }

  dispose(): void {
    clearTimeout(this.pollTimer);
    this.stream?.stop();
    this.renderers.forEach(r => r.dispose());
    super.dispose();
  }
}
