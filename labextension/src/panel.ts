/**
 * The MiniCPM sidebar, put together from its parts (src/sidebar/): status header, saved chats,
 * conversation, context bar, input box. The chat itself is a ChatSession that the parts observe.
 */
import { PanelLayout, Widget } from '@lumino/widgets';
import { Clipboard, Notification } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { MiniCPMClient } from './api';
import { PROMPTS } from './context';
import { NotebookBridge } from './notebook';
import type { IContextPart, IStatus } from './protocol';
import { ContextBar } from './sidebar/contextbar';
import { StatusHeader } from './sidebar/header';
import { HistoryList, lastChatId } from './sidebar/history';
import { InputBox } from './sidebar/inputbox';
import { MessageView } from './sidebar/messages';
import { replaceWithUndo } from './sidebar/replacecell';
import { ChatSession } from './sidebar/session';
import { DEFAULT_SETTINGS, IMiniCPMSettings } from './sidebar/settings';
import { StatusPoller } from './sidebar/statuspoll';
import { VariablesController } from './sidebar/variablesctl';
import { AgentController } from './agent/controller';

export { DEFAULT_SETTINGS, IMiniCPMSettings };

export class ChatPanel extends Widget {
  settings: IMiniCPMSettings = { ...DEFAULT_SETTINGS };
  readonly session: ChatSession;
  private status: IStatus | null = null;
  private poller: StatusPoller;
  private header: StatusHeader;
  private history: HistoryList;
  private messages: MessageView;
  readonly contextBar: ContextBar; // public: the pre-read reads what Send would attach
  private inputBox: InputBox;
  /** kernel variables: @mentions, automatic variables, DataFrames */
  readonly variables: VariablesController;
  readonly agent: AgentController; // Agent mode: the model proposes notebook edits, the user accepts each

  constructor(
    private client: MiniCPMClient,
    rendermime: IRenderMimeRegistry,
    private notebooks: NotebookBridge
  ) {
    super();
    this.id = 'minicpm-chat';
    this.addClass('jp-MiniCPM');
    this.title.caption = 'MiniCPM chat';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'MiniCPM chat');
    this.session = new ChatSession(client);
    this.poller = new StatusPoller(() => client.status(), st => this.showStatus(st), e => this.header.showError(e));

