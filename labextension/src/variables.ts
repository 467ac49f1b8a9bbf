/**
 * Variables as context, the browser's half (pure functions, no JupyterLab imports):
 * - def-use over a notebook: for a cell, the earlier cells that define what it reads (latest
 *   definition first), for "Explain cell" / "Fix error"; the names each cell reads and
 *   defines come from the scanner in pyscan.ts,
 * - `@name` mentions in the chat input, and completing them from the kernel's variables,
 * - chips and the context part the server receives.
 *
 * The kernel half (descriptions, the `minicpm.variables` comm) is
 * kernel_ext/minicpm_magics/kernel_api.py; its answers have the shapes below.
 */
import type { IContextPart } from './protocol';
import { BUILTINS, ICellNames, cellNames } from './pyscan';

/** One row of the kernel's `{"request": "list"}` answer. */
export interface IKernelVariable {
  name: string;
  type: string;
  summary: string;
}

/** One entry of the kernel's `{"request": "describe"}` answer. */
export interface IVariableDescription {
  name: string;
  text: string;
  tokens: number;
}

export const AUTO_VARIABLE_TOKENS = 256;
export const MENTION_TOKENS = 512;
export const VARIABLES_LABEL = 'variables in the kernel';

/** Cache of cellNames by source: a 200-cell notebook is scanned once, then on edits only. */
export class NamesCache {
  private _cache = new Map<string, ICellNames>();

  names(source: string): ICellNames {
    let hit = this._cache.get(source);
    if (!hit) {
      hit = cellNames(source);
      if (this._cache.size > 2000) {
        this._cache.clear();
      }
      this._cache.set(source, hit);
    }
    return hit;
  }
}

export interface IDefinition {
  name: string;
  /** index of the defining cell in the list given */
  cell: number;
}

/**
 * For the cell at `index`: each name it reads with the latest earlier cell defining it
 * (latest first; ties in the order the cell reads them), and the names no earlier cell defines
 * (maybe kernel variables from elsewhere: ask the kernel). Markdown cells: pass ''.
 */
export function definitionsFor(
  sources: string[],
  index: number,
  cache: NamesCache = new NamesCache()
): { defined: IDefinition[]; undefinedNames: string[] } {
  const { uses } = cache.names(sources[index] ?? '');
  const wanted = new Set(uses);
  const found = new Map<string, number>();
  for (let j = index - 1; j >= 0 && found.size < wanted.size; j--) {
    for (const name of cache.names(sources[j]).defs) {
      if (wanted.has(name) && !found.has(name)) {
        found.set(name, j);
      }
    }
  }
  const order = new Map(uses.map((n, i) => [n, i]));
  const defined = [...found.entries()]
    .map(([name, cell]) => ({ name, cell }))
    .sort((a, b) => b.cell - a.cell || order.get(a.name)! - order.get(b.name)!);
  return { defined, undefinedNames: uses.filter(n => !found.has(n) && !BUILTINS.has(n)) };
}

// --- mentions -------------------------------------------------------------------------------------
const MENTION = /(^|[^\w@.])@([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)/g;

/** `@df` and `@model.config` in a question, in order, once each (e-mail addresses are not). */
export function parseMentions(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(MENTION)) {
    if (!out.includes(m[2])) {
      out.push(m[2]);
    }
  }
  return out;
}

/** The `@prefix` being typed at `cursor`, for completion; null when the cursor is not in one. */
export function mentionAt(text: string, cursor: number): { start: number; prefix: string } | null {
  const m = /(^|[^\w@.])@([A-Za-z_][\w.]*)?$/.exec(text.slice(0, cursor));
  if (!m) {
    return null;
  }
  const prefix = m[2] ?? '';
  return { start: cursor - prefix.length - 1, prefix };
}

/** Kernel variables matching a typed prefix: prefix matches first, then substring ones. */
export function completeMention(prefix: string, variables: IKernelVariable[]): IKernelVariable[] {
  const p = prefix.toLowerCase();
  const starts = variables.filter(v => v.name.toLowerCase().startsWith(p));
  const contains = variables.filter(
    v => !v.name.toLowerCase().startsWith(p) && v.name.toLowerCase().includes(p)
  );
  const byName = (a: IKernelVariable, b: IKernelVariable) => a.name.localeCompare(b.name);
  return [...starts.sort(byName), ...contains.sort(byName)];
}

/** Replace the `@prefix` at `cursor` with `@name ` (returns the new text and cursor). */
export function insertMention(
  text: string,
  cursor: number,
  name: string
): { text: string; cursor: number } {
  const at = mentionAt(text, cursor);
  const start = at ? at.start : cursor;
  const inserted = `@${name} `;
  return {
    text: text.slice(0, start) + inserted + text.slice(cursor),
    cursor: start + inserted.length
  };
}

// --- chips and the context part ---------------------------------------------------------------------
export function formatTokens(n: number): string {
  return n < 1000 ? `${n}` : `${(n / 1000).toFixed(n < 10000 ? 1 : 0)}k`;
}

/** A chip's text: `df · 120 tokens`. */
export function chipLabel(d: IVariableDescription): string {
  return `${d.name} · ${formatTokens(d.tokens)} tokens`;
}

/**
 * Mentioned variables first (each already ≤ MENTION_TOKENS by the kernel), then automatic
 * ones while they fit `autoBudget`; all within `totalBudget`. Returns what is kept and the
 * names left out.
 */
export function fitVariables(
  mentioned: IVariableDescription[],
  automatic: IVariableDescription[],
  totalBudget: number,
  autoBudget: number = AUTO_VARIABLE_TOKENS
): { kept: IVariableDescription[]; dropped: string[] } {
  const kept: IVariableDescription[] = [];
  const dropped: string[] = [];
  let used = 0;
  let autoUsed = 0;
  for (const d of mentioned) {
    if (used + d.tokens <= totalBudget) {
      kept.push(d);
      used += d.tokens;
    } else {
      dropped.push(d.name);
    }
  }
  for (const d of automatic) {
    if (kept.some(k => k.name === d.name)) {
      continue;
    }
    if (used + d.tokens <= totalBudget && autoUsed + d.tokens <= autoBudget) {
      kept.push(d);
      used += d.tokens;
      autoUsed += d.tokens;
    } else {
      dropped.push(d.name);
    }
  }
  return { kept, dropped };
}

/** The one context part the server receives (the kernel's magics send the same shape). */
export function variablesPart(descriptions: IVariableDescription[]): IContextPart | null {
  if (!descriptions.length) {
    return null;
  }
  return {
    kind: 'text',
    label: VARIABLES_LABEL,
    text: descriptions.map(d => d.text).join('\n')
  };
}
