/**
 * The agent's tools (OpenAI function-calling format) and the validation of a model's calls.
 * Tool arguments come from the model: they are untrusted data, checked against the schema and
 * against the notebook (cell numbers in range) before anything happens. Pure; jest tests it.
 *
 * Few, small tools with short descriptions: a 1–2B model on a CPU pays for every schema token
 * in prefill. Cells are numbered from 1, as the prompt shows them ("cell #3").
 */
import spec from './tools.json';

export type CellType = 'code' | 'markdown';

/** What a validated call asks for; cells are resolved to ids at validation time. */
export type AgentCall =
  | { tool: 'read_cells'; first: number; last: number }
  | { tool: 'read_variable'; name: string }
  | { tool: 'edit_cell'; cell: number; cellId: string; source: string }
  | { tool: 'insert_cell'; position: number; afterId: string | null; type: CellType; source: string }
  | { tool: 'delete_cell'; cell: number; cellId: string }
  | { tool: 'run_cell'; cell: number; cellId: string };

export type Validated = { ok: true; call: AgentCall } | { ok: false; error: string };

export const MAX_SOURCE = 20000;

/**
 * The tools as the model sees them: tools.json is the one source, also read by
 * bench/agent.py (so the bench measures exactly what the sidebar sends). `minimum: 1` on
 * cell numbers: the local grammar then cannot produce 0 (small models count from 0).
 */
export const TOOLS = spec.tools;
export const SYSTEM: string = spec.system;

/**
 * The user turn that carries the notebook: the outline goes here, not in the system text, so
 * the system text and the tools after it are the same for every turn and notebook, and the
 * server's prompt cache keeps their prefill (one pass, no placeholder read twice).
 */
export function requestText(outline: string, request: string): string {
  return spec.request.replace(/\{(outline|request)\}/g, (_: string, k: string) => (k === 'outline' ? outline : request));
}

export const TOOL_NAMES = TOOLS.map(t => t.function.name);

/** The notebook as validation sees it: cell ids and types, in order. */
export interface ICellRef {
  id: string;
  type: string;
}

type Schema = { properties: Record<string, any>; required: string[] };

/** Check `args` against one of our (flat) parameter schemas; an error message or null. */
export function checkArgs(schema: Schema, args: unknown): string | null {
  if (!args || typeof args !== 'object' || Array.isArray(args)) {
    return 'arguments must be a JSON object';
  }
  const obj = args as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!(k in schema.properties)) {
      return `unknown argument "${k.slice(0, 40)}"`;
    }
  }
  for (const k of schema.required) {
    if (!(k in obj)) {
      return `missing argument "${k}"`;
    }
  }
  for (const [k, v] of Object.entries(obj)) {
    const p = schema.properties[k];
    if (p.type === 'integer') {
      if (typeof v !== 'number' || !Number.isInteger(v)) {
        return `"${k}" must be an integer`;
      }
      if (typeof p.minimum === 'number' && v < p.minimum) {
        return `"${k}" must be at least ${p.minimum} (cells are numbered from 1)`;
      }
    } else if (p.type === 'string') {
      if (typeof v !== 'string') {
        return `"${k}" must be a string`;
      }
      if (p.enum && !p.enum.includes(v)) {
        return `"${k}" must be one of ${p.enum.join(', ')}`;
      }
      const max = typeof p.maxLength === 'number' ? p.maxLength : MAX_SOURCE;
      if (v.length > max) {
        return `"${k}" is longer than ${max} characters`;
      }
    }
  }
  return null;
}

/** Parse arguments as the OpenAI wire carries them (a JSON string; an object is accepted too). */
export function parseArguments(raw: unknown): { ok: true; value: unknown } | { ok: false; error: string } {
  if (typeof raw !== 'string') {
    return raw && typeof raw === 'object' ? { ok: true, value: raw } : { ok: false, error: 'arguments missing' };
  }
  try {
    return { ok: true, value: JSON.parse(raw.trim() || '{}') };
  } catch {
    return { ok: false, error: 'arguments are not valid JSON' };
  }
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/**
 * Validate one call of the model against the tools and the notebook `cells`; on success the
 * cell numbers are resolved to ids (later edits in the same batch do not shift the target).
 */
export function validateCall(name: unknown, rawArgs: unknown, cells: ICellRef[]): Validated {
  const tool = TOOLS.find(t => t.function.name === name);
  if (!tool) {
    return { ok: false, error: `unknown tool "${String(name).slice(0, 40)}"; use one of ${TOOL_NAMES.join(', ')}` };
  }
  const parsed = parseArguments(rawArgs);
  if (!parsed.ok) {
    return parsed;
  }
  const err = checkArgs(tool.function.parameters as Schema, parsed.value);
  if (err) {
    return { ok: false, error: err };
  }
  const a = parsed.value as Record<string, any>;
  const n = cells.length;
  const cellAt = (k: number): Validated | string =>
    k > n ? { ok: false, error: n ? `cell ${k} does not exist: cells are 1 to ${n}` : 'the notebook has no cells' } : cells[k - 1].id;
  switch (name) {
    case 'read_cells': {
      const first = a.first as number;
      const last = Math.min(a.last as number, n);
      if (first > n || first > last) {
        return { ok: false, error: `no cells ${first} to ${a.last}: cells are 1 to ${n}` };
      }
      return { ok: true, call: { tool: 'read_cells', first, last } };
    }
    case 'read_variable':
      if (!IDENT.test(a.name)) {
        return { ok: false, error: '"name" must be a Python variable name' };
      }
      return { ok: true, call: { tool: 'read_variable', name: a.name } };
    case 'insert_cell': {
      const position = a.position as number;
      if (position > n + 1) {
        return { ok: false, error: `position ${position} is past the end: use 1 to ${n + 1}` };
      }
      const afterId = position === 1 ? null : cells[position - 2].id;
      return { ok: true, call: { tool: 'insert_cell', position, afterId, type: a.type, source: a.source } };
    }
    default: {
      const cell = a.cell as number;
      const id = cellAt(cell);
      if (typeof id !== 'string') {
        return id;
      }
      if (name === 'edit_cell') {
        return { ok: true, call: { tool: 'edit_cell', cell, cellId: id, source: a.source } };
      }
      if (name === 'delete_cell') {
        return { ok: true, call: { tool: 'delete_cell', cell, cellId: id } };
      }
      if (cells[cell - 1].type !== 'code') {
        return { ok: false, error: `cell ${cell} is ${cells[cell - 1].type}, not code` };
      }
      return { ok: true, call: { tool: 'run_cell', cell, cellId: id } };
    }
  }
}

/** Does this call change the notebook (and so need the user's Accept)? */
export function isProposal(call: AgentCall): boolean {
  return call.tool === 'edit_cell' || call.tool === 'insert_cell' || call.tool === 'delete_cell';
}
