/**
 * The context builder: notebook cells (nbformat JSON, as `cell.model.toJSON()` gives them)
 * → context parts for the chat (see minicpm.prompts on the server). Pure functions, no DOM and
 * no JupyterLab imports, so jest tests them directly.
 */
import type { IContextPart } from './protocol';

export interface IOutputLike {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

export interface ICellLike {
  cell_type: string;
  source: string | string[];
  outputs?: IOutputLike[];
  execution_count?: number | null;
}

/** Longest text kept from one output (characters). */
export const MAX_OUTPUT_CHARS = 4000;
/** Longest SVG sent as text. */
export const MAX_SVG_CHARS = 6000;
/** What one image costs, roughly (MiniCPM-V's resampler makes 64 queries per slice). */
export const IMAGE_TOKENS = 64;

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

export function joinText(t: string | string[] | undefined | unknown): string {
  if (t === undefined || t === null) {
    return '';
  }
  return Array.isArray(t) ? t.join('') : String(t);
}

/**
 * A rough token count at the project's one ratio, 3.5 characters a token (the kernel's
 * approx_tokens in kernel_ext/minicpm_magics/inspect_vars.py says why; change them together).
 */
export const CHARS_PER_TOKEN = 3.5;

export function estimateTokens(text: string): number {
  return text ? Math.ceil(text.length / CHARS_PER_TOKEN) : 0;
}

export function partTokens(part: IContextPart): number {
  if (part.kind === 'image') {
    return IMAGE_TOKENS;
  }
  return estimateTokens(part.text || '') + estimateTokens(part.label || '') + 4;
}

export function totalTokens(parts: IContextPart[]): number {
  return parts.reduce((n, p) => n + partTokens(p), 0);
}

/** `cell [3]` for an executed cell, else `cell #4` (position, 1-based). */
export function cellLabel(cell: ICellLike, index: number): string {
  if (
    cell.cell_type === 'code' &&
    typeof cell.execution_count === 'number'
  ) {
    return `cell [${cell.execution_count}]`;
  }
  return `cell #${index + 1}`;
}

function clip(text: string, max: number): [string, boolean] {
  if (text.length <= max) {
    return [text, false];
  }
  return [text.slice(0, max) + '\n…[truncated]', true];
}

export function cellPart(
  cell: ICellLike,
  index: number,
  language = 'python'
): IContextPart {
  return {
    kind: 'cell',
    label: cellLabel(cell, index),
    text: joinText(cell.source),
    language: cell.cell_type === 'code' ? language : 'markdown'
  };
}

/** The traceback of a cell's first error output, without colour codes; null if none. */
export function errorPart(cell: ICellLike, index: number): IContextPart | null {
  for (const out of cell.outputs || []) {
    if (out.output_type === 'error') {
      const tb = (out.traceback || []).map(stripAnsi).join('\n').trim();
      const head = `${out.ename || 'Error'}: ${out.evalue || ''}`.trim();
      const [text, truncated] = clip(tb || head, MAX_OUTPUT_CHARS);
      const part: IContextPart = {
        kind: 'error',
        label: cellLabel(cell, index),
        text
      };
      if (truncated) {
        part.truncated = true;
      }
      return part;
    }
  }
  return null;
}

export function hasError(cell: ICellLike): boolean {
  return (cell.outputs || []).some(o => o.output_type === 'error');
}

/** Image outputs: png/jpeg as image parts (base64), svg as text. */
export function imageParts(cell: ICellLike, index: number): IContextPart[] {
  const parts: IContextPart[] = [];
  let n = 0;
  for (const out of cell.outputs || []) {
    const data = out.data || {};
    const label = () => {
      n += 1;
      return `figure ${n} of ${cellLabel(cell, index)}`;
    };
    for (const mime of ['image/png', 'image/jpeg']) {
      if (typeof data[mime] === 'string' || Array.isArray(data[mime])) {
        parts.push({
          kind: 'image',
          label: label(),
          mime,
          data: joinText(data[mime]).replace(/\s+/g, ''),
          summary: summaryOf(data)
        });
        break;
      }
    }
    if (
      !data['image/png'] &&
      !data['image/jpeg'] &&
      data['image/svg+xml'] !== undefined
    ) {
      const [svg, truncated] = clip(joinText(data['image/svg+xml']), MAX_SVG_CHARS);
      const part: IContextPart = {
        kind: 'text',
        label: `${label()} (SVG source)`,
        text: svg
      };
      if (truncated) {
        part.truncated = true;
      }
      parts.push(part);
    }
  }
  return parts;
}

/** matplotlib's text/plain repr (`<Figure size 640x480 with 1 Axes>`) says a little. */
function summaryOf(data: Record<string, unknown>): string | undefined {
  const t = joinText(data['text/plain']).trim();
  return t && t.length < 200 ? t : undefined;
}

export function hasImage(cell: ICellLike): boolean {
  return (cell.outputs || []).some(o => {
    const d = o.data || {};
    return !!(d['image/png'] || d['image/jpeg'] || d['image/svg+xml']);
  });
}

/** Text outputs (streams, results) joined; errors become an error part. Images are left to
 * `imageParts`. */
export function outputParts(cell: ICellLike, index: number): IContextPart[] {
  const texts: string[] = [];
  for (const out of cell.outputs || []) {
    if (out.output_type === 'stream') {
      texts.push(stripAnsi(joinText(out.text)));
    } else if (
      out.output_type === 'execute_result' ||
      out.output_type === 'display_data'
    ) {
      const d = out.data || {};
      if (d['image/png'] || d['image/jpeg'] || d['image/svg+xml']) {
        continue;
      }
      if (d['text/plain'] !== undefined) {
        texts.push(stripAnsi(joinText(d['text/plain'])));
      } else if (d['text/markdown'] !== undefined) {
        texts.push(joinText(d['text/markdown']));
      }
    }
  }
  const parts: IContextPart[] = [];
  const joined = texts.join('\n').trim();
  if (joined) {
    const [text, truncated] = clip(joined, MAX_OUTPUT_CHARS);
    const part: IContextPart = {
      kind: 'output',
      label: cellLabel(cell, index),
      text
    };
    if (truncated) {
      part.truncated = true;
    }
    parts.push(part);
  }
  const err = errorPart(cell, index);
  if (err) {
    parts.push(err);
  }
  return parts;
}

export interface IContextOptions {
  language?: string;
  outputs?: boolean;
  images?: boolean;
}

/** Everything about some cells: sources, then outputs/errors, then images. */
export function partsForCells(
  cells: { cell: ICellLike; index: number }[],
  opts: IContextOptions = {}
): IContextPart[] {
  const parts: IContextPart[] = [];
  for (const { cell, index } of cells) {
    parts.push(cellPart(cell, index, opts.language));
    if (opts.outputs !== false) {
      parts.push(...outputParts(cell, index));
    }
    if (opts.images) {
      parts.push(...imageParts(cell, index));
    }
  }
  return parts;
}

/** Decode a `data:` URL (an <img src>) to a mime type and base64 data. */
export function parseDataUrl(
  url: string
): { mime: string; data: string } | null {
  const m = /^data:([^;,]+)(;base64)?,(.*)$/s.exec(url);
  if (!m) {
    return null;
  }
  const data = m[2] ? m[3] : btoaUtf8(decodeURIComponent(m[3]));
  return { mime: m[1], data };
}

function btoaUtf8(s: string): string {
  const g: any = globalThis as any;
  if (typeof g.Buffer !== 'undefined') {
    return g.Buffer.from(s, 'utf-8').toString('base64');
  }
  return g.btoa(unescape(encodeURIComponent(s)));
}

/** Prompts used by the notebook commands (same wording as minicpm.prompts). */
export const PROMPTS = {
  explainCell:
    'Explain what this code does, step by step, and point out anything surprising.',
  fixError:
    'This cell raised the error below. Say briefly what went wrong, then give the corrected code in one fenced code block.',
  explainImage:
    'Explain this figure: what it shows, the main pattern, and anything unusual.'
};
