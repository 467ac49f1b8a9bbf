/**
 * A proposal's diff as DOM: one row per line (kept, removed, added) with a +/− gutter, long
 * unchanged runs folded, lines wrapped to the sidebar's width, and cheap syntax colouring by
 * classes (keywords, strings, comments, numbers: one regex pass per line, no HTML from the
 * source: every piece is a text node).
 */
import { el } from '../sidebar/dom';
import { diffLines, diffSummary, foldContext } from './diff';

const PY_KEYWORDS = new Set(
  ('False None True and as assert async await break class continue def del elif else except finally for ' +
    'from global if import in is lambda nonlocal not or pass raise return try while with yield').split(' ')
);

const TOKEN = /(#.*$)|("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_]\w*)/g;

/** A source line as spans with token classes (Python; Markdown stays plain). */
export function highlightLine(text: string, language: string): HTMLElement {
  const line = el('span', { class: 'jp-MiniCPM-diffText' });
  if (language !== 'python') {
    line.textContent = text;
    return line;
  }
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    const [word, comment, str, num, name] = m;
    const kind = comment ? 'comment' : str ? 'string' : num ? 'number' : name && PY_KEYWORDS.has(name) ? 'keyword' : '';
    if (!kind) {
      continue;
    }
    const at = m.index ?? 0;
    if (at > last) {
      line.append(document.createTextNode(text.slice(last, at)));
    }
    line.append(el('span', { class: `jp-MiniCPM-tok-${kind}` }, word));
    last = at + word.length;
  }
  if (last < text.length) {
    line.append(document.createTextNode(text.slice(last)));
  }
  return line;
}

/** The diff of `before` → `after` as a table-like block, with its "+a −r" summary. */
export function renderDiff(before: string, after: string, language: string): { node: HTMLElement; summary: string } {
  const diff = diffLines(before, after);
  const node = el('div', { class: 'jp-MiniCPM-diff', 'data-testid': 'minicpm-diff', role: 'group', 'aria-label': 'Proposed change' });
  for (const l of foldContext(diff.lines)) {
    if (l.op === '…') {
      node.append(el('div', { class: 'jp-MiniCPM-diffFold' }, `… ${l.skipped} unchanged line${l.skipped === 1 ? '' : 's'}`));
      continue;
    }
    const kind = l.op === '+' ? 'add' : l.op === '-' ? 'del' : 'same';
    const row = el('div', { class: `jp-MiniCPM-diffLine jp-mod-${kind}`, 'data-op': l.op });
    row.append(el('span', { class: 'jp-MiniCPM-diffGutter', 'aria-hidden': 'true' }, l.op === ' ' ? ' ' : l.op === '-' ? '−' : '+'));
    if (l.op !== ' ') {
      // screen readers hear what the colour shows
      row.append(el('span', { class: 'jp-MiniCPM-srOnly' }, l.op === '+' ? 'added: ' : 'removed: '));
    }
    row.append(highlightLine(l.text, language));
    node.append(row);
  }
  if (!diff.lines.length) {
    node.append(el('div', { class: 'jp-MiniCPM-diffFold' }, '(empty cell)'));
  }
  return { node, summary: diffSummary(diff) };
}
