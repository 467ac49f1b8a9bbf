/**
 * Polling the server's status: often while a model loads (the progress bar moves), rarely
 * otherwise (a model loaded from elsewhere, a crashed worker, still show up). `poll()` asks at
 * once and restarts the timer, so an action that changes the state is shown without a wait.
 */
import type { IStatus } from '../protocol';

const LOADING_MS = 700;
const IDLE_MS = 10000;

export class StatusPoller {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    private fetch: () => Promise<IStatus>,
    private show: (st: IStatus) => void,
    private fail: (e: unknown) => void
  ) {}

  async poll(): Promise<IStatus | null> {
    clearTimeout(this.timer);
    let st: IStatus | null = null;
    try {
      st = await this.fetch();
      this.show(st);
    } catch (e) {
      this.fail(e);
    }
    if (!this.stopped) {
      this.timer = setTimeout(() => void this.poll(), st && st.state === 'loading' ? LOADING_MS : IDLE_MS);
    }
    return st;
  }

  dispose(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
