/**
 * The browser's kernel client for variables (what `@name` chips and "Explain cell" send). It asks the active notebook's kernel
 * without touching the user's session: a silent execute (`silent`, no history, empty code)
 * whose `user_expressions` call `minicpm_magics.kernel_request` (docs/magics.md "For
 * frontends"): no new globals, `_`, `Out` and the execution count unchanged, and it works
 * without `%load_ext minicpm`. Every failure (no kernel, a busy kernel, a kernel without
 * minicpm_magics) is a quiet `null` plus a one-line `note` for the context bar.
 */
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import type { IKernelVariable, IVariableDescription } from '../variables';

/** The Python expression a silent execute evaluates for `request`. */
export function requestExpression(request: Record<string, unknown>): string {
  // JSON.stringify of a string is a valid Python string literal (\n, \", \\, \uXXXX escapes)
  return `__import__('minicpm_magics').kernel_request(${JSON.stringify(JSON.stringify(request))})`;
}

export type KernelAnswer = { ok: true; value: Record<string, any> } | { ok: false; note: string };

/** Read the answer out of an execute reply's content. */
export function readReply(content: any): KernelAnswer {
  if (!content || content.status !== 'ok') {
    return { ok: false, note: 'the kernel did not answer' };
  }
  const r = content.user_expressions?.r;
  if (!r) {
    return { ok: false, note: 'the kernel did not answer' };
  }
  if (r.status !== 'ok') {
    if (r.ename === 'ModuleNotFoundError' || r.ename === 'ImportError') {
      return { ok: false, note: 'minicpm is not installed in this kernel' };
    }
    return { ok: false, note: `the kernel could not list variables (${r.ename || 'error'})` };
  }
  const value = r.data?.['application/json'];
  if (!value || typeof value !== 'object') {
    return { ok: false, note: 'the kernel did not answer' };
  }
  if (typeof value.error === 'string') {
    return { ok: false, note: value.error };
  }
  return { ok: true, value };
}

/** What KernelVariables needs of a kernel (a Kernel.IKernelConnection has it). */
export type IKernelLike = Pick<Kernel.IKernelConnection, 'id' | 'status' | 'requestExecute'>;

export class KernelVariables {
  /** why the last request gave nothing ('' when it worked) */
  note = '';
  private listCache: { kernel: string; at: number; list: IKernelVariable[] } | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private kernel: () => IKernelLike | null | undefined,
    private timeoutMs = 5000
  ) {}

  /** One silent request at a time: a second one sent while the first runs would find the
   * kernel busy (with our own request) and give up, e.g. the `@` completion's list while a
   * mention is being described. */
  request(req: Record<string, unknown>): Promise<Record<string, any> | null> {
    const run = this.queue.then(() => this.send(req));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async send(req: Record<string, unknown>): Promise<Record<string, any> | null> {
    const k = this.kernel();
    if (!k) {
      this.note = 'no kernel: open a notebook with a running kernel';
      return null;
    }
    if (k.status === 'busy') {
      // a silent execute would wait behind the user's running cell
      this.note = 'the kernel is busy';
      return null;
    }
    const content: KernelMessage.IExecuteRequestMsg['content'] = {
      code: '',
      silent: true,
      store_history: false,
      allow_stdin: false,
      stop_on_error: false,
      user_expressions: { r: requestExpression(req) }
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const future = k.requestExecute(content, true);
      const timeout = new Promise<null>(resolve => {
        timer = setTimeout(() => resolve(null), this.timeoutMs);
      });
      const reply = await Promise.race([future.done, timeout]);
      if (!reply) {
        this.note = 'the kernel is busy';
        return null;
      }
      const answer = readReply(reply.content);
      this.note = answer.ok ? '' : answer.note;
      return answer.ok ? answer.value : null;
    } catch (e) {
      this.note = `the kernel did not answer (${(e as Error).message})`;
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The kernel's variables (cached for a few seconds: completion asks on every keystroke). */
  async list(): Promise<IKernelVariable[]> {
    const k = this.kernel();
    const now = Date.now();
    if (k && this.listCache && this.listCache.kernel === k.id && now - this.listCache.at < 3000) {
      return this.listCache.list;
    }
    const answer = await this.request({ request: 'list' });
    const list: IKernelVariable[] = Array.isArray(answer?.variables) ? answer!.variables : [];
    if (k && answer) {
      this.listCache = { kernel: k.id, at: now, list };
    }
    return list;
  }

  async describe(
    names: string[],
    eachTokens: number,
    totalTokens: number
  ): Promise<{ descriptions: IVariableDescription[]; missing: string[] }> {
    if (!names.length || totalTokens <= 0) {
      return { descriptions: [], missing: [] };
    }
    const answer = await this.request({
      request: 'describe',
      names,
      each_tokens: eachTokens,
      total_tokens: totalTokens
    });
    return {
      descriptions: Array.isArray(answer?.descriptions) ? answer!.descriptions : [],
      missing: Array.isArray(answer?.missing) ? answer!.missing : []
    };
  }

  /** The user variables `code` reads, as the kernel sees them (ast). */
  async used(code: string): Promise<string[]> {
    const answer = await this.request({ request: 'used', code });
    return Array.isArray(answer?.names) ? answer!.names : [];
  }
}
