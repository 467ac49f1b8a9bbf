/** The one socket both clients use: URL, shared opening, reopening, frames that are not JSON. */
import { ServerSocket, parseFrame, socketUrl } from '../src/socket';
import { InlineCompletionClient } from '../src/completion/completerClient';
import { FakeSocket, SETTINGS as settings, completeRequest, resetSocketsBeforeEach, tick } from './helpers/sockets';

resetSocketsBeforeEach();

function recorder() {
  const frames: any[] = [];
  let closed = 0;
  return { frames, closedCount: () => closed, events: { frame: (f: any) => frames.push(f), closed: () => closed++ } };
}

describe('ServerSocket', () => {
  it('puts a route under wsUrl with the token as a query parameter', () => {
    const lab = { ...settings, wsUrl: 'ws://localhost:8888/lab-base/', token: 'sécret' };
    expect(socketUrl(lab, 'minicpm/chat')).toBe('ws://localhost:8888/lab-base/minicpm/chat?token=s%C3%A9cret');
    expect(socketUrl({ ...lab, appendToken: false }, 'minicpm/chat')).toBe('ws://localhost:8888/lab-base/minicpm/chat');
    expect(socketUrl({ ...lab, token: '' }, 'minicpm/chat')).toBe('ws://localhost:8888/lab-base/minicpm/chat');
    expect(socketUrl(settings, 'minicpm/complete')).toBe('ws://localhost:8888/base/minicpm/complete?token=tok');
  });

  it('opens once for requests made together, and again after a close', async () => {
    const r = recorder();
    const s = new ServerSocket(settings, 'minicpm/chat', 'chat', r.events);
    const [a, b] = await Promise.all([s.open(), s.open()]);
    expect(a).toBe(b);
    expect(FakeSocket.all.length).toBe(1);
    FakeSocket.last.close();
    expect(r.closedCount()).toBe(1);
    await s.open();
    expect(FakeSocket.all.length).toBe(2);
  });

  it('hands on JSON objects and drops every other frame', async () => {
    const r = recorder();
    const s = new ServerSocket(settings, 'minicpm/chat', 'chat', r.events);
    await s.open();
    for (const raw of ['not json', 'null', '[1, 2]', '"text"', '{"type": "delta", "id": "a"}']) {
      FakeSocket.last.onmessage?.({ data: raw });
    }
    expect(r.frames).toEqual([{ type: 'delta', id: 'a' }]);
    expect(parseFrame('{')).toBeNull();
  });

  it('a socket that fails to open rejects with a clear error', async () => {
    /** A socket the server refuses: error, then close, never open. */
    class Refused {
      readyState = 0;
      onopen: (() => void) | null = null;
      onerror: (() => void) | null = null;
      onclose: (() => void) | null = null;
      constructor() {
        setTimeout(() => {
          this.readyState = 3;
          this.onerror?.();
          this.onclose?.();
        }, 0);
      }
    }
    const s = new ServerSocket({ ...settings, WebSocket: Refused }, 'minicpm/complete', 'completion', recorder().events);
    await expect(s.open()).rejects.toThrow('cannot open the MiniCPM completion socket');
  });

  it('sends a stop only while the socket is open', async () => {
    const s = new ServerSocket(settings, 'minicpm/chat', 'chat', recorder().events);
    s.sendIfOpen({ type: 'stop', id: 'x' });
    expect(FakeSocket.all.length).toBe(0); // nothing opened for it
    await s.open();
    s.sendIfOpen({ type: 'stop', id: 'x' });
    expect(FakeSocket.last.sent).toEqual([{ type: 'stop', id: 'x' }]);
  });
});

describe('the completer over it', () => {
  it('a frame that is not JSON does not end or break the suggestion', async () => {
    const client = new InlineCompletionClient(settings);
    const stream = client.start(completeRequest());
    await tick();
    const ws = FakeSocket.last;
    ws.onmessage?.({ data: '<html>proxy error</html>' });
    ws.emit({ type: 'partial', id: stream.id, text: 'y = 1' });
    ws.emit({ type: 'done', id: stream.id, text: 'y = 1' });
    expect(stream.done).toBe(true);
    expect(stream.text).toBe('y = 1');
  });
});
