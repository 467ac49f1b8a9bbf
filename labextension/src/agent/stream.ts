/**
 * The agent's requests, streamed: OpenAI chat-completion chunks (server-sent events) folded
 * back into the one message a non-streamed answer has, so the loop stays the same, while the
 * model's words reach the sidebar as they are generated. Tool calls arrive in pieces (name
 * first, arguments in fragments, by `index`) and are joined here. No JupyterLab imports: the
 * controller passes the Response; jest feeds it canned chunks.
 */

/** A chat.completion-shaped answer: `choices[0].message` with content and tool_calls. */
export interface IFoldedReply {
  choices: { message: { role: 'assistant'; content: string | null; tool_calls?: any[] }; finish_reason: string | null }[];
}

const MAX_CALLS = 16;

/** Fold chunk objects (already parsed) into one message; `onWords` gets each content delta. */
export class ChunkFolder {
  private content = '';
  private calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
  private finish: string | null = null;

  constructor(private onWords: (text: string) => void = () => undefined) {}

  add(chunk: any): void {
    if (chunk?.error) {
      throw new Error(String(chunk.error.message || chunk.error));
    }
    const choice = chunk?.choices?.[0];
    if (!choice) {
      return; // e.g. a usage-only chunk
    }
    const delta = choice.delta || {};
    if (typeof delta.content === 'string' && delta.content) {
      this.content += delta.content;
      this.onWords(delta.content);
    }
    for (const d of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
      const i = Number.isInteger(d?.index) ? d.index : this.calls.length;
      if (i < 0 || i >= MAX_CALLS) {
        continue;
      }
      while (this.calls.length <= i) {
        this.calls.push({ id: '', type: 'function', function: { name: '', arguments: '' } });
      }
      const c = this.calls[i];
      c.id = typeof d.id === 'string' && d.id ? d.id : c.id;
      c.function.name += typeof d.function?.name === 'string' ? d.function.name : '';
      c.function.arguments += typeof d.function?.arguments === 'string' ? d.function.arguments : '';
    }
    if (choice.finish_reason) {
      this.finish = choice.finish_reason;
    }
  }

  reply(): IFoldedReply {
    const calls = this.calls.map((c, i) => ({ ...c, id: c.id || `call_${i}` }));
    return {
      choices: [
        {
          message: { role: 'assistant', content: this.content || null, ...(calls.length ? { tool_calls: calls } : {}) },
          finish_reason: this.finish
        }
      ]
    };
  }
}

/** Read an SSE body ("data: {...}" lines, "data: [DONE]" at the end) into one reply. */
export async function readChatStream(resp: Response, onWords: (text: string) => void): Promise<IFoldedReply> {
  if (!resp.ok) {
    const text = await resp.text();
    let msg = `HTTP ${resp.status}`;
    try {
      const data = JSON.parse(text);
      msg = data?.error?.message || data?.message || msg;
    } catch {
      msg = text.slice(0, 300) || msg;
    }
    throw new Error(msg);
  }
  const folder = new ChunkFolder(onWords);
  if (!resp.body) {
    throw new Error('the server sent no body');
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const line = (raw: string): boolean => {
    const l = raw.trim();
    if (!l.startsWith('data:')) {
      return false; // comments, event names, blank separators
    }
    const data = l.slice(5).trim();
    if (data === '[DONE]') {
      return true;
    }
    folder.add(JSON.parse(data));
    return false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value, { stream: !done });
    const lines = buffer.split('\n');
    buffer = done ? '' : lines.pop() ?? '';
    if (lines.some(line)) {
      void reader.cancel().catch(() => undefined); // [DONE]: the rest is the connection closing
      break;
    }
    if (done) {
      break;
    }
  }
  return folder.reply();
}
