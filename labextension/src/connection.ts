/**
 * What the API client and the sockets (socket.ts) share: connection settings, URL helpers, the error
 * type and the stream interfaces. No runtime imports (jest runs it under node).
 */
import type { IDone } from './protocol';

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
