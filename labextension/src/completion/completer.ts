/**
 * Inline code completion (ghost text) from the server's local model: a JupyterLab ≥ 4.1
 * `IInlineCompletionProvider`, its own plugin (`jupyter-minicpm:completer`) and settings
 * (schema/completer.json). JupyterLab fires it at the end of a line as you type (and on
 * Alt+\ by hand), and we fire it on the fresh line after Enter; Tab accepts, Escape
 * dismisses. Suggestions stream in (`isIncomplete` + `stream`); each keystroke stops the
 * request in flight on the server, except a newline typed through a suggestion.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  CompletionHandler,
  ICompletionProviderManager,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider,
  InlineCompletionTriggerKind
} from '@jupyterlab/completer';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import type { Widget } from '@lumino/widgets';
import {
  DEFAULT_SETTINGS,
  ICellSource,
  ICompleterSettings,
  InlineCompletionClient,
  InlineScheduler,
  InlineStream,
  earlierCells
} from './completerClient';
import { isFreshLine, modeFor } from './freshLine';
import { ICursorState, completionPrereader } from './preread';
import { joinUrl } from '../connection';

const PLUGIN_ID = 'jupyter-minicpm:completer';
const MANUAL_MIN_TOKENS = 128;
const FRESH_LINE_MS = 1000; // our own trigger after Enter reaches fetch well within this
// after the editor has applied Enter and JupyterLab has seen the change (it counts changes
// and ignores answers to requests older than the last one)
const FRESH_LINE_DELAY_MS = 30;

/** The cells above the active one, when the editor is a notebook's (duck-typed: no runtime
 * dependency on the notebook package). */
function cellsAbove(widget: Widget | undefined): ICellSource[] {
  const nb = (widget as any)?.content;
  if (!nb || !Array.isArray(nb.widgets) || typeof nb.activeCellIndex !== 'number') {
    return [];
  }
  const out: ICellSource[] = [];
  for (const cell of nb.widgets.slice(0, Math.max(0, nb.activeCellIndex))) {
    const kind = cell?.model?.type;
    if (kind === 'code' || kind === 'markdown' || kind === 'raw') {
      out.push({ kind, source: String(cell.model.sharedModel.getSource()) });
    }
  }
  return earlierCells(out);
}

function languageOf(mimeType: string | undefined): string {
  const m = (mimeType || '').toLowerCase();
  return m.includes('python') ? 'python' : m.replace(/^text\/(x-)?/, '') || 'python';
}

/** Where the cursor is in the focused notebook code cell (null elsewhere). */
function cursorState(app: JupyterFrontEnd): ICursorState | null {
  const widget = app.shell.currentWidget as any;
  const editor = widget?.content?.activeCell?.editor;
  const path = widget?.context?.path;
  if (!editor || typeof path !== 'string' || !editor.hasFocus?.()) {
    return null;
  }
  const text: string = editor.model.sharedModel.getSource();
  const offset = editor.getOffsetAt(editor.getCursorPosition());
  const language = languageOf(editor.model.mimeType);
  return { path, prefix: text.slice(0, offset), suffix: text.slice(offset), cells: cellsAbove(widget), language };
}

export class MiniCPMInlineProvider implements IInlineCompletionProvider {
  readonly name = 'MiniCPM (local model)';
  readonly identifier = 'jupyter-minicpm';
  // JupyterLab's own debounce stays 0: ours runs inside fetch, so that a keystroke can stop
  // the request in flight at once. The timeout covers the debounce and the socket's opening.
  readonly schema = { default: { debouncerDelay: 0, timeout: 15000 } };
  settings: ICompleterSettings = { ...DEFAULT_SETTINGS };
  private scheduler: InlineScheduler;
  private last: InlineStream | null = null;
  private freshLineAt = 0;

  constructor(private client: InlineCompletionClient) {
    this.scheduler = new InlineScheduler(client);
  }

  configure(settings: Partial<ICompleterSettings>): void {
    this.settings = { ...DEFAULT_SETTINGS, ...settings };
    if (!this.settings.enabled) {
      this.scheduler.cancel();
    }
  }

