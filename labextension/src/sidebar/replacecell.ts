/**
 * "Replace cell" from an answer's code block: the model's code replaces a notebook cell only
 * after the user has seen the diff and accepted it, and stays undoable (under the block and in
 * a notice), because the cell's old source exists nowhere else.
 */
import { Notification } from '@jupyterlab/apputils';
import { confirmReplace } from '../agent/replacediff';
import type { NotebookBridge } from '../notebook';
import type { IUndoable } from './markdown';

/** Replace cell `cellId` (else the active one) with `code` once its diff is accepted. */
export async function replaceWithUndo(
  notebooks: NotebookBridge,
  code: string,
  cellId: string | undefined
): Promise<IUndoable | void> {
  const target = notebooks.replaceSource(cellId);
  if (target && !(await confirmReplace(target.source, code, target.label, notebooks.language()))) {
    return;
  }
  const done = notebooks.replaceCell(code, cellId);
  let undone = false;
  const undo = () => {
    if (!undone) {
      undone = true;
      notebooks.restoreCell(done.cellId, done.previous);
    }
    Notification.dismiss(id);
  };
  const id = Notification.info(`Replaced ${done.label}.`, {
    autoClose: 8000,
    actions: [{ label: 'Undo', caption: 'Put the previous source back', callback: undo }]
  });
  return { label: done.label, undo };
}
