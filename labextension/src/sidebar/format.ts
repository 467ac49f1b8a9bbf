/**
 * Pure formatting for the sidebar: labels, footers, titles, times, status lines. No DOM and no
 * JupyterLab imports, so jest tests it directly (test/format.test.ts).
 */
import type { IChatMessage, IContextPart, IModelRow, IStatus } from '../protocol';

/** A new chat's id: time-ordered, unique enough for one user's saved chats. */
export function newChatId(now = Date.now()): string {
  return `chat-${now.toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A chat title from its first question: one line, cut at a word boundary, with an ellipsis. */
export function chatTitle(text: string, max = 60): string {
  const line = text.replace(/\s+/g, ' ').trim();
  if (line.length <= max) {
    return line;
  }
  const cut = line.slice(0, max - 1);
  const space = cut.lastIndexOf(' ');
  // a word longer than half the title is cut mid-word rather than leaving a stub
  return `${(space > max / 2 ? cut.slice(0, space) : cut).replace(/[\s.,;:]+$/, '')}…`;
}

/**
 * What a context part is, in words: "cell [1] code", "cell [1] output", "cell [1] error".
 * Code and output of one cell share the cell label; the kind tells them apart.
 */
export function partLabel(p: IContextPart): string {
  switch (p.kind) {
    case 'cell':
      return `${p.label} code`;
    case 'output':
      return /output/.test(p.label) ? p.label : `${p.label} output`;
    case 'error':
      return `${p.label} error`;
    case 'image':
      return /figure|image/.test(p.label) ? p.label : `${p.label} image`;
    default:
      return p.label;
  }
}

/** The line under an answer: speed, length, first-token latency, why it ended. */
export function usageLine(msg: IChatMessage): string {
  const u = msg.usage || {};
  const bits: string[] = [];
  if (typeof u.tokens_per_second === 'number') {
    bits.push(`${u.tokens_per_second.toFixed(1)} tokens/s`);
  }
  if (typeof u.completion_tokens === 'number') {
    bits.push(`${u.completion_tokens} tokens`);
  }
  if (typeof u.time_to_first_token === 'number') {
    bits.push(`first token ${u.time_to_first_token.toFixed(2)} s`);
  }
  if (msg.finish_reason === 'cancelled') {
    bits.push('stopped');
  } else if (msg.finish_reason === 'length') {
    bits.push('hit max tokens');
  }
  return bits.join(' · ');
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** "14:05" today, "3 Dec 14:05" on another day (local time). */
export function timeLabel(ms: number, now = Date.now()): string {
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const n = new Date(now);
  if (d.toDateString() === n.toDateString()) {
    return t;
  }
  const month = d.toLocaleString('en', { month: 'short' });
  return `${d.getDate()} ${month} ${t}`;
}

/** A saved chat's `updated` (seconds since the epoch, or a string) as milliseconds. */
export function updatedMs(updated: number | string | undefined): number | null {
  if (typeof updated === 'number') {
    return updated * 1000;
  }
  const t = updated ? Date.parse(updated) : NaN;
  return Number.isNaN(t) ? null : t;
}

/** The status line above the conversation. */
export function statusLine(st: IStatus): string {
  const name = st.model ? st.model.label || st.model.model : st.loading || '';
  let text: string;
  switch (st.state) {
    case 'ready':
      text = `Ready · ${name}`;
      break;
    case 'loading':
      text = `Loading ${name || 'model'}… ${Math.round((st.progress || 0) * 100)}%`;
      break;
    case 'error':
      text = `Error: ${st.error || 'the model failed to load'}`;
      break;
    default:
      text = 'No model loaded — the default loads with the first message';
  }
  if (st.queue && st.queue.waiting) {
    text += ` · ${st.queue.waiting} waiting`;
  }
  return text;
}

/** Is the answering model the embedded stand-in (not MiniCPM)? */
export function isStandIn(st: IStatus | null): boolean {
  if (!st) {
    return false;
  }
  return !!st.model?.stand_in || (st.state === 'loading' && /SmolLM2|stand-in/i.test(st.loading || ''));
}

/** The name the assistant's messages and the empty chat use: neutral unless it is MiniCPM. */
export function assistantName(st: IStatus | null): string {
  const m = st?.model;
  if (!m) {
    return 'the model';
  }
  return m.label || m.model;
}

export interface IPickerEntry {
  value: string;
  label: string;
  /** where the file came from when another tool downloaded it ("ollama", "lm studio", …) */
  source?: string;
  /** the file, so the status (which names the loaded file) can select its entry */
  path?: string;
}

const SOURCE_LABELS: Record<string, string> = {
  ollama: 'Ollama',
  'lm studio': 'LM Studio',
  'hf cache': 'HF cache',
  'llama.cpp cache': 'llama.cpp cache',
  'models folder': 'models folder'
};

/** The picker's text for a model row: its readable name, then where it came from. */
export function modelLabel(m: IModelRow): string {
  const name = m.label || m.name;
  if (m.stand_in) {
    return `${name} (stand-in)`;
  }
  const where = m.source ? SOURCE_LABELS[m.source] : undefined;
  return where ? `${name} · ${where}` : name;
}

/**
 * The model picker's entries: models that are here and can chat (the server lists MiniCPM
 * first; embedding models and lone projectors are not offered), then the current model when
 * the list does not have it (a remote model, a path), so the picker always shows what answers.
 */
export function pickerEntries(
  rows: IModelRow[],
  current: string | null,
  currentLabel?: string | null
): { entries: IPickerEntry[]; missing: number } {
  const entries: IPickerEntry[] = [{ value: '', label: 'Default model' }];
  let missing = 0;
  for (const m of rows) {
    if (!m.available) {
      missing += 1;
      continue;
    }
    if (m.chat === false) {
      continue;
    }
    const e: IPickerEntry = { value: m.name, label: modelLabel(m) };
    if (m.source && SOURCE_LABELS[m.source]) {
      e.source = m.source;
    }
    if (m.local_path) {
      e.path = m.local_path;
    }
    entries.push(e);
  }
  if (current && !entries.some(e => e.value === current)) {
    entries.push({ value: current, label: currentLabel || current });
  }
  return { entries, missing };
}

/** The one-line download command out of the server's hint (which may wrap it in backticks). */
export function commandFromHint(hint: string): string | null {
  const m = /`([^`]*(?:minicpm|pip|huggingface)[^`]*)`/i.exec(hint);
  return m ? m[1].trim() : null;
}

/** The hint as plain text: literal backticks dropped. */
export function plainHint(hint: string): string {
  return hint.replace(/`/g, '');
}
