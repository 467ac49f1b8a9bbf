import { afterBlockOpener, follows, isFreshLine, modeFor, typedSince } from '../../src/completion/freshLine';
import { completeRequest, resetSocketsBeforeEach, schedulerWithFirst, tick } from '../helpers/sockets';

const REQ = completeRequest({ prefix: 'def area(r):', max_tokens: 48 });

resetSocketsBeforeEach();

describe('fresh line', () => {
  it('is a line with only indentation around the cursor, below another', () => {
    expect(isFreshLine('def f(x):\n    ', '')).toBe(true);
    expect(isFreshLine('x = 1\n', '\ny = 2')).toBe(true);
    expect(isFreshLine('def f(x):\n    re', '')).toBe(false);
    expect(isFreshLine('def f(x):\n    ', 'return x')).toBe(false);
    expect(isFreshLine('', '')).toBe(false); // an empty cell is not "after Enter"
  });

  it('knows a block opener, comments and strings aside', () => {
    expect(afterBlockOpener('def f(x):\n    ')).toBe(true);
    expect(afterBlockOpener('for row in rows:  # each row\n    ')).toBe(true);
    expect(afterBlockOpener('if x:\n\n    ')).toBe(true); // a blank line between
    expect(afterBlockOpener('x = 1\n')).toBe(false);
    expect(afterBlockOpener('s = "a:"\n')).toBe(false);
    expect(afterBlockOpener('x = 1  # note:\n')).toBe(false);
    expect(afterBlockOpener('d = {1:\n    ')).toBe(true); // a dict over lines: harmless
  });

  it('asks for the body, several lines, after an opener', () => {
    expect(modeFor('def f(x):\n    ', '', 'line', 'block')).toBe('block');
    expect(modeFor('def f(x):\n    ', '', 'line', 'line')).toBe('line');
    expect(modeFor('def f(x):\n    ', '', 'block', 'statement')).toBe('block');
    expect(modeFor('x = 1\n', '', 'line', 'block')).toBe('line');
    expect(modeFor('def f(x):\n    y', '', 'line', 'block')).toBe('line');
  });

  it('types through a suggestion only with a newline', () => {
    expect(typedSince(REQ, { prefix: 'def area(r):\n    ', suffix: '' })).toBe('\n    ');
    expect(typedSince(REQ, { prefix: 'def area(r):\n    ', suffix: 'x' })).toBeNull();
    expect(typedSince(REQ, { prefix: 'def are', suffix: '' })).toBeNull();
    expect(follows('\n    return r', '\n    ')).toBe(true);
    expect(follows('\n        return r', '\n    ')).toBe(true); // deeper is fine
    expect(follows('\n  return r', '\n    ')).toBe(false);
    expect(follows(' return r', ' ')).toBe(false); // other keys stop the request
    expect(follows('\n', '\n    ')).toBe(false); // not known yet: ask anew
  });
});

describe('scheduler on Enter', () => {
  it('keeps a suggestion that starts with the newline the user typed', async () => {
    const { sched, first, ws } = await schedulerWithFirst(REQ);
    ws.emit({ type: 'partial', id: first.id, text: '\n    return 3.14' });
    // Enter + auto-indent: no stop, no new request; the rest of the suggestion is shown
    const kept = (await sched.request({ ...REQ, prefix: 'def area(r):\n    ' }, 50))!;
    expect(ws.sent.filter(f => f.type === 'stop')).toEqual([]);
    expect(ws.sent.filter(f => f.type === 'complete').length).toBe(1);
    expect(kept.text).toBe('return 3.14');
    const seen: string[] = [];
    const reader = (async () => {
      for await (const u of kept.updates()) {
        seen.push(`${u.text}|${u.done}`);
      }
    })();
    ws.emit({ type: 'done', id: first.id, text: '\n    return 3.14 * r * r', dropped: null });
    await reader;
    expect(seen[seen.length - 1]).toBe('return 3.14 * r * r|true');
    // typing on asks anew for the new text
    await sched.request({ ...REQ, prefix: 'def area(r):\n    r' }, 0);
    await tick();
    expect(ws.sent.filter(f => f.type === 'complete').pop().prefix).toBe('def area(r):\n    r');
  });

  it('asks anew on the fresh line when the suggestion did not start with it', async () => {
    const { sched, first, ws } = await schedulerWithFirst(REQ);
    ws.emit({ type: 'partial', id: first.id, text: '  # area' });
    const fresh = { ...REQ, prefix: 'def area(r):\n    ', mode: 'block' as const };
    const next = await sched.request(fresh, 0);
    await tick();
    expect(ws.sent.filter(f => f.type === 'stop').map(f => f.id)).toEqual([first.id]);
    const last = ws.sent.filter(f => f.type === 'complete').pop();
    expect(last).toMatchObject({ id: next!.id, prefix: 'def area(r):\n    ', mode: 'block' });
  });
});
