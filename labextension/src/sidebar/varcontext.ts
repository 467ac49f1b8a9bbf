/**
 * Variables as chips, so the model sees values the code only names: mentioned `@names`, and the automatic context of "Explain
 * cell" / "Fix error" (the variables the cell reads and the cells that define them, def-use
 * from ../variables, latest definition first). Budgets: automatic variables ≤ 256 tokens, one
 * mentioned variable ≤ 512, everything ≤ half the model's window. No DOM, no JupyterLab: the
 * kernel is a `describe` callback, so jest tests it directly.
 */
import { ICellLike, cellPart, joinText, partTokens, totalTokens } from '../context';
import type { IContextPart, IStatus } from '../protocol';
import {
  AUTO_VARIABLE_TOKENS,
  IVariableDescription,
  NamesCache,
  definitionsFor,
  fitVariables
} from '../variables';

export type Describe = (
  names: string[],
  eachTokens: number,
  totalTokens: number
) => Promise<{ descriptions: IVariableDescription[] }>;

export const DATAFRAME_PROMPT = 'Explain this DataFrame: what its columns hold and what stands out.';

/** The window budgets use when the server does not say (MiniCPM-2B's training length). */
export const DEFAULT_WINDOW = 4096;

/** All context together stays within half the model's window (the answer needs the rest). */
export function contextLimit(status: IStatus | null): number {
  return Math.floor((status?.model?.context_length || DEFAULT_WINDOW) / 2);
}

/** A mentioned variable's chip is `@df`; an automatic one is `variable df`. */
export function variableChip(d: IVariableDescription, mentioned: boolean): IContextPart {
  return { kind: 'text', label: mentioned ? `@${d.name}` : `variable ${d.name}`, text: d.text };
}

/** The name of a mention chip (`@df` → df), else null. */
export function mentionOf(p: IContextPart): string | null {
  return p.kind === 'text' && p.label.startsWith('@') ? p.label.slice(1) : null;
}

const sharedCache = new NamesCache();

/**
 * For the cell at `index` of `cells`: chips for the variables it reads (within
 * min(autoBudget, room)) and for the cells defining them (latest first, while they fit in
 * `room`, skipping cells already in `have`).
 */
export async function automaticParts(
  cells: ICellLike[],
  index: number,
  describe: Describe,
  room: number,
  have: IContextPart[] = [],
  autoBudget = AUTO_VARIABLE_TOKENS,
  language = 'python',
  cache: NamesCache = sharedCache
): Promise<IContextPart[]> {
  const sources = cells.map(c => (c.cell_type === 'code' ? joinText(c.source) : ''));
  const { defined, undefinedNames } = definitionsFor(sources, index, cache);
  const names = [...defined.map(d => d.name), ...undefinedNames];
  const out: IContextPart[] = [];
  let left = room;
  const varBudget = Math.min(autoBudget, left);
  if (names.length && varBudget > 0) {
    const { descriptions } = await describe(names, varBudget, varBudget);
    const { kept } = fitVariables([], descriptions, left, varBudget);
    for (const d of kept) {
      const chip = variableChip(d, false);
      if (!have.some(p => p.text === chip.text)) {
        out.push(chip);
        left -= partTokens(chip);
      }
    }
  }
  const seen = new Set<number>();
  for (const d of defined) {
    if (seen.has(d.cell) || d.cell === index) {
      continue;
    }
    seen.add(d.cell);
    const part = cellPart(cells[d.cell], d.cell, language);
    part.label = `${part.label} defines ${d.name}`;
    const tokens = partTokens(part);
    if (tokens > left || have.some(p => p.kind === 'cell' && p.text === part.text)) {
      continue;
    }
    out.push(part);
    left -= tokens;
  }
  return out;
}

/** Room left for new context: half the window minus what is attached. */
export function roomLeft(status: IStatus | null, attached: IContextPart[]): number {
  return Math.max(0, contextLimit(status) - totalTokens(attached));
}

/**
 * The DataFrame a cell shows: its last line, when that is `df`, `df.head(…)`,
 * `display(df)` and the like; null otherwise.
 */
export function shownName(source: string): string | null {
  const lines = source.split('\n').map(l => l.replace(/#.*$/, '').trim()).filter(Boolean);
  const last = lines[lines.length - 1] ?? '';
  const m =
    /^(?:display\()?([A-Za-z_]\w*)(?:\.(?:head|tail|sample|describe|iloc\[[^\]]*\]|loc\[[^\]]*\])(?:\([^)]*\))?)?\)?;?$/.exec(
      last
    );
  return m ? m[1] : null;
}
