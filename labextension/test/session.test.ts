import type { IChatStream, IStreamHandlers } from '../src/api';
import type { IChatRequest, IDone, ISavedChat } from '../src/protocol';
import { ChatSession, ISessionClient, SessionChange } from '../src/sidebar/session';

/** A client whose chat streams are driven by the test. */
class FakeClient implements ISessionClient {
  requests: IChatRequest[] = [];
  saved: { id: string; chat: Pick<ISavedChat, 'title' | 'messages'> }[] = [];
  handlers: IStreamHandlers = {};
  finish: (d: IDone) => void = () => undefined;
  fail: (e: Error) => void = () => undefined;
  stopped = 0;
  chats: Record<string, ISavedChat> = {};

  chat(request: IChatRequest, handlers: IStreamHandlers = {}): IChatStream {
    this.requests.push(request);
    this.handlers = handlers;
    const done = new Promise<IDone>((resolve, reject) => {
      this.finish = resolve;
      this.fail = reject;
    });
    return { id: 'r1', done, stop: () => (this.stopped += 1) };
  }
  async saveChat(id: string, chat: Pick<ISavedChat, 'title' | 'messages'>): Promise<unknown> {
    this.saved.push({ id, chat: JSON.parse(JSON.stringify(chat)) });
    return {};
  }
  async getChat(id: string): Promise<ISavedChat> {
    if (!this.chats[id]) {
      throw new Error('not found');
    }
    return this.chats[id];
  }
}

function record(s: ChatSession): SessionChange[] {
  const changes: SessionChange[] = [];
  s.changed.connect((_, c) => changes.push(c));
  return changes;
}

const tick = () => new Promise(r => setTimeout(r, 0));

describe('ChatSession', () => {
  it('streams an answer into the chat and saves the whole chat once, at the end', async () => {
    const client = new FakeClient();
    const s = new ChatSession(client, () => 1000);
    const changes = record(s);
    const sent = s.send('What is x?', [{ kind: 'cell', label: 'cell [1]', text: 'x = 1' }], { max_tokens: 9 });
    expect(s.busy).toBe(true);
    expect(s.messages.map(m => m.role)).toEqual(['user', 'assistant']);
    expect(s.messages[0].time).toBe(1000);
    expect(s.title).toBe('What is x?');
    client.handlers.onStart!('stand-in', 'cannot see images');
    client.handlers.onDelta!('x is ');
    client.handlers.onDelta!('one.');
    expect(s.messages[1].content).toBe('x is one.');
    expect(client.saved).toEqual([]); // not while streaming
    client.finish({ finish_reason: 'stop', usage: { completion_tokens: 3 } });
    await sent;
    expect(s.busy).toBe(false);
    expect(s.messages[1]).toMatchObject({ model: 'stand-in', notice: 'cannot see images', finish_reason: 'stop' });
    expect(client.saved.length).toBe(1);
    expect(client.saved[0].id).toBe(s.chatId);
    expect(client.saved[0].chat.messages.map(m => m.content)).toEqual(['What is x?', 'x is one.']);
    expect(client.requests[0].messages).toEqual([{ role: 'user', content: 'What is x?' }]);
    expect(client.requests[0].context![0].text).toBe('x = 1');
    expect(client.requests[0].sampling).toEqual({ max_tokens: 9 });
    // the context stays on the first question (the pre-read reads the same prefix)
    expect(client.requests[0].context_turn).toBe('first');
    expect(changes.map(c => c.type)).toEqual([
      'added', 'added', 'phase', 'phase', 'updated', 'updated', 'updated', 'phase', 'updated', 'saved'
    ]);
  });

  it('sends the earlier turns as history, without failed answers', async () => {
    const client = new FakeClient();
    const s = new ChatSession(client);
    let p = s.send('one', [], {});
    client.handlers.onDelta!('1');
    client.finish({ finish_reason: 'stop' });
    await p;
    p = s.send('two', [], {});
    client.fail(new Error('socket closed'));
    await p;
    expect(s.messages[3]).toMatchObject({ error: 'socket closed', finish_reason: 'error' });
    p = s.send('three', [], {});
    expect(client.requests[2].messages.map(m => m.content)).toEqual(['one', '1', 'two', 'three']);
    client.finish({ finish_reason: 'stop' });
    await p;
  });

  it('ignores a second send while answering; stop asks the stream to stop', async () => {
    const client = new FakeClient();
    const s = new ChatSession(client);
    const p = s.send('a', [], {});
    await s.send('b', [], {});
    expect(client.requests.length).toBe(1);
    s.stop();
    expect(client.stopped).toBe(1);
    client.finish({ finish_reason: 'cancelled' });
    await p;
    expect(s.messages[1].finish_reason).toBe('cancelled');
  });

  it('opens a saved chat and starts a new one', async () => {
    const client = new FakeClient();
    client.chats.c1 = {
      id: 'c1',
      title: 'Old',
      messages: [
        { role: 'system', content: 'sys' },
        { role: 'user', content: 'q' },
        { role: 'assistant', content: 'a' }
      ]
    };
    const s = new ChatSession(client);
    const changes = record(s);
    await s.open('c1');
    expect(s.chatId).toBe('c1');
    expect(s.title).toBe('Old');
    expect(s.messages.map(m => m.content)).toEqual(['q', 'a']);
    // a malformed saved file does not break the chat
    client.chats.bad = { id: 'bad', title: '', messages: [{ role: 'assistant', content: 42 } as any, null as any] };
    await s.open('bad');
    expect(s.messages).toEqual([{ role: 'assistant', content: '42' }]);
    await s.open('c1');
    await expect(s.open('nope')).rejects.toThrow('not found');
    expect(s.chatId).toBe('c1'); // a failed open keeps the chat
    s.reset();
    await tick();
    expect(s.chatId).not.toBe('c1');
    expect(s.messages).toEqual([]);
    expect(changes.filter(c => c.type === 'reset').length).toBe(4); // c1, bad, c1, New chat
  });

  it('finds the question an answer replies to', async () => {
    const client = new FakeClient();
    const s = new ChatSession(client);
    const p = s.send('q', [{ kind: 'cell', label: 'cell [1]', cellId: 'abc' }], {});
    client.finish({ finish_reason: 'stop' });
    await p;
    expect(s.questionOf(1)!.context![0].cellId).toBe('abc');
    expect(s.questionOf(0)).toBeNull();
  });
});
