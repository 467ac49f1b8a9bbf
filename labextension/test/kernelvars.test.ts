import { execFileSync } from 'child_process';
import { KernelVariables, readReply, requestExpression } from '../src/sidebar/kernelvars';
import {
  automaticParts,
  contextLimit,
  mentionOf,
  roomLeft,
  shownName,
  variableChip
} from '../src/sidebar/varcontext';
import type { IStatus } from '../src/protocol';
import type { IVariableDescription } from '../src/variables';

describe('requestExpression', () => {
  it('is Python that hands the exact JSON to kernel_request', () => {
    const req = { request: 'used', code: 'x = "a\\"b"\nprint(\'é\\t\')  # \u2028 end' };
    const expr = requestExpression(req);
    expect(expr.startsWith("__import__('minicpm_magics').kernel_request(")).toBe(true);
    // evaluate the argument with a real Python: the kernel receives the same request
    const literal = expr.slice(expr.indexOf('(', 30) + 1, -1);
    const out = execFileSync('python3', ['-c', 'import sys, json; print(json.dumps(json.loads(eval(sys.argv[1]))))', literal]);
    expect(JSON.parse(out.toString())).toEqual(req);
  });
});

describe('readReply', () => {
  it('reads the JSON answer', () => {
    const a = readReply({
      status: 'ok',
      user_expressions: { r: { status: 'ok', data: { 'application/json': { variables: [] } } } }
    });
    expect(a).toEqual({ ok: true, value: { variables: [] } });
  });
  it('says when minicpm is missing in the kernel, or the request was bad', () => {
    const missing = readReply({ status: 'ok', user_expressions: { r: { status: 'error', ename: 'ModuleNotFoundError' } } });
    expect(missing).toEqual({ ok: false, note: 'minicpm is not installed in this kernel' });
    const bad = readReply({
      status: 'ok',
      user_expressions: { r: { status: 'ok', data: { 'application/json': { error: 'unknown request' } } } }
    });
    expect(bad).toEqual({ ok: false, note: 'unknown request' });
    expect(readReply({ status: 'error' }).ok).toBe(false);
  });
});

/** A stand-in kernel connection: records requests, answers `answer` (or never). */
function kernel(status: string, answer: any | null) {
  const sent: any[] = [];
  return {
    sent,
    k: {
      id: 'k1',
      status,
      requestExecute: (content: any) => {
        sent.push(content);
        const done = answer === null ? new Promise(() => undefined) : Promise.resolve({ content: answer });
        return { done } as any;
      }
    } as any
  };
}

const ok = (value: any) => ({ status: 'ok', user_expressions: { r: { status: 'ok', data: { 'application/json': value } } } });

describe('KernelVariables', () => {
  it('sends a silent execute that leaves no history', async () => {
    const { k, sent } = kernel('idle', ok({ variables: [{ name: 'df', type: 'DataFrame', summary: '3×2' }] }));
    const vars = new KernelVariables(() => k);
    expect((await vars.list()).map(v => v.name)).toEqual(['df']);
    expect(sent[0]).toMatchObject({ code: '', silent: true, store_history: false, allow_stdin: false });
    expect(sent[0].user_expressions.r).toContain('"request\\":\\"list\\"'.replace(/\\\\/g, '\\'));
    await vars.list(); // cached
    expect(sent).toHaveLength(1);
    expect(vars.note).toBe('');
  });
  it('falls back quietly: no kernel, a busy kernel, no answer in time', async () => {
    const none = new KernelVariables(() => null);
    expect(await none.list()).toEqual([]);
    expect(none.note).toMatch(/no kernel/);
    const busy = kernel('busy', ok({}));
    const b = new KernelVariables(() => busy.k);
    expect(await b.describe(['df'], 512, 100)).toEqual({ descriptions: [], missing: [] });
    expect(busy.sent).toHaveLength(0); // never queued behind the user's cell
    expect(b.note).toBe('the kernel is busy');
    const slow = kernel('idle', null);
    const s = new KernelVariables(() => slow.k, 50);
    expect(await s.used('df')).toEqual([]);
    expect(s.note).toBe('the kernel is busy');
  });
  it('sends one request at a time, so its own request never makes the next one give up', async () => {
    // A kernel that is busy while one of our silent requests runs, as a real one is.
    const sent: any[] = [];
    const k: any = {
      id: 'k1',
      status: 'idle',
      requestExecute: (content: any) => {
        sent.push(content);
        k.status = 'busy';
        const done = new Promise(resolve =>
          setTimeout(() => {
            k.status = 'idle';
            resolve({ content: ok({ variables: [{ name: 'df', type: 'DataFrame', summary: '' }], descriptions: [], missing: ['d'] }) });
          }, 20)
        );
        return { done } as any;
      }
    };
    const vars = new KernelVariables(() => k);
    const [described, listed] = await Promise.all([vars.describe(['d'], 512, 100), vars.list()]);
    expect(described.missing).toEqual(['d']);
    expect(listed.map(v => v.name)).toEqual(['df']);
    expect(sent).toHaveLength(2);
    expect(vars.note).toBe('');
  });
});

