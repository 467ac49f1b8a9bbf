/**
 * The chat as data: messages, chat id, title, the running stream. The sidebar's parts observe
 * `changed`; nothing here touches the DOM, so jest tests it with a fake client. Saving has one
 * path: after each answer the whole chat is PUT (`/minicpm/chats/<id>`).
 */
import { ISignal, Signal } from '@lumino/signaling';
import type { IChatStream, IStreamHandlers } from '../api';
import type { IChatMessage, IChatRequest, IContextPart, ISampling, ISavedChat } from '../protocol';
import { chatTitle, newChatId } from './format';

/** The part of MiniCPMClient a session uses. */
export interface ISessionClient {
  chat(request: IChatRequest, handlers?: IStreamHandlers): IChatStream;
  saveChat(id: string, chat: Pick<ISavedChat, 'title' | 'messages'>): Promise<unknown>;
  getChat(id: string): Promise<ISavedChat>;
}

/** Where the running answer is. */
export type Phase = 'idle' | 'waiting' | 'queued' | 'generating';

export type SessionChange =
  | { type: 'reset' }
  | { type: 'added'; index: number }
  | { type: 'updated'; index: number }
  | { type: 'phase'; phase: Phase; position?: number }
  | { type: 'saved' };

/** A message as the sidebar keeps it: the wire fields plus what the footer shows. */
export interface ISessionMessage extends IChatMessage {
  /** when it was written (ms since the epoch) */
  time?: number;
  /** the server's note at the start (e.g. "this model cannot see images") */
  notice?: string;
  /** the context was cut to fit the model */
  truncated?: boolean;
  /** the request failed with this message */
  error?: string;
}

export class ChatSession {
  chatId = newChatId();
  title = '';
  messages: ISessionMessage[] = [];
  phase: Phase = 'idle';
  private stream: IChatStream | null = null;
  private changed_ = new Signal<this, SessionChange>(this);

  constructor(
    private client: ISessionClient,
    private now: () => number = Date.now
  ) {}

  get changed(): ISignal<this, SessionChange> {
    return this.changed_;
  }

  get busy(): boolean {
    return this.stream !== null;
  }

  private emit(change: SessionChange): void {
    this.changed_.emit(change);
  }

  private setPhase(phase: Phase, position?: number): void {
    this.phase = phase;
    this.emit({ type: 'phase', phase, position });
  }

  /** Start an empty chat (stops a running answer). */
  reset(): void {
    this.stop();
    this.chatId = newChatId(this.now());
    this.title = '';
    this.messages = [];
    this.emit({ type: 'reset' });
  }

  /** Replace this chat by a saved one. */
  async open(id: string): Promise<void> {
    const chat = await this.client.getChat(id);
    this.stop();
    this.chatId = chat.id;
    this.title = chat.title || '';
    // a saved file is data too: only user/assistant turns, content as text
    this.messages = (Array.isArray(chat.messages) ? chat.messages : [])
      .filter(m => m && (m.role === 'user' || m.role === 'assistant'))
      .map(m => ({ ...m, content: typeof m.content === 'string' ? m.content : String(m.content ?? '') }));
    this.emit({ type: 'reset' });
  }

  /**
   * Ask `content` with `context`; resolves when the answer has ended (done, stopped or failed)
   * and the chat is saved. Ignored while an answer is running.
   */
  async send(content: string, context: IContextPart[], sampling: ISampling): Promise<void> {
    if (this.stream) {
      return;
    }
    const history = this.messages
      .filter(m => !m.error)
      .map(m => ({ role: m.role, content: m.content }));
    const user: ISessionMessage = { role: 'user', content, context, time: this.now() };
    if (!this.title) {
      this.title = chatTitle(content);
    }
    this.messages.push(user);
    this.emit({ type: 'added', index: this.messages.length - 1 });

    const answer: ISessionMessage = { role: 'assistant', content: '', time: this.now() };
    this.messages.push(answer);
    const index = this.messages.length - 1;
    this.emit({ type: 'added', index });
    const updated = () => this.emit({ type: 'updated', index });

    this.stream = this.client.chat(
      // The context stays on the chat's first question, so a follow-up's prompt starts with the
      // previous prompt and answer and the server's prompt cache reads only the new turn.
      { messages: [...history, { role: 'user', content }], context, sampling, context_turn: 'first' },
      {
        onQueued: pos => this.setPhase('queued', pos),
        onStart: (model, notice) => {
          answer.model = model;
          answer.notice = notice || undefined;
          this.setPhase('generating');
          updated();
        },
        onDelta: t => {
          answer.content += t;
          updated();
        }
      }
    );
    this.setPhase('waiting');
    try {
      const done = await this.stream.done;
      answer.usage = done.usage;
      answer.finish_reason = done.finish_reason;
      answer.truncated = !!done.truncated || undefined;
    } catch (e) {
      answer.error = (e as Error).message || String(e);
      answer.finish_reason = 'error';
    } finally {
      this.stream = null;
      this.setPhase('idle');
    }
    updated();
    await this.save();
  }

  stop(): void {
    this.stream?.stop();
  }

  /** PUT the whole chat (the only way chats are saved). */
  async save(): Promise<void> {
    try {
      await this.client.saveChat(this.chatId, { title: this.title, messages: this.messages });
      this.emit({ type: 'saved' });
    } catch (e) {
      console.warn('MiniCPM: could not save the chat', e);
    }
  }

  /** The user message that an answer replies to (for "Replace cell": the cell it was about). */
  questionOf(index: number): ISessionMessage | null {
    for (let i = index - 1; i >= 0; i--) {
      if (this.messages[i].role === 'user') {
        return this.messages[i];
      }
    }
    return null;
  }
}