    this.header = new StatusHeader({
      newChat: () => this.newChat(),
      toggleHistory: () => void this.history.toggle().then(open => this.header.setHistoryOpen(open)),
      load: name => void this.loadModel(name)
    });
    this.history = new HistoryList(client, this.session, id => this.openChat(id));
    this.messages = new MessageView(this.session, rendermime, {
      copy: code => {
        Clipboard.copyToSystem(code);
        Notification.success('Code copied', { autoClose: 1500 });
      },
      insertBelow: code => this.notebooks.insertBelow(code),
      replace: (code, index) => replaceWithUndo(notebooks, code, this.cellIdOf(index)),
      replaceTarget: index => this.notebooks.replaceTarget(this.cellIdOf(index)),
      insertAndRun: code => this.notebooks.insertAndRun(code),
      continue: () => void this.send('Continue.')
    });
    this.contextBar = new ContextBar(notebooks, () => this.settings.notebookTokenBudget, () => this.status);
    this.variables = new VariablesController(notebooks, this.contextBar, () => this.status,
      () => this.settings.autoVariables);
    this.inputBox = new InputBox({
      send: () => void this.send(),
      stop: () => this.stop(),
      focused: () => this.refreshContext(),
      variables: () => this.variables.variables(),
      mentionsChanged: () => void this.variables.syncMentions(this.input.value)
    });
    this.agent = new AgentController({
      panel: () => notebooks.panel, kernel: () => this.variables.kernel, changed: () => this.modeChanged(),
      settings: () => ({ ...this.settings, stepLimit: this.settings.agentStepLimit }),
      chatParts: [this.messages, this.contextBar], input: this.inputBox.input
    });
    this.session.changed.connect((_, change) => change.type === 'phase' && this.modeChanged());
    const layout = new PanelLayout();
    const parts = [this.header, this.history, this.messages, this.agent.view, this.contextBar, this.agent.bar, this.inputBox];
    for (const w of parts) {
      layout.addWidget(w);
    }
    this.layout = layout;
  }

  get input(): HTMLTextAreaElement {
    return this.inputBox.input;
  }

  applySettings(s: Partial<IMiniCPMSettings>): void {
    this.settings = { ...DEFAULT_SETTINGS, ...s };
    this.contextBar.notebookToggle.checked = this.settings.sendNotebookByDefault;
    this.contextBar.imagesToggle.checked = this.settings.sendImagesByDefault;
    this.refreshContext();
  }

  private modeChanged(): void { // a chat or an agent turn started or ended: Send or Stop is live
    this.inputBox.setBusy(this.busy);
    this.node.classList.toggle('jp-mod-busy', this.busy);
  }

  // --- status and models -------------------------------------------------------------------
  async start(): Promise<void> {
    const last = lastChatId();
    if (last && !this.session.messages.length) {
      // a reload reopens the chat the user was in
      await this.session.open(last).catch(() => undefined);
    }
    await this.refreshModels();
    const st = await this.poller.poll();
    if (st && st.state === 'idle' && this.settings.defaultModel) {
      await this.loadModel(this.settings.defaultModel);
    }
  }

  async refreshModels(): Promise<void> {
    try {
      this.header.setModels(await this.client.models());
    } catch (e) {
      this.header.showError(e);
    }
  }

  private showStatus(st: IStatus): void {
    const first = !this.status;
    this.status = st;
    this.header.showStatus(st);
    this.messages.status = st;
    if (first || !this.session.messages.length) {
      this.messages.renderEmpty();
    }
    this.contextBar.refresh();
  }

  /** The last status the server reported. */
  get serverStatus(): IStatus | null {
    return this.status;
  }

  async loadModel(name: string): Promise<void> {
    try {
      this.showStatus(await this.client.load(name || null));
      void this.poller.poll();
    } catch (e) {
      Notification.error(`MiniCPM: could not load ${name || 'the default model'}: ${(e as Error).message}`);
    }
  }

  // --- context -----------------------------------------------------------------------------
  attach(parts: IContextPart[]): void {
    this.contextBar.attach(parts);
  }

  clearContext(): void {
    this.contextBar.clear();
    this.variables.reset();
  }

  get context(): IContextPart[] {
    return this.contextBar.attached;
  }

  refreshContext(): void {
    this.contextBar.refresh();
  }

  /**
   * A one-click action (Explain cell, Fix error, Explain image): attach `parts` and put
   * `prompt` in the input for review, or send at once (setting `sendActionsAtOnce`).
   */
  async attachAndAsk(parts: IContextPart[], prompt: string, cellIndex?: number): Promise<void> {
    // Explain cell / Fix error: the variables the cell reads and the cells defining them too
    const auto = cellIndex === undefined ? [] : await this.variables.automatic(cellIndex, parts);
    this.attach([...parts, ...auto]);
    if (this.settings.sendActionsAtOnce && !this.busy) {
      await this.send(prompt);
      return;
    }
    // keep what the user was typing; replace only an empty input or an earlier action's prompt
    const typed = this.input.value.trim();
    this.input.focus();
    if (!typed || Object.values(PROMPTS).includes(typed)) {
      this.input.value = prompt;
      this.input.select(); // one keystroke replaces it with the user's own question
    }
  }

  // --- conversation ------------------------------------------------------------------------
  newChat(): void {
    this.agent.newChat();
    this.session.reset();
    this.clearContext();
    this.input.focus();
  }

  async openChat(id: string): Promise<void> {
    try {
      await this.session.open(id);
    } catch (e) {
      Notification.error(`MiniCPM: could not open the chat: ${(e as Error).message}`);
    }
  }

  focusInput(): void {
    this.input.focus();
  }

  get busy(): boolean {
    return this.session.busy || this.agent.busy;
  }

  /** Send the input (or `question`) with the attached context. */
  async send(question?: string): Promise<void> {
    if (this.busy) {
      return;
    }
    if (this.agent.active) {
      return this.agent.send((question ?? this.inputBox.take()).trim());
    }
    const text = (question ?? this.input.value).trim();
    await this.variables.syncMentions(text); // @names typed just before Enter
    const context = this.contextBar.parts();
    if (!text && !context.length) {
      this.input.focus();
      return;
    }
    if (question === undefined) {
      this.inputBox.take();
    }
    this.clearContext();
    await this.session.send(text || 'Explain this.', context, {
      temperature: this.settings.temperature,
      max_tokens: this.settings.maxTokens
    });
    void this.poller.poll();
  }

  stop(): void {
    this.session.stop();
    this.agent.stop();
  }

  /** The notebook cell the question before answer `index` was about (its first cell chip). */
  private cellIdOf(index: number): string | undefined {
    return this.session.questionOf(index)?.context?.find(p => p.cellId)?.cellId;
  }

  dispose(): void {
    this.poller.dispose();
    this.stop();
    super.dispose();
  }
}
