/**
 * Code blocks of an answer, read from its Markdown SOURCE. The code actions (Copy, Insert,
 * Replace, Insert & run) take their code from here, never from the rendered DOM: text the page
 * hides (a span with a class that hides it, raw HTML) must not reach a cell. Pure; jest tests it.
 */

export interface ICodeBlock {
  /** the info string's first word ("python"), '' when none */
  lang: string;
  code: string;
}

const FENCE = /^( *)(`{3,}|~{3,})(.*)$/;

/**
 * The fenced code blocks (``` or ~~~, CommonMark rules for the closing fence), in order,
 * nested ones (in lists, block quotes) included. An unclosed fence runs to the end, as Markdown
 * renders it while an answer is still streaming.
 */
export function fencedBlocks(markdown: string): ICodeBlock[] {
  const lines = markdown.split('\n');
  const out: ICodeBlock[] = [];
  let i = 0;
  while (i < lines.length) {
    // block quote markers and list indentation before a fence
    const bare = lines[i].replace(/^(\s*>)+/, '');
    const open = FENCE.exec(bare.replace(/^\s*(?:[-*+]|\d+[.)])\s+(?=[`~]{3})/, m => ' '.repeat(m.length)));
    if (!open || (open[2][0] === '`' && open[3].includes('`'))) {
      i += 1;
      continue;
    }
    const [, indent, fence, info] = open;
    const quoted = bare !== lines[i];
    const body: string[] = [];
    i += 1;
    while (i < lines.length) {
      const line = quoted ? lines[i].replace(/^(\s*>)+ ?/, '') : lines[i];
      const close = /^ *([`~]{3,})\s*$/.exec(line);
      if (close && close[1][0] === fence[0] && close[1].length >= fence.length) {
        break;
      }
      // content lines lose up to the opening fence's indentation
      body.push(line.replace(new RegExp(`^ {0,${indent.length}}`), ''));
      i += 1;
    }
    i += 1;
    out.push({ lang: info.trim().split(/\s+/)[0] || '', code: body.join('\n') });
  }
  return out;
}

function norm(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(/\n+$/, '');
}

/**
 * Pair rendered <pre> blocks (their text, in page order) with source blocks: each <pre> gets
 * the next unused source block with the same text, or null (no actions: what the page shows
 * is not a code block of the answer's source, e.g. raw HTML).
 */
export function matchBlocks(preTexts: string[], blocks: ICodeBlock[]): (ICodeBlock | null)[] {
  let next = 0;
  return preTexts.map(text => {
    const t = norm(text);
    for (let j = next; j < blocks.length; j++) {
      if (norm(blocks[j].code) === t) {
        next = j + 1;
        return blocks[j];
      }
    }
    return null;
  });
}
