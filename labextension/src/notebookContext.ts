/**
 * The whole notebook as one context part, within a token budget: cells nearest the active cell
 * are kept, gaps are marked. Pure (nbformat JSON in, a part out); jest tests it.
 */
import type { IContextPart } from './protocol';
import { ICellLike, cellLabel, estimateTokens, hasError, joinText } from './context';

export interface INotebookContext {
  part: IContextPart;
  tokens: number;
  budget: number;
  truncated: boolean;
  included: number;
  omitted: number;
}

function cellBlock(cell: ICellLike, index: number): string {
  const src = joinText(cell.source).trimEnd();
  if (cell.cell_type === 'markdown') {
    return `# %% [markdown] ${cellLabel(cell, index)}\n` +
      src.split('\n').map(l => `# ${l}`).join('\n');
  }
  if (cell.cell_type !== 'code') {
    return `# %% [${cell.cell_type}] ${cellLabel(cell, index)}\n${src}`;
  }
  let block = `# %% ${cellLabel(cell, index)}\n${src}`;
  if (hasError(cell)) {
    const e = (cell.outputs || []).find(o => o.output_type === 'error');
    block += `\n# -> ${e?.ename}: ${e?.evalue}`;
  }
  return block;
}

/**
 * The whole notebook as one part, within `budget` tokens. When it does not fit, the cells
 * nearest the active cell are kept, the gaps are marked, and the part says it was truncated.
 */
export function notebookPart(
  cells: ICellLike[],
  budget: number,
  activeIndex = 0,
  language = 'python',
  title = 'notebook'
): INotebookContext {
  const blocks = cells.map((c, i) => cellBlock(c, i));
  const cost = blocks.map(b => estimateTokens(b) + 1);
  const keep = new Array<boolean>(cells.length).fill(false);
  let used = 0;
  // visit cells by distance from the active cell, earlier first on ties
  const order = cells
    .map((_, i) => i)
    .sort(
      (a, b) =>
        Math.abs(a - activeIndex) - Math.abs(b - activeIndex) || a - b
    );
  let full = true;
  for (const i of order) {
    if (used + cost[i] <= budget) {
      keep[i] = true;
      used += cost[i];
    } else {
      full = false;
    }
  }
  const out: string[] = [];
  let gap = 0;
  let included = 0;
  const flush = () => {
    if (gap) {
      out.push(`# … ${gap} cell${gap > 1 ? 's' : ''} omitted to fit the token budget`);
      gap = 0;
    }
  };
  keep.forEach((k, i) => {
    if (k) {
      flush();
      out.push(blocks[i]);
      included += 1;
    } else {
      gap += 1;
    }
  });
  flush();
  const truncated = !full;
  let text = out.join('\n\n');
  if (truncated) {
    text += `\n\n# (truncated: ${included} of ${cells.length} cells fit in ${budget} tokens)`;
  }
  const part: IContextPart = {
    kind: 'notebook',
    label: title,
    text,
    language
  };
  if (truncated) {
    part.truncated = true;
  }
  return {
    part,
    tokens: estimateTokens(text),
    budget,
    truncated,
    included,
    omitted: cells.length - included
  };
}
