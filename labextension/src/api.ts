/**
 * Client for the minicpm_server API: REST through JupyterLab's ServerConnection and the
 * chat WebSocket. The JupyterLab pieces are injected (see `index.ts`), which keeps this file
 * free of runtime imports and testable under jest with fakes.
 */
import type {
  IChatRequest,
  IChatSummary,
  IDone,
  IModels,
  ISavedChat,
  IStatus,
  ServerFrame
} from './protocol';

/** The part of ServerConnection.ISettings the client needs. */
export interface IConnectionSettings {
  baseUrl: string;
  wsUrl: string;
  token: string;
  appendToken: boolean;
  WebSocket?: any;
}

/** ServerConnection.makeRequest's signature. */
export type MakeRequest = (
  url: string,
  init: RequestInit,
  settings: any
) => Promise<Response>;

/** Join URL parts with single slashes (URLExt.join for our needs, no dependency). */
export function joinUrl(...parts: string[]): string {
  const out: string[] = [];
  parts.forEach((p, i) => {
    if (!p) {
      return;
    }
    let s = p;
    if (i > 0) {
      s = s.replace(/^\/+/, '');
    }
    if (i < parts.length - 1) {
      s = s.replace(/\/+$/, '');
    }
    out.push(s);
  });
  return out.join('/');
}

/** The chat socket's URL: wsUrl + minicpm/chat, the token as query parameter the way
 * JupyterLab's own sockets carry it. */
export function chatSocketUrl(settings: IConnectionSettings): string {
  let url = joinUrl(settings.wsUrl, 'minicpm/chat');
  if (settings.appendToken && settings.token) {
    url += `?token=${encodeURIComponent(settings.token)}`;
  }
  return url;
}

export class ApiError extends Error {
  constructor(
    message: string,
    public status: number
  ) {
    super(message);
  }
}

export interface IStreamHandlers {
  onQueued?: (position: number) => void;
  onStart?: (model: string, notice?: string) => void;
  onDelta?: (text: string) => void;
}

/** A running chat request. */
export interface IChatStream {
  id: string;
  /** Ask the server to stop; `done` then resolves with finish_reason "cancelled". */
  stop(): void;
  done: Promise<IDone>;
}

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

export class MiniCPMClient {
  constructor(
    private settings: IConnectionSettings,
    private makeRequest: MakeRequest
  ) {}

  // --- REST --------------------------------------------------------------------------------
  async request<T>(
    path: string,
    method = 'GET',
    body?: unknown
  ): Promise<T> {
    const url = joinUrl(this.settings.baseUrl, 'minicpm', path);
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let resp: Response;
    try {
      resp = await this.makeRequest(url, init, this.settings);
    } catch (e) {
      throw new ApiError(`cannot reach the MiniCPM server: ${e}`, 0);
    }
    if (resp.status === 204) {
      return undefined as unknown as T;
    }
    const text = await resp.text();
    let data: any = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { error: text };
      }
    }
    if (!resp.ok) {
      const msg =
        (data && (data.error || data.message)) ||
        `${method} ${path}: HTTP ${resp.status}`;
      throw new ApiError(msg, resp.status);
    }
    return data as T;
  }

  status(): Promise<IStatus> {
    return this.request<IStatus>('status');
  }

  models(): Promise<IModels> {
    return this.request<IModels>('models');
  }

  load(model: string | null, backend?: string): Promise<IStatus> {
    const body: any = { model };
    if (backend) {
      body.backend = backend;
    }
    return this.request<IStatus>('models/load', 'POST', body);
  }

  unload(): Promise<IStatus> {
    return this.request<IStatus>('models/unload', 'POST', {});
  }

  async listChats(): Promise<IChatSummary[]> {
    const r = await this.request<{ chats: IChatSummary[] }>('chats');
    return r.chats || [];
  }

  getChat(id: string): Promise<ISavedChat> {
    return this.request<ISavedChat>(`chats/${encodeURIComponent(id)}`);
  }

  saveChat(
    id: string,
    chat: Pick<ISavedChat, 'title' | 'messages'>
  ): Promise<ISavedChat> {
    return this.request<ISavedChat>(`chats/${encodeURIComponent(id)}`, 'PUT', {
      title: chat.title,
      messages: chat.messages
    });
  }

  async deleteChat(id: string): Promise<void> {
    await this.request<void>(`chats/${encodeURIComponent(id)}`, 'DELETE');
  }

  // --- WebSocket ---------------------------------------------------------------------------
  private socket: WebSocket | null = null;
  private opening: Promise<WebSocket> | null = null;
  private pending = new Map<string, IPending>();

  private connect(): Promise<WebSocket> {
    if (this.socket && this.socket.readyState === 1) {
      return Promise.resolve(this.socket);
    }
    if (this.opening) {
      return this.opening;
    }
    const Ctor = this.settings.WebSocket || (globalThis as any).WebSocket;
    this.opening = new Promise<WebSocket>((resolve, reject) => {
      const ws: WebSocket = new Ctor(chatSocketUrl(this.settings));
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.socket = ws;
        this.opening = null;
        resolve(ws);
      };
      ws.onmessage = (ev: MessageEvent) => this.onFrame(ev.data);
      ws.onerror = () => {
        if (!opened) {
          this.opening = null;
          reject(new ApiError('cannot open the MiniCPM chat socket', 0));
        }
      };
      ws.onclose = () => {
        this.opening = null;
        if (this.socket === ws) {
          this.socket = null;
        }
        if (!opened) {
          reject(new ApiError('the MiniCPM chat socket closed', 0));
        }
        // The server cancels a closed socket's requests: fail what was still running.
        const err = new ApiError('the connection to the MiniCPM server closed', 0);
        for (const p of this.pending.values()) {
          p.reject(err);
        }
        this.pending.clear();
      };
    });
    return this.opening;
  }

  private onFrame(raw: unknown): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(String(raw));
    } catch {
      return;
    }
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
      this.connect().then(
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
            sampling: request.sampling || {}
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
        if (sock && sock.readyState === 1) {
          sock.send(JSON.stringify({ type: 'stop', id }));
        }
      }
    };
  }

  dispose(): void {
    this.socket?.close();
    this.socket = null;
  }
}

/** Drop frontend-only fields before a part goes to the server. */
function stripClientFields(part: any): any {
  const { truncated, cellId, ...rest } = part;
  void truncated;
  void cellId;
  return rest;
}