const desc = (name: string, tokens: number): IVariableDescription => ({
  name,
  text: `${name}: ${'x'.repeat(tokens * 3)}`,
  tokens
});

describe('automaticParts', () => {
  const cells = [
    { cell_type: 'code', source: 'import pandas as pd\ndf = pd.read_csv("a.csv")', execution_count: 1 },
    { cell_type: 'markdown', source: 'df is read above' },
    { cell_type: 'code', source: 'rate = 0.2', execution_count: 2 },
    { cell_type: 'code', source: 'df["tax"] = df.revenue * rate\nprint(unknown_thing)', execution_count: 3 }
  ];
  it('describes what the cell reads and adds the defining cells, latest first', async () => {
    const asked: any[] = [];
    const parts = await automaticParts(cells, 3, async (names, each, total) => {
      asked.push({ names, each, total });
      return { descriptions: names.map(n => desc(n, 30)) };
    }, 2048);
    expect(asked).toEqual([{ names: ['rate', 'df', 'unknown_thing'], each: 256, total: 256 }]);
    expect(parts.map(p => p.label)).toEqual([
      'variable rate',
      'variable df',
      'variable unknown_thing',
      'cell [2] defines rate',
      'cell [1] defines df'
    ]);
  });
  it('keeps automatic variables within 256 tokens and everything within the room', async () => {
    const describe = async (names: string[]) => ({ descriptions: names.map(n => desc(n, 200)) });
    const parts = await automaticParts(cells, 3, describe, 2048);
    expect(parts.filter(p => p.label.startsWith('variable')).map(p => p.label)).toEqual(['variable rate']);
    const tight = await automaticParts(cells, 3, describe, 10);
    expect(tight).toEqual([]); // nothing fits: no variable, no cell
  });
  it('skips what is already attached', async () => {
    const describe = async (names: string[]) => ({ descriptions: names.map(n => desc(n, 10)) });
    const have = [variableChip(desc('rate', 10), true), { kind: 'cell' as const, label: 'cell [1]', text: cells[0].source }];
    const parts = await automaticParts(cells, 3, describe, 2048, have);
    expect(parts.map(p => p.label)).toEqual(['variable df', 'variable unknown_thing', 'cell [2] defines rate']);
  });
});

describe('budgets and names', () => {
  it('half the window, 4096 when the server does not say', () => {
    expect(contextLimit(null)).toBe(2048);
    const st = { model: { model: 'm', context_length: 8192 } } as IStatus;
    expect(contextLimit(st)).toBe(4096);
    expect(roomLeft(st, [{ kind: 'text', label: 'a', text: 'x'.repeat(350) }])).toBe(4096 - 100 - 1 - 4);
  });
  it('mention chips are @name', () => {
    expect(mentionOf(variableChip(desc('df', 3), true))).toBe('df');
    expect(mentionOf(variableChip(desc('df', 3), false))).toBeNull();
  });
  it('finds the DataFrame a cell shows', () => {
    expect(shownName('df = load()\ndf')).toBe('df');
    expect(shownName('sales.head(3)  # first rows')).toBe('sales');
    expect(shownName('display(df)')).toBe('df');
    expect(shownName('df.iloc[:5]')).toBe('df');
    expect(shownName('df.groupby("a").sum()')).toBeNull();
    expect(shownName('')).toBeNull();
  });
});
