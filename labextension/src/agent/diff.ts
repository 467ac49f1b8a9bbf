/**
 * Line diff of a cell's source, for the proposals the user accepts or rejects: an LCS over the
 * lines between the common prefix and suffix (cells are short), unchanged runs folded to a few
 * lines of context. Pure; jest tests it.
 */

export type DiffOp = ' ' | '-' | '+';

export interface IDiffLine {
  op: DiffOp;
  text: string;
}

export interface IDiff {
  lines: IDiffLine[];
  added: number;
  removed: number;
}

/** Beyond this many cells of the LCS table, the middle is shown as removed then added. */
const MAX_TABLE = 1_000_000;

function split(text: string): string[] {
  return text === '' ? [] : text.replace(/\r\n/g, '\n').split('\n');
}

/** Every line of `before` and `after`, marked kept, removed or added. */
export function diffLines(before: string, after: string): IDiff {
  const a = split(before);
  const b = split(after);
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) {
    pre++;
  }
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) {
    suf++;
  }
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const middle: IDiffLine[] = [];
  if (am.length * bm.length > MAX_TABLE) {
    am.forEach(text => middle.push({ op: '-', text }));
    bm.forEach(text => middle.push({ op: '+', text }));
  } else {
    // lcs[i][j]: LCS length of am[i:] and bm[j:]
    const w = bm.length + 1;
    const lcs = new Uint32Array((am.length + 1) * w);
    for (let i = am.length - 1; i >= 0; i--) {
      for (let j = bm.length - 1; j >= 0; j--) {
        lcs[i * w + j] =
          am[i] === bm[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < am.length || j < bm.length) {
      if (i < am.length && j < bm.length && am[i] === bm[j]) {
        middle.push({ op: ' ', text: am[i++] });
        j++;
      } else if (i < am.length && (j === bm.length || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
        middle.push({ op: '-', text: am[i++] });
      } else {
        middle.push({ op: '+', text: bm[j++] });
      }
    }
  }
  const lines: IDiffLine[] = [
    ...a.slice(0, pre).map(text => ({ op: ' ' as DiffOp, text })),
    ...middle,
    ...a.slice(a.length - suf).map(text => ({ op: ' ' as DiffOp, text }))
  ];
  return {
    lines,
    added: lines.filter(l => l.op === '+').length,
    removed: lines.filter(l => l.op === '-').length
  };
}

/** A folded run of unchanged lines: `skipped` lines not shown. */
export type FoldedLine = IDiffLine | { op: '…'; skipped: number };

/** Keep `context` unchanged lines around each change; longer unchanged runs become one marker. */
export function foldContext(lines: IDiffLine[], context = 3): FoldedLine[] {
  const near = lines.map(() => false);
  lines.forEach((l, i) => {
    if (l.op !== ' ') {
      for (let k = Math.max(0, i - context); k <= Math.min(lines.length - 1, i + context); k++) {
        near[k] = true;
      }
    }
  });
  const out: FoldedLine[] = [];
  let skipped = 0;
  lines.forEach((l, i) => {
    if (near[i]) {
      if (skipped) {
        out.push({ op: '…', skipped });
        skipped = 0;
      }
      out.push(l);
    } else {
      skipped++;
    }
  });
  if (skipped) {
    out.push({ op: '…', skipped });
  }
  return out;
}

/** "+3 −1" for a proposal's heading. */
export function diffSummary(d: IDiff): string {
  return `+${d.added} −${d.removed}`;
}
