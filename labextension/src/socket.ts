/**
 * One WebSocket to a minicpm_server route, shared by every request of the page: the chat
 * (`/minicpm/chat`) and the inline completer (`/minicpm/complete`) each hold one. It opens on
 * the first request, reopens on the next request after a close, and hands each parsed frame to
 * its owner; frames that are not JSON objects are dropped (a bad frame must not break the page).
 * No runtime imports beyond connection.ts, so jest drives it with a fake socket class.
 */
import { ApiError, IConnectionSettings, joinUrl } from './connection';

/** A socket route's URL: wsUrl + route, the token as query parameter the way JupyterLab's
 * own sockets carry it (browsers cannot set headers on a WebSocket). */
export function socketUrl(settings: IConnectionSettings, route: string): string {
  let url = joinUrl(settings.wsUrl, route);
  if (settings.appendToken && settings.token) {
    url += `?token=${encodeURIComponent(settings.token)}`;
  }
  return url;
}

/** What the owner of a ServerSocket hears. */
export interface ISocketEvents {
  /** A frame from the server, parsed (always an object). */
  frame(frame: any): void;
  /** The socket closed: the server cancels its requests, so the owner fails what is running. */
  closed(): void;
}

export class ServerSocket {
  private socket: WebSocket | null = null;
  private opening: Promise<WebSocket> | null = null;

  /** `what` names the socket in errors ("chat", "completion"). */
  constructor(
    private settings: IConnectionSettings,
    private route: string,
    private what: string,
    private events: ISocketEvents
  ) {}

  /** The open socket, opening one if there is none (requests share one opening). */
  open(): Promise<WebSocket> {
    if (this.socket && this.socket.readyState === 1) {
      return Promise.resolve(this.socket);
    }
    if (this.opening) {
      return this.opening;
    }
    const Ctor = this.settings.WebSocket || (globalThis as any).WebSocket;
    this.opening = new Promise<WebSocket>((resolve, reject) => {
      const ws: WebSocket = new Ctor(socketUrl(this.settings, this.route));
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.socket = ws;
        this.opening = null;
        resolve(ws);
      };
      ws.onmessage = (ev: MessageEvent) => {
        const frame = parseFrame(ev.data);
        if (frame) {
          this.events.frame(frame);
        }
      };
      ws.onerror = () => {
        if (!opened) {
          this.opening = null;
          reject(new ApiError(`cannot open the MiniCPM ${this.what} socket`, 0));
        }
      };
      ws.onclose = () => {
        this.opening = null;
        if (this.socket === ws) {
          this.socket = null;
        }
        if (!opened) {
          reject(new ApiError(`the MiniCPM ${this.what} socket closed`, 0));
        }
        this.events.closed();
      };
    });
    return this.opening;
  }

  /** Send a frame if the socket is open (a stop for a request that never left needs no send). */
  sendIfOpen(frame: object): void {
    if (this.socket && this.socket.readyState === 1) {
      this.socket.send(JSON.stringify(frame));
    }
  }

  dispose(): void {
    this.socket?.close();
    this.socket = null;
  }
}

/** A frame's JSON object, or null for anything else. */
export function parseFrame(raw: unknown): Record<string, any> | null {
  try {
    const frame = JSON.parse(String(raw));
    return frame && typeof frame === 'object' && !Array.isArray(frame) ? frame : null;
  } catch {
    return null;
  }
}
