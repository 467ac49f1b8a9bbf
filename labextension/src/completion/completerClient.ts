/**
 * Inline completion client: requests over the `/minicpm/complete` WebSocket (docs/protocol.md), the
 * notebook → request mapping, and the debounce/supersede logic of the provider. No JupyterLab
 * imports at run time, so jest can drive it with a fake socket.
 */
import type { IConnectionSettings } from '../connection';
import { ServerSocket } from '../socket';
import { follows, followStream, typedSince } from './freshLine';

export type CompletionMode = 'line' | 'statement' | 'block';

export interface ICompleterSettings {
  enabled: boolean;
  debounceMs: number;
  maxTokens: number;
  mode: CompletionMode;
  /** Mode for a manual trigger (the shortcut): usually longer than the automatic one. */
  manualMode: CompletionMode;
  /** Mode on a fresh line after a block opener (`def f(x):` + Enter): the body. */
  openerMode: CompletionMode;
}

export const DEFAULT_SETTINGS: ICompleterSettings = {
  enabled: true,
  debounceMs: 250,
  maxTokens: 48,
  mode: 'line',
  manualMode: 'block',
  openerMode: 'block'
};

export interface ICellSource {
  kind: 'code' | 'markdown' | 'raw';
  source: string;
}

export interface ICompleteRequest {
  prefix: string;
  suffix: string;
  cells: ICellSource[];
  mode: CompletionMode;
  language: string;
  max_tokens: number;
}

/** One update of a suggestion: the whole text so far (not a delta). */
export interface IInlineUpdate {
  text: string;
  done: boolean;
  dropped?: string | null;
  error?: string;
}

/** Most characters of earlier cells sent with a request: the server keeps about 1,024 tokens
 * (roughly 4,000 characters of code); a margin lets it pick whole cells. */
export const MAX_CONTEXT_CHARS = 24000;

/** The nearest earlier cells that fit `maxChars`, in notebook order (whole cells only, so
 * the same cells are sent for every keystroke in the current cell). */
export function earlierCells(
  cells: ICellSource[],
  maxChars = MAX_CONTEXT_CHARS
): ICellSource[] {
  const out: ICellSource[] = [];
  let used = 0;
  for (let i = cells.length - 1; i >= 0; i--) {
    used += cells[i].source.length;
    if (used > maxChars) {
      break;
    }
    out.unshift(cells[i]);
  }
  return out;
}

/** A suggestion being streamed; `updates()` yields each new text, the final one `done`. */
export class InlineStream {
  text = '';
  done = false;
  private waiters: Array<() => void> = [];
  private queue: IInlineUpdate[] = [];
  private listeners: Array<(u: IInlineUpdate) => void> = [];

  constructor(readonly id: string) {}

  push(update: IInlineUpdate): void {
    if (this.done) {
      return;
    }
    this.text = update.text;
    this.done = update.done;
    this.queue.push(update);
    this.waiters.splice(0).forEach(w => w());
    this.listeners.forEach(l => l(update));
  }

  /** Also tell `fn` of every update (a stream that follows this one). */
  listen(fn: (u: IInlineUpdate) => void): void {
    this.listeners.push(fn);
  }

  async *updates(): AsyncGenerator<IInlineUpdate> {
    while (true) {
      while (this.queue.length) {
        // Each update is the whole text: a slow consumer skips to the newest.
        const u = this.queue.splice(0).pop()!;
        yield u;
        if (u.done) {
          return;
        }
      }
      await new Promise<void>(resolve => this.waiters.push(resolve));
    }
  }
}

/** The socket, shared by every editor of the page; reconnects on the next request. */
export class InlineCompletionClient {
  private socket: ServerSocket;
  private streams = new Map<string, InlineStream>();
  private seq = 0;

  constructor(settings: IConnectionSettings) {
    this.socket = new ServerSocket(settings, 'minicpm/complete', 'completion', {
      frame: f => this.onFrame(f),
      closed: () => {
        // The server cancels a closed socket's requests: end their suggestions.
        for (const s of this.streams.values()) {
          s.push({ text: '', done: true, error: 'connection closed' });
        }
        this.streams.clear();
      }
    });
  }

  private onFrame(f: any): void {
    const s = this.streams.get(String(f.id));
    if (!s) {
      return;
    }
    if (f.type === 'partial') {
      s.push({ text: String(f.text ?? ''), done: false });
    } else if (f.type === 'done') {
      s.push({ text: String(f.text ?? ''), done: true, dropped: f.dropped ?? null });
      this.streams.delete(s.id);
    } else if (f.type === 'error') {
      s.push({ text: '', done: true, error: String(f.error ?? 'error') });
      this.streams.delete(s.id);
    }
  }

  /** Send a request. The server cancels this socket's older requests when it arrives. */
  start(req: ICompleteRequest): InlineStream {
    const id = `c${++this.seq}`;
    const stream = new InlineStream(id);
    this.streams.set(id, stream);
    this.socket.open().then(
      ws => ws.send(JSON.stringify({ type: 'complete', id, ...req })),
      err => {
        this.streams.delete(id);
        stream.push({ text: '', done: true, error: String(err) });
      }
    );
    return stream;
  }

  get(id: string): InlineStream | undefined {
    return this.streams.get(id);
  }

  /** Stop a request: the engine is freed within one token; its stream ends with no text. */
  stop(id: string): void {
    const s = this.streams.get(id);
    if (!s) {
      return;
    }
    this.streams.delete(id);
    s.push({ text: '', done: true, dropped: 'cancelled' });
    this.socket.sendIfOpen({ type: 'stop', id });
  }

  dispose(): void {
    this.socket.dispose();
  }
}

/**
 * What the provider does on each call of `fetch` (one per keystroke): stop the request in
 * flight at once (typing on makes it stale), wait out the debounce, and start a new one
 * unless another keystroke came meanwhile. Except for Enter typed through a suggestion that
 * starts with that newline (and its indentation): that suggestion is kept, minus the newline.
 */
export class InlineScheduler {
  private current: InlineStream | null = null;
  private root: InlineStream | null = null; // the server's request behind `current`
  private rootReq: ICompleteRequest | null = null;
  private generation = 0;

  constructor(
    private client: InlineCompletionClient,
    private sleep: (ms: number) => Promise<void> = ms =>
      new Promise(resolve => setTimeout(resolve, ms))
  ) {}

  cancel(): void {
    this.generation++;
    if (this.root) {
      this.client.stop(this.root.id);
    }
    this.current = this.root = this.rootReq = null;
  }

  /** The new stream, or null when superseded during the debounce. */
  async request(req: ICompleteRequest, debounceMs: number): Promise<InlineStream | null> {
    const kept = this.follow(req);
    if (kept) {
      return kept;
    }
    this.cancel();
    const mine = this.generation;
    if (debounceMs > 0) {
      await this.sleep(debounceMs);
    }
    if (mine !== this.generation) {
      return null;
    }
    this.current = this.root = this.client.start(req);
    this.rootReq = req;
    return this.current;
  }

  /** The suggestion in flight, minus a newline the user typed through it; or null. */
  private follow(req: ICompleteRequest): InlineStream | null {
    const typed = this.rootReq && typedSince(this.rootReq, req);
    if (!this.root || !typed || !follows(this.root.text, typed)) {
      return null;
    }
    this.generation++; // supersedes a request still waiting out its debounce
    this.current = followStream(this.root, typed, id => new InlineStream(id));
    return this.current;
  }
}
