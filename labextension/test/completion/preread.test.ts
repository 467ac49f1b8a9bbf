/** The inline completion's pre-read: the body is the `complete` frame at the cursor, sent once
 * the cursor rests, once per state, and no more once the server says pre-read is off. */
import { ICursorState, completionPrereadBody, completionPrereader } from '../../src/completion/preread';

const AT: ICursorState = {
  path: 'a.ipynb',
  prefix: 'df = pd.',
  suffix: '',
  cells: [{ kind: 'code', source: 'import pandas as pd' }],
  language: 'python'
};

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await Promise.resolve();
  }
}

describe('completion pre-read', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('is the complete frame at the cursor; nothing without a cursor or cells above', () => {
    expect(completionPrereadBody(AT)).toEqual({ kind: 'completion', mode: 'line', ...AT });
    expect(completionPrereadBody({ ...AT, cells: [] })).toBeNull();
    expect(completionPrereadBody({ ...AT, path: '' })).toBeNull();
    expect(completionPrereadBody(null)).toBeNull();
  });

  it('sends when the cursor has rested, once per state, and stops when the server is off', async () => {
    let state: ICursorState | null = AT;
    const sent: unknown[] = [];
    let reply: { accepted?: boolean } = { accepted: true };
    const p = completionPrereader(() => state, async b => {
      sent.push(b);
      return reply;
    }, 1500);
    p.schedule();
    jest.advanceTimersByTime(1000);
    p.schedule(); // focus moved again: the quiet period starts over
    jest.advanceTimersByTime(1499);
    expect(sent).toHaveLength(0);
    jest.advanceTimersByTime(1);
    await settle();
    expect(sent).toEqual([{ kind: 'completion', mode: 'line', ...AT }]);

    p.schedule(); // the same cell, the same cursor: the server already has it
    jest.advanceTimersByTime(1500);
    await settle();
    expect(sent).toHaveLength(1);

    state = null; // focus left the notebook
    p.schedule();
    jest.advanceTimersByTime(1500);
    await settle();
    expect(sent).toHaveLength(1);

    state = { ...AT, prefix: 'x = 1\n' };
    reply = { accepted: false };
    p.schedule();
    jest.advanceTimersByTime(1500);
    await settle();
    expect(sent).toHaveLength(2);
    expect(p.disabled).toBe(true);
    state = { ...AT, prefix: 'y = 2\n' };
    p.schedule();
    jest.advanceTimersByTime(1500);
    await settle();
    expect(sent).toHaveLength(2); // off until the page reloads
  });
});
