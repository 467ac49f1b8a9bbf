/**
 * Completion on a fresh line: after Enter (and the editor's auto-indent) the cursor sits on a
 * line with nothing but indentation. After a block opener (`def f(x):`, `for ...:`) that is
 * where a suggestion helps most, and it should be the block's body, several lines long. And a
 * suggestion that was asked for at the end of the line above, and starts with that newline,
 * stays useful when the user types the newline: it is kept, minus what was typed.
 * No JupyterLab imports: jest drives this directly.
 */
import type { CompletionMode, InlineStream } from './completerClient';

/** The line the cursor is on, up to the cursor. */
function cursorLine(prefix: string): string {
  return prefix.slice(prefix.lastIndexOf('\n') + 1);
}

/** Is the cursor on a fresh line: only indentation around it, with a line above? */
export function isFreshLine(prefix: string, suffix: string): boolean {
  const rest = suffix.split('\n', 1)[0];
  return prefix.includes('\n') && !cursorLine(prefix).trim() && !rest.trim();
}

/** Does the last non-blank line above the cursor open a Python block (a `:` that ends the
 * code part, outside strings and comments)? */
export function afterBlockOpener(prefix: string): boolean {
  const lines = prefix.slice(0, prefix.lastIndexOf('\n')).split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const code = codePart(lines[i]).trimEnd();
    if (code.trim()) {
      return code.endsWith(':');
    }
  }
  return false;
}

/** A line without its comment (a `#` outside quotes). */
function codePart(line: string): string {
  let quote = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === '\\') {
        i++;
      } else if (c === quote) {
        quote = '';
      }
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#') {
      return line.slice(0, i);
    }
  }
  return line;
}

const LENGTH: Record<CompletionMode, number> = { line: 0, statement: 1, block: 2 };

/** The mode of an automatic request: on a fresh line after a block opener, at least
 * `openerMode` (a body is several lines); elsewhere the user's setting. */
export function modeFor(
  prefix: string,
  suffix: string,
  mode: CompletionMode,
  openerMode: CompletionMode
): CompletionMode {
  if (isFreshLine(prefix, suffix) && afterBlockOpener(prefix)) {
    return LENGTH[openerMode] > LENGTH[mode] ? openerMode : mode;
  }
  return mode;
}

/** What the user typed since an earlier request, when that is all that changed (text added
 * at its cursor, the rest of the cell the same); null otherwise. */
export function typedSince(
  before: { prefix: string; suffix: string },
  now: { prefix: string; suffix: string }
): string | null {
  if (now.suffix !== before.suffix || !now.prefix.startsWith(before.prefix)) {
    return null;
  }
  return now.prefix.slice(before.prefix.length);
}

/** Does a suggestion survive `typed`? Only a newline (with its auto-indent) is typed through:
 * other keystrokes stop the request in flight, as before. The suggestion must already hold
 * the typed text; its indentation may go deeper than the auto-indent. */
export function follows(suggestion: string, typed: string): boolean {
  return typed.includes('\n') && !typed.trim() && suggestion.startsWith(typed);
}

/** A stream that shows `source`'s suggestion minus the `typed` text at its start; it ends
 * empty if the rest of the suggestion stops agreeing (it cannot, once it held `typed`). */
export function followStream(
  source: InlineStream,
  typed: string,
  make: (id: string) => InlineStream
): InlineStream {
  const out = make(`${source.id}+${typed.length}`);
  const forward = (u: { text: string; done: boolean; error?: string }) => {
    const text = u.text.startsWith(typed) ? u.text.slice(typed.length) : '';
    out.push({ ...u, text });
  };
  forward({ text: source.text, done: source.done });
  source.listen(forward);
  return out;
}
