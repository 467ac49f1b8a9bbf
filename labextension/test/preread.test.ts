/** The pre-read trigger (issue 25): debounce, what it sends, dedup, and stopping when off. */
import { IPrereadBody, PrereadScheduler, prereadBody } from '../src/sidebar/preread';
import type { IContextPart } from '../src/protocol';

/** Timers the test fires by hand. */
class Clock {
  next = 1;
  pending = new Map<number, () => void>();
  set = (fn: () => void, _ms: number) => {
    const id = this.next++;
    this.pending.set(id, fn);
    return id;
  };
  clear = (id: unknown) => {
    this.pending.delete(id as number);
  };
  async runAll(): Promise<void> {
    const fns = [...this.pending.values()];
    this.pending.clear();
    for (const fn of fns) {
      fn();
    }
    await new Promise(r => setImmediate(r));
  }
}

const NB: IContextPart = { kind: 'notebook', label: 'notebook a.ipynb', text: '# %% cell #1\nx = 1', language: 'python' };

function make(build: () => IPrereadBody | null, reply: { accepted?: boolean } = { accepted: true }) {
  const clock = new Clock();
  const sent: IPrereadBody[] = [];
  const sched = new PrereadScheduler({
    build,
    send: async b => {
      sent.push(b);
      return reply;
    },
    setTimer: clock.set,
    clearTimer: clock.clear
  });
  return { clock, sent, sched };
}

describe('PrereadScheduler', () => {
  it('sends once after a burst of edits, when the quiet period ends', async () => {
    let text = 'x = 1';
    const { clock, sent, sched } = make(() =>
      prereadBody('a.ipynb', [], [{ ...NB, text }], 512)
    );
    for (const t of ['x = 1', 'x = 12', 'x = 123']) {
      text = t;
      sched.schedule();
    }
    expect(clock.pending.size).toBe(1); // each edit restarted the one timer
    expect(sent).toHaveLength(0);
    await clock.runAll();
    expect(sent).toHaveLength(1);
    expect(sent[0].context[0].text).toBe('x = 123'); // built when it fires, not when scheduled
  });

  it('does not send the same body twice, and sends again after a change', async () => {
    let text = 'a';
    const { clock, sent, sched } = make(() => prereadBody('a.ipynb', [], [{ ...NB, text }], 512));
    sched.schedule();
    await clock.runAll();
    sched.schedule();
    await clock.runAll();
    expect(sent).toHaveLength(1);
    text = 'b';
    sched.schedule();
    await clock.runAll();
    expect(sent).toHaveLength(2);
    sched.reset();
    sched.schedule();
    await clock.runAll();
    expect(sent).toHaveLength(3);
  });

  it('sends nothing without a notebook or without context', async () => {
    expect(prereadBody(null, [], [NB], 512)).toBeNull();
    expect(prereadBody('a.ipynb', [], [], 512)).toBeNull();
    const { clock, sent, sched } = make(() => null);
    sched.schedule();
    await clock.runAll();
    expect(sent).toHaveLength(0);
  });

  it('stops for good once the server says pre-read is off', async () => {
    let n = 0;
    const { clock, sent, sched } = make(
      () => prereadBody('a.ipynb', [], [{ ...NB, text: String(n++) }], 512),
      { accepted: false }
    );
    sched.schedule();
    await clock.runAll();
    expect(sched.disabled).toBe(true);
    sched.schedule();
    expect(clock.pending.size).toBe(0);
    await clock.runAll();
    expect(sent).toHaveLength(1);
  });
});

describe('prereadBody', () => {
  it('is the chat frame Send would make, without the question', () => {
    const body = prereadBody(
      'a.ipynb',
      [
        { role: 'user', content: 'q1' },
        { role: 'assistant', content: 'a1' },
        { role: 'user', content: 'bad', error: 'failed' }
      ],
      [{ ...NB, truncated: true, cellId: 'c1' } as IContextPart],
      256
    )!;
    expect(body.messages).toEqual([
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: 'a1' }
    ]);
    expect(body.context[0]).toEqual(NB); // client-only fields dropped, as the chat socket does
    expect(body.sampling).toEqual({ max_tokens: 256 });
    expect(body.context_turn).toBe('first'); // where ChatSession.send puts the context
  });
});