  /** The next invoke comes from our Enter trigger, not from the user's shortcut. */
  expectFreshLine(): void {
    this.freshLineAt = Date.now();
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    if (!this.settings.enabled) {
      this.scheduler.cancel();
      return { items: [] };
    }
    const prefix = request.text.slice(0, request.offset);
    const suffix = request.text.slice(request.offset);
    const fresh = Date.now() - this.freshLineAt < FRESH_LINE_MS && isFreshLine(prefix, suffix);
    this.freshLineAt = 0;
    const manual = context.triggerKind === InlineCompletionTriggerKind.Invoke && !fresh;
    const s = this.settings;
    const stream = await this.scheduler.request(
      {
        prefix,
        suffix,
        cells: cellsAbove(context.widget),
        // a fresh line after `def f(x):` asks for the body (several lines) by default
        mode: manual ? s.manualMode : modeFor(prefix, suffix, s.mode, s.openerMode),
        language: languageOf(request.mimeType),
        max_tokens: manual ? Math.max(s.maxTokens, MANUAL_MIN_TOKENS) : s.maxTokens
      },
      manual ? 0 : s.debounceMs
    );
    if (!stream) {
      return { items: [] }; // superseded by a later keystroke during the debounce
    }
    this.last = stream;
    return { items: [{ insertText: '', isIncomplete: true, token: stream.id }] };
  }

  async *stream(
    token: string
  ): AsyncGenerator<{ response: IInlineCompletionItem }, undefined, unknown> {
    const s = this.last?.id === token ? this.last : this.client.get(token);
    if (!s) {
      return;
    }
    for await (const u of s.updates()) {
      const response: IInlineCompletionItem = {
        insertText: u.text,
        isIncomplete: !u.done,
        token
      };
      if (u.error) {
        response.error = { message: u.error };
      }
      yield { response };
    }
  }
}

/**
 * JupyterLab asks for no suggestion on a line with only indentation (its automatic trigger
 * waits for a character), and drops the one on screen when the cursor moves to the next
 * line. So after Enter in a code editor lands the cursor on a fresh line, we invoke the
 * inline completer ourselves; the provider treats that as automatic typing (debounced, and
 * keeping a suggestion in flight that starts with this newline: see freshLine.ts).
 */
function triggerOnFreshLine(
  app: JupyterFrontEnd,
  manager: ICompletionProviderManager,
  provider: MiniCPMInlineProvider
): void {
  document.addEventListener(
    'keydown',
    (ev: KeyboardEvent) => {
      const target = ev.target as HTMLElement | null;
      if (
        ev.key !== 'Enter' ||
        ev.shiftKey || ev.ctrlKey || ev.altKey || ev.metaKey ||
        !provider.settings.enabled ||
        !target?.closest?.('.cm-editor')
      ) {
        return;
      }
      // after the editor has inserted the newline and its indentation
      setTimeout(() => {
        const widget = app.shell.currentWidget as any;
        const editor = widget?.content?.activeCell?.editor ?? widget?.content?.editor;
        if (!editor || !manager.inline || !editor.hasFocus?.()) {
          return;
        }
        const pos = editor.getCursorPosition();
        const text: string = editor.model.sharedModel.getSource();
        const offset = editor.getOffsetAt(pos);
        if (isFreshLine(text.slice(0, offset), text.slice(offset))) {
          provider.expectFreshLine();
          manager.inline.invoke(widget.id);
        }
      }, FRESH_LINE_DELAY_MS);
    },
    true
  );
}

const completerPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Inline code completion (ghost text) from the local MiniCPM model',
  autoStart: true,
  requires: [ICompletionProviderManager],
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    manager: ICompletionProviderManager,
    settingRegistry: ISettingRegistry | null
  ) => {
    const server = ServerConnection.makeSettings();
    const client = new InlineCompletionClient({
      baseUrl: server.baseUrl,
      wsUrl: server.wsUrl,
      token: server.token,
      appendToken: server.appendToken
    });
    const provider = new MiniCPMInlineProvider(client);
    manager.registerInlineProvider(provider);
    triggerOnFreshLine(app, manager, provider);
    // a code cell's editor got the focus: read its completion prompt ahead (completion/preread.ts)
    const prereader = completionPrereader(
      () => (provider.settings.enabled ? cursorState(app) : null),
      async body => {
        const url = joinUrl(server.baseUrl, 'minicpm', 'preread');
        const init = { method: 'POST', body: JSON.stringify(body) };
        return (await ServerConnection.makeRequest(url, init, server)).json();
      }
    );
    document.addEventListener(
      'focusin',
      ev => (ev.target as HTMLElement | null)?.closest?.('.jp-CodeCell .cm-editor') && prereader.schedule(),
      true
    );
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(s => {
          const apply = () => provider.configure(s.composite as Partial<ICompleterSettings>);
          apply();
          s.changed.connect(apply);
        })
        .catch(reason => console.warn('jupyter-minicpm: completer settings', reason));
    }
  }
};

export default completerPlugin;
