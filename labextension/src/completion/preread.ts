/**
 * Pre-read for inline completion: when the cursor moves into a notebook's code cell, and rests
 * there ~1.5 s, the server reads the completion prompt at the cursor (the cells above, then this
 * cell up to the cursor) into the model's prompt cache in idle time (POST /minicpm/preread with
 * kind "completion"), so the first keystroke's suggestion does not wait for the cells above to
 * be read. On the server it is the lowest-priority job, any request stops it, and it has its own
 * key beside the sidebar's chat pre-read of the same notebook. The scheduler is the sidebar's
 * (debounce, no resend of the same body, silent once the server says pre-read is off).
 */
import { PrereadScheduler } from '../sidebar/preread';
import type { ICellSource } from './completerClient';

/** A `complete` frame's fields (the server checks them with the completion socket's rules). */
export interface ICompletionPrereadBody {
  kind: 'completion';
  path: string;
  prefix: string;
  suffix: string;
  cells: ICellSource[];
  mode: 'line';
  language: string;
}

/** The editor's state at the cursor, for the notebook at `path`. */
export interface ICursorState {
  path: string;
  prefix: string;
  suffix: string;
  /** the cells above, as a completion request sends them */
  cells: ICellSource[];
  language: string;
}

/** The body for the cursor, or null when there is nothing worth reading ahead (no cells above:
 * the prompt is then this cell alone, which the first request reads in a moment). */
export function completionPrereadBody(state: ICursorState | null): ICompletionPrereadBody | null {
  if (!state || !state.path || !state.cells.length) {
    return null;
  }
  // the prompt does not depend on the mode; the server wants a valid one
  return { kind: 'completion', mode: 'line', ...state };
}

export function completionPrereader(
  cursor: () => ICursorState | null,
  send: (body: ICompletionPrereadBody) => Promise<{ accepted?: boolean }>,
  delayMs?: number
): PrereadScheduler<ICompletionPrereadBody> {
  return new PrereadScheduler<ICompletionPrereadBody>({
    build: () => completionPrereadBody(cursor()),
    send,
    delayMs
  });
}
