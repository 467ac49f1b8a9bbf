/**
 * Client for the minicpm_server API: REST through JupyterLab's ServerConnection and the
 * chat WebSocket. The JupyterLab pieces are injected (see `index.ts`), which keeps this file
 * free of runtime imports and testable under jest with fakes.
 */
import type { IChatRequest, IChatSummary, IModels, ISavedChat, IStatus } from './protocol';
import { ChatSocket } from './chatsocket';
import { ApiError, IChatStream, IConnectionSettings, IStreamHandlers, MakeRequest, joinUrl } from './connection';

export { ApiError, joinUrl } from './connection';
export type { IChatStream, IConnectionSettings, IStreamHandlers, MakeRequest } from './connection';

export class MiniCPMClient {
  private socket: ChatSocket;

  constructor(
    private settings: IConnectionSettings,
    private makeRequest: MakeRequest
  ) {
    this.socket = new ChatSocket(settings);
  }

  // --- REST --------------------------------------------------------------------------------
  async request<T>(
    path: string,
    method = 'GET',
    body?: unknown,
    signal?: AbortSignal
  ): Promise<T> {
    const url = joinUrl(this.settings.baseUrl, 'minicpm', path);
    const init: RequestInit = { method, signal };
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
        (data && (data.error?.message || data.error || data.message)) ||
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

  /** Send a chat request; deltas arrive through `handlers`, `done` settles at the end. */
  chat(request: IChatRequest, handlers: IStreamHandlers = {}): IChatStream {
    return this.socket.chat(request, handlers);
  }

  dispose(): void {
    this.socket.dispose();
  }
}
