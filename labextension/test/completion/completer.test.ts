import { InlineCompletionClient, earlierCells } from '../../src/completion/completerClient';
import {
  FakeSocket,
  SETTINGS as settings,
  completeRequest,
  resetSocketsBeforeEach,
  schedulerWithFirst,
  tick
} from '../helpers/sockets';

const REQ = completeRequest();

resetSocketsBeforeEach();

describe('completion socket', () => {
  it('streams whole texts and ends with the final one', async () => {
    const client = new InlineCompletionClient(settings);
    const s = client.start(REQ);
    await tick();
    const ws = FakeSocket.all[0];
    expect(ws.sent[0]).toMatchObject({ type: 'complete', id: s.id, prefix: 'import nu', mode: 'line' });
    const seen: string[] = [];
    const reader = (async () => {
      for await (const u of s.updates()) {
        seen.push(`${u.text}|${u.done}`);
      }
    })();
    ws.emit({ type: 'partial', id: s.id, text: 'mpy' });
    await tick();
    ws.emit({ type: 'partial', id: s.id, text: 'mpy as' });
    ws.emit({ type: 'done', id: s.id, text: 'mpy as np', dropped: null });
    await reader;
    expect(seen[0]).toBe('mpy|false');
    expect(seen[seen.length - 1]).toBe('mpy as np|true');
    expect(client.get(s.id)).toBeUndefined();
  });

  it('stop sends a stop frame and ends the stream with no text', async () => {
    const client = new InlineCompletionClient(settings);
    const s = client.start(REQ);
    await tick();
    client.stop(s.id);
    const ws = FakeSocket.all[0];
    expect(ws.sent[1]).toEqual({ type: 'stop', id: s.id });
    expect(s.done).toBe(true);
    expect(s.text).toBe('');
  });

  it('an error frame ends the stream with the message', async () => {
    const client = new InlineCompletionClient(settings);
    const s = client.start(REQ);
    await tick();
    FakeSocket.all[0].emit({ type: 'error', id: s.id, status: 503, error: 'no model is ready' });
    const out = [];
    for await (const u of s.updates()) {
      out.push(u);
    }
    expect(out[out.length - 1]).toMatchObject({ done: true, error: 'no model is ready' });
  });
});

describe('scheduler', () => {
  it('a keystroke stops the request in flight and debounces the next', async () => {
    const { sched, first, ws } = await schedulerWithFirst(REQ);
    expect(first).not.toBeNull();
    // two keystrokes within the debounce: only the second becomes a request
    const a = sched.request({ ...REQ, prefix: 'import num' }, 30);
    expect(ws.sent[ws.sent.length - 1]).toEqual({ type: 'stop', id: first!.id }); // at once
    const b = sched.request({ ...REQ, prefix: 'import nump' }, 30);
    expect(await a).toBeNull();
    const second = await b;
    await tick();
    const completes = ws.sent.filter(f => f.type === 'complete');
    expect(completes.map(f => f.prefix)).toEqual(['import nu', 'import nump']);
    expect(second!.id).toBe(completes[1].id);
  });
});

describe('earlier cells', () => {
  it('keeps the nearest whole cells within the character budget', () => {
    const cells = [
      { kind: 'code' as const, source: 'a'.repeat(50) },
      { kind: 'markdown' as const, source: 'b'.repeat(30) },
      { kind: 'code' as const, source: 'c'.repeat(40) }
    ];
    expect(earlierCells(cells, 80).map(c => c.source[0])).toEqual(['b', 'c']);
    expect(earlierCells(cells, 1000).length).toBe(3);
    expect(earlierCells(cells, 10)).toEqual([]);
  });
});
