/**
 * The chat's "Replace cell" action shows the same diff as an agent proposal before it changes
 * anything: a dialog with the diff, "Accept" and "Reject".
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';
import { el } from '../sidebar/dom';
import { renderDiff } from './diffview';

/** Ask before replacing `label`'s `before` with `after`; true on Accept. */
export async function confirmReplace(before: string, after: string, label: string, language: string): Promise<boolean> {
  if (before === after) {
    return true; // nothing to show
  }
  const { node, summary } = renderDiff(before, after, language);
  const body = new Widget({ node: el('div', { class: 'jp-MiniCPM-replaceDiff', 'data-testid': 'minicpm-replace-diff' }) });
  body.node.append(node);
  const result = await showDialog({
    title: `Replace ${label}? (${summary})`,
    body,
    buttons: [Dialog.cancelButton({ label: 'Reject' }), Dialog.okButton({ label: 'Accept' })]
  });
  return result.button.accept;
}
