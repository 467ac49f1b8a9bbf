import { ApiError, MiniCPMClient, joinUrl } from '../src/api';
import { FakeSocket, tick } from './helpers/sockets';

const settings = {
  baseUrl: 'http://localhost:8888/lab-base/',
  wsUrl: 'ws://localhost:8888/lab-base/',
  token: 'sécret',
  appendToken: true
};

function response(status: number, body?: unknown): Response {
  return {
    status,
    ok: status >= 200 && status < 300,
    text: async () => (body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body))
  } as unknown as Response;
}

describe('URLs', () => {
  it('joins with single slashes', () => {
    expect(joinUrl('http://h/base/', '/minicpm', 'status')).toBe('http://h/base/minicpm/status');
  });
});

describe('REST', () => {
  it('calls the routes of docs/protocol.md through makeRequest', async () => {
    const calls: { url: string; init: RequestInit }[] = [];
    const make = jest.fn(async (url: string, init: RequestInit, _s?: unknown) => {
      calls.push({ url, init });
      if (url.endsWith('/chats')) {
        return response(200, { chats: [{ id: 'a', title: 't', updated: 1, n_messages: 2 }] });
      }
      if (init.method === 'DELETE') {
        return response(204);
      }
      return response(200, { state: 'ready', progress: 1 });
    });
    const c = new MiniCPMClient(settings, make);
    expect((await c.status()).state).toBe('ready');
    await c.models();
    await c.load('MiniCPM-2B-sft-bf16');
    await c.unload();
    expect(await c.listChats()).toHaveLength(1);
    await c.getChat('a');
    await c.saveChat('a', { title: 'T', messages: [{ role: 'user', content: 'hi' }] });
    await c.deleteChat('a');
    expect(calls.map(x => `${x.init.method} ${x.url.replace('http://localhost:8888/lab-base', '')}`)).toEqual([
      'GET /minicpm/status',
      'GET /minicpm/models',
      'POST /minicpm/models/load',
      'POST /minicpm/models/unload',
      'GET /minicpm/chats',
      'GET /minicpm/chats/a',
      'PUT /minicpm/chats/a',
      'DELETE /minicpm/chats/a'
    ]);
    expect(JSON.parse(String(calls[2].init.body))).toEqual({ model: 'MiniCPM-2B-sft-bf16' });
    expect(JSON.parse(String(calls[6].init.body))).toEqual({ title: 'T', messages: [{ role: 'user', content: 'hi' }] });
    // the settings go to makeRequest (it adds the token and XSRF headers)
    expect(make.mock.calls[0][2]).toBe(settings);
  });

  it('turns the server error JSON into an ApiError with the status', async () => {
    const c = new MiniCPMClient(settings, async () => response(400, { error: 'model must be a string', status: 400 }));
    await expect(c.load('x')).rejects.toEqual(expect.objectContaining({ message: 'model must be a string', status: 400 }));
    const d = new MiniCPMClient(settings, async () => response(500, 'boom'));
    await expect(d.status()).rejects.toBeInstanceOf(ApiError);
    const e = new MiniCPMClient(settings, async () => {
      throw new TypeError('network');
    });
    await expect(e.status()).rejects.toThrow(/cannot reach/);
  });
});

describe('chat WebSocket', () => {
  const s = { ...settings, WebSocket: FakeSocket };

  it('sends a chat frame and streams queued/start/delta/done', async () => {
    const c = new MiniCPMClient(s, jest.fn());
    const seen: string[] = [];
    const stream = c.chat(
      {
        messages: [{ role: 'user', content: 'Why?', context: [{ kind: 'cell', label: 'x' }] }],
        context: [{ kind: 'error', label: 'cell [3]', text: 'ZeroDivisionError', truncated: true }],
        sampling: { temperature: 0, max_tokens: 8 }
      },
      {
        onQueued: p => seen.push(`queued ${p}`),
        onStart: m => seen.push(`start ${m}`),
        onDelta: t => seen.push(t)
      }
    );
    await tick();
    const ws = FakeSocket.last;
    expect(ws.url).toBe('ws://localhost:8888/lab-base/minicpm/chat?token=s%C3%A9cret');
    expect(ws.sent).toHaveLength(1);
    const frame = ws.sent[0];
    expect(frame).toEqual({
      type: 'chat',
      id: stream.id,
      messages: [{ role: 'user', content: 'Why?' }],
      context: [{ kind: 'error', label: 'cell [3]', text: 'ZeroDivisionError' }],
      sampling: { temperature: 0, max_tokens: 8 }
    });
    ws.emit({ type: 'queued', id: stream.id, position: 1 });
    ws.emit({ type: 'start', id: stream.id, model: 'SmolLM2-135M-Instruct (stand-in)' });
    ws.emit({ type: 'delta', id: 'someone-else', text: 'nope' });
    ws.emit({ type: 'delta', id: stream.id, text: 'Division ' });
    ws.emit({ type: 'delta', id: stream.id, text: 'by zero.' });
    ws.emit({ type: 'done', id: stream.id, finish_reason: 'stop', usage: { tokens_per_second: 61.2, completion_tokens: 3 }, truncated: false });
    const done = await stream.done;
    expect(seen).toEqual(['queued 1', 'start SmolLM2-135M-Instruct (stand-in)', 'Division ', 'by zero.']);
    expect(done).toEqual({ finish_reason: 'stop', usage: { tokens_per_second: 61.2, completion_tokens: 3 }, truncated: false });
  });

  it('reuses one socket for several requests and sends stop frames', async () => {
    const c = new MiniCPMClient(s, jest.fn());
    const a = c.chat({ messages: [{ role: 'user', content: 'a' }] });
    const b = c.chat({ messages: [{ role: 'user', content: 'b' }] });
    await tick();
    const ws = FakeSocket.last;
    expect(ws.sent.map(f => f.id)).toEqual([a.id, b.id]);
    expect(a.id).not.toBe(b.id);
    a.stop();
    expect(ws.sent[2]).toEqual({ type: 'stop', id: a.id });
    ws.emit({ type: 'done', id: a.id, finish_reason: 'cancelled' });
    ws.emit({ type: 'error', id: b.id, status: 503, error: 'the queue is full' });
    expect((await a.done).finish_reason).toBe('cancelled');
    await expect(b.done).rejects.toEqual(expect.objectContaining({ status: 503, message: 'the queue is full' }));
  });

  it('fails running requests when the socket closes, then reconnects', async () => {
    const c = new MiniCPMClient(s, jest.fn());
    const a = c.chat({ messages: [{ role: 'user', content: 'a' }] });
    await tick();
    const first = FakeSocket.last;
    first.close();
    await expect(a.done).rejects.toThrow(/closed/);
    const b = c.chat({ messages: [{ role: 'user', content: 'b' }] });
    await tick();
    expect(FakeSocket.last).not.toBe(first);
    FakeSocket.last.emit({ type: 'done', id: b.id, finish_reason: 'stop' });
    expect((await b.done).finish_reason).toBe('stop');
  });

  it('stopping before the socket opens sends nothing', async () => {
    const c = new MiniCPMClient(s, jest.fn());
    const a = c.chat({ messages: [{ role: 'user', content: 'a' }] });
    a.stop();
    expect((await a.done).finish_reason).toBe('cancelled');
    expect(FakeSocket.last.sent).toHaveLength(0);
  });
});
