/**
 * The chat WebSocket (`/minicpm/chat`): one socket for every request of the page, frames routed
 * by request id (docs/protocol.md). The socket itself (opening, reopening, parsing) is socket.ts's.
 */
import type { IChatRequest, IDone, ServerFrame } from './protocol';
import { ApiError, IChatStream, IConnectionSettings, IStreamHandlers } from './connection';
import { ServerSocket } from './socket';

interface IPending {
  handlers: IStreamHandlers;
  resolve: (d: IDone) => void;
  reject: (e: Error) => void;
}

let counter = 0;
function newId(): string {
  counter += 1;
  return `r${Date.now().toString(36)}-${counter}`;
}

export class ChatSocket {
  private socket: ServerSocket;
  private pending = new Map<string, IPending>();

  constructor(settings: IConnectionSettings) {
    this.socket = new ServerSocket(settings, 'minicpm/chat', 'chat', {
      frame: f => this.onFrame(f as ServerFrame),
      closed: () => {
        // The server cancels a closed socket's requests: fail what was still running.
        const err = new ApiError('the connection to the MiniCPM server closed', 0);
        for (const p of this.pending.values()) {
          p.reject(err);
        }
        this.pending.clear();
      }
    });
  }

  private onFrame(frame: ServerFrame): void {
    const id = frame.id === null || frame.id === undefined ? '' : String(frame.id);
    const p = this.pending.get(id);
    if (!p) {
      if (frame.type === 'error' && !id && this.pending.size === 1) {
        // an error frame without an id (malformed frame): the only request must be it
        const [k, only] = [...this.pending.entries()][0];
        this.pending.delete(k);
        only.reject(new ApiError(frame.error, frame.status));
      }
      return;
    }
    switch (frame.type) {
      case 'queued':
        p.handlers.onQueued?.(frame.position);
        break;
      case 'start':
        p.handlers.onStart?.(frame.model, frame.notice);
        break;
      case 'delta':
        p.handlers.onDelta?.(frame.text);
        break;
      case 'done':
        this.pending.delete(id);
        p.resolve({
          finish_reason: frame.finish_reason,
          usage: frame.usage,
          truncated: frame.truncated
        });
        break;
      case 'error':
        this.pending.delete(id);
        p.reject(new ApiError(frame.error, frame.status));
        break;
    }
  }

  /** Send a chat request; deltas arrive through `handlers`, `done` settles at the end. */
  chat(request: IChatRequest, handlers: IStreamHandlers = {}): IChatStream {
    const id = newId();
    let stopped = false;
    let sock: WebSocket | null = null;
    const done = new Promise<IDone>((resolve, reject) => {
      this.pending.set(id, { handlers, resolve, reject });
      this.socket.open().then(
        ws => {
          sock = ws;
          if (stopped) {
            this.pending.delete(id);
            resolve({ finish_reason: 'cancelled' });
            return;
          }
          const frame: any = {
            type: 'chat',
            id,
            messages: request.messages.map(m => ({
              role: m.role,
              content: m.content
            })),
            context: (request.context || []).map(stripClientFields),
            sampling: request.sampling || {},
            ...(request.context_turn ? { context_turn: request.context_turn } : {})
          };
          ws.send(JSON.stringify(frame));
        },
        err => {
          this.pending.delete(id);
          reject(err);
        }
      );
    });
    return {
      id,
      done,
      stop: () => {
        stopped = true;
        // only on the socket the request went out on: a reopened one never heard of it
        if (sock && sock.readyState === 1) {
          sock.send(JSON.stringify({ type: 'stop', id }));
        }
      }
    };
  }

  dispose(): void {
    this.socket.dispose();
  }
}

/** Drop frontend-only fields before a part goes to the server. */
function stripClientFields(part: any): any {
  const { truncated, cellId, ...rest } = part;
  void truncated;
  void cellId;
  return rest;
}
