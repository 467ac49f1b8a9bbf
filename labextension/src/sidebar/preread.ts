/**
 * Pre-read (issue 25): while a notebook is open with the sidebar, send the server the context
 * the next question would carry (the chips and the whole notebook, as Send would attach them,
 * and the conversation so far), ~1.5 s after the notebook is opened or edited, so the server
 * reads it into the model's prompt cache in idle time (POST /minicpm/preread). The question
 * then starts from there. Nothing is sent for notebooks not open, while an answer runs, in
 * Agent mode, or once the server says pre-read is off (c.MiniCPM.preread).
 *
 * `PrereadScheduler` is the pure part (timers injected; jest tests it); `watchPreread` wires
 * it to JupyterLab's signals.
 */
import type { IContextPart } from '../protocol';

/** What the server reads: the chat frame Send would make, without the question. */
export interface IPrereadBody {
  path: string;
  messages: { role: string; content: string }[];
  context: IContextPart[];
  sampling: { max_tokens: number };
  context_turn: 'first';
}

export interface IPrereadDeps<B = IPrereadBody> {
  /** the body for the current state, or null when there is nothing to pre-read */
  build: () => B | null;
  send: (body: B) => Promise<{ accepted?: boolean }>;
  delayMs?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

/** Debounce after opening / edits (ms): typing pauses longer than this are rare mid-word. */
export const PREREAD_DELAY_MS = 1500;

/** Debounce, one request in flight, no resend of the same body, silent once the server is off;
 * `B`: the chat's body here, the inline completion's in completion/preread.ts. */
export class PrereadScheduler<B = IPrereadBody> {
  private timer: unknown = null;
  private lastKey = '';
  private inFlight = false;
  private again = false;
  /** the server answered that pre-read is off: stop asking until the page reloads */
  disabled = false;
  sent = 0;

  constructor(private deps: IPrereadDeps<B>) {}

  /** Something changed: (re)start the quiet period; the body is built when it ends. */
  schedule(): void {
    if (this.disabled) {
      return;
    }
    const clear = this.deps.clearTimer ?? ((t: unknown) => clearTimeout(t as any));
    const set = this.deps.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
    if (this.timer !== null) {
      clear(this.timer);
    }
    this.timer = set(() => {
      this.timer = null;
      void this.fire();
    }, this.deps.delayMs ?? PREREAD_DELAY_MS);
  }

  /** The quiet period ended: send the body unless it is what was sent last. */
  async fire(): Promise<void> {
    if (this.disabled) {
      return;
    }
    if (this.inFlight) {
      this.again = true; // one more after this one answers
      return;
    }
    const body = this.deps.build();
    if (!body) {
      return;
    }
    const key = JSON.stringify(body);
    if (key === this.lastKey) {
      return; // the server already has it
    }
    this.inFlight = true;
    try {
      const reply = await this.deps.send(body);
      this.lastKey = key;
      this.sent += 1;
      if (reply && reply.accepted === false) {
        this.disabled = true;
      }
    } catch {
      // not worth a notice: the question itself will say what is wrong with the server
    } finally {
      this.inFlight = false;
    }
    if (this.again) {
      this.again = false;
      this.schedule();
    }
  }

  /** Forget what was sent (e.g. a new chat): the next change sends again. */
  reset(): void {
    this.lastKey = '';
  }

  dispose(): void {
    if (this.timer !== null) {
      (this.deps.clearTimer ?? ((t: unknown) => clearTimeout(t as any)))(this.timer);
      this.timer = null;
    }
    this.disabled = true;
  }
}

/** The body for the current state: null without a notebook or without context to read. */
export function prereadBody(
  path: string | null,
  history: { role: string; content: string; error?: unknown }[],
  context: IContextPart[],
  maxTokens: number
): IPrereadBody | null {
  if (!path || !context.length) {
    return null;
  }
  return {
    path,
    // as ChatSession.send builds it: earlier turns without their context, failed ones left out
    messages: history.filter(m => !m.error).map(m => ({ role: m.role, content: m.content })),
    // as the chat socket sends parts: client-only fields dropped
    context: context.map(({ truncated, cellId, ...rest }: any) => {
      void truncated;
      void cellId;
      return rest as IContextPart;
    }),
    sampling: { max_tokens: maxTokens },
    context_turn: 'first'
  };
}

/** The parts of the sidebar and JupyterLab the watcher reads (structural: no imports). */
export interface IPrereadHost {
  panel: {
    isVisible: boolean;
    busy: boolean;
    agent: { active: boolean };
    settings: { maxTokens: number };
    session: { messages: { role: string; content: string; error?: unknown }[]; changed: ISig };
    contextBar: { parts(): IContextPart[]; notebookToggle: HTMLInputElement };
    disposed: ISig;
  };
  tracker: { currentWidget: INotebookLike | null; currentChanged: ISig };
  request: (path: string, method: string, body: unknown) => Promise<unknown>;
}

interface ISig {
  connect(fn: (...args: any[]) => void): unknown;
  disconnect(fn: (...args: any[]) => void): unknown;
}

interface INotebookLike {
  context: { path: string };
  model: { contentChanged: ISig } | null;
  content: { activeCellChanged: ISig };
}

/** Wire a scheduler to the sidebar: the current notebook's edits, the active cell, the chat's
 * end, the whole-notebook toggle and the sidebar being shown. */
export function watchPreread(host: IPrereadHost, delayMs = PREREAD_DELAY_MS): PrereadScheduler {
  const { panel, tracker } = host;
  const sched = new PrereadScheduler({
    delayMs,
    build: () => {
      const nb = tracker.currentWidget;
      if (!nb || !panel.isVisible || panel.busy || panel.agent.active) {
        return null;
      }
      return prereadBody(nb.context.path, panel.session.messages, panel.contextBar.parts(),
        panel.settings.maxTokens);
    },
    send: body => host.request('preread', 'POST', body) as Promise<{ accepted?: boolean }>
  });
  const changed = () => sched.schedule();
  let watched: INotebookLike | null = null;
  const follow = () => {
    if (watched) {
      watched.model?.contentChanged.disconnect(changed);
      watched.content.activeCellChanged.disconnect(changed);
    }
    watched = tracker.currentWidget;
    watched?.model?.contentChanged.connect(changed);
    watched?.content.activeCellChanged.connect(changed);
    changed();
  };
  tracker.currentChanged.connect(follow);
  panel.session.changed.connect(changed); // an answer ended: the next prefix has its turn
  panel.contextBar.notebookToggle.addEventListener('change', changed);
  // the sidebar shown: a cheap flag check, the body is built only after it flips
  let shown = panel.isVisible;
  const poll = setInterval(() => {
    if (panel.isVisible !== shown) {
      shown = panel.isVisible;
      if (shown) {
        changed();
      }
    }
  }, 1000);
  panel.disposed.connect(() => {
    clearInterval(poll);
    tracker.currentChanged.disconnect(follow);
    sched.dispose();
  });
  follow();
  return sched;
}
