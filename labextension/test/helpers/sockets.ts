/** What the socket clients' tests share: settings whose WebSocket is the hand-driven FakeSocket,
 * a completion request, a scheduler with its first request out, and a short wait. */
import { FakeSocket } from './fakeSocket';
import {
  ICompleteRequest,
  InlineCompletionClient,
  InlineScheduler,
  InlineStream
} from '../../src/completion/completerClient';

export { FakeSocket };

export const SETTINGS = {
  baseUrl: 'http://localhost:8888/base/',
  wsUrl: 'ws://localhost:8888/base/',
  token: 'tok',
  appendToken: true,
  WebSocket: FakeSocket
};

/** Let the fake socket open and queued frames go out (FakeSocket opens on a 0 ms timer). */
export const tick = (ms = 2) => new Promise(r => setTimeout(r, ms));

/** Each test starts with no socket opened (FakeSocket.all, FakeSocket.last). */
export function resetSocketsBeforeEach(): void {
  beforeEach(() => {
    FakeSocket.all = [];
  });
}

export function completeRequest(over: Partial<ICompleteRequest> = {}): ICompleteRequest {
  return { prefix: 'import nu', suffix: '', cells: [], mode: 'line', language: 'python', max_tokens: 16, ...over };
}

/** A scheduler over a fresh client, its first request sent (no debounce) on the socket `ws`. */
export async function schedulerWithFirst(req: ICompleteRequest): Promise<{
  client: InlineCompletionClient;
  sched: InlineScheduler;
  first: InlineStream;
  ws: FakeSocket;
}> {
  const client = new InlineCompletionClient(SETTINGS);
  const sched = new InlineScheduler(client);
  const first = (await sched.request(req, 0))!;
  await tick();
  return { client, sched, first, ws: FakeSocket.all[0] };
}
