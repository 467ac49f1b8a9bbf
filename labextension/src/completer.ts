/**
 * Inline code completion (ghost text) from the server's local model: a JupyterLab ≥ 4.1
 * `IInlineCompletionProvider`, its own plugin (`jupyter-minicpm:completer`) and settings
 * (schema/completer.json). JupyterLab fires it at the end of a line as you type (and on
 * Alt+\ by hand); Tab accepts, Escape dismisses. Suggestions stream in (`isIncomplete` +
 * `stream`); each keystroke stops the request in flight on the server.
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

const PLUGIN_ID = 'jupyter-minicpm:completer';
const MANUAL_MIN_TOKENS = 128;

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

export class MiniCPMInlineProvider implements IInlineCompletionProvider {
  readonly name = 'MiniCPM (local model)';
  readonly identifier = 'jupyter-minicpm';
  // JupyterLab's own debounce stays 0: ours runs inside fetch, so that a keystroke can stop
  // the request in flight at once. The timeout covers the debounce and the socket's opening.
  readonly schema = { default: { debouncerDelay: 0, timeout: 15000 } };
  settings: ICompleterSettings = { ...DEFAULT_SETTINGS };
  private scheduler: InlineScheduler;
  private last: InlineStream | null = null;

  constructor(private client: InlineCompletionClient) {
    this.scheduler = new InlineScheduler(client);
  }

  configure(settings: Partial<ICompleterSettings>): void {
    this.settings = { ...DEFAULT_SETTINGS, ...settings };
    if (!this.settings.enabled) {
      this.scheduler.cancel();
    }
  }

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    if (!this.settings.enabled) {
      this.scheduler.cancel();
      return { items: [] };
    }
    const manual = context.triggerKind === InlineCompletionTriggerKind.Invoke;
    const s = this.settings;
    const stream = await this.scheduler.request(
      {
        prefix: request.text.slice(0, request.offset),
        suffix: request.text.slice(request.offset),
        cells: cellsAbove(context.widget),
        mode: manual ? s.manualMode : s.mode,
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
