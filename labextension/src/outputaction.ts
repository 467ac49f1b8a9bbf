/**
 * A context-menu command on one kind of notebook output (an image, a DataFrame table): the node
 * under the right-click, else the active cell, becomes context parts that the sidebar asks about.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { NotebookBridge } from './notebook';
import type { IContextPart } from './protocol';

/** How a one-click action asks: attach `parts`, then `prompt` up for review or sent; `none`
 * is the notice when there is nothing to attach. */
export type Ask = (parts: IContextPart[], prompt: string, none: string, cellIndex?: number) => Promise<void>;

export interface IOutputAction {
  id: string;
  label: string;
  caption: string;
  /** the output nodes it acts on, one selector each (lumino menu selectors take no commas) */
  selectors: string[];
  prompt: string;
  none: string;
  /** The parts for the node clicked (undefined: invoked another way) and its cell's index. */
  parts(hit: HTMLElement | undefined, index: number): IContextPart[] | Promise<IContextPart[]>;
}

export function addOutputAction(
  app: JupyterFrontEnd,
  notebooks: NotebookBridge,
  ask: Ask,
  cellIndexFromEvent: () => number,
  action: IOutputAction
): void {
  const selector = action.selectors.join(', ');
  app.commands.addCommand(action.id, {
    label: action.label,
    caption: action.caption,
    isEnabled: () => !!notebooks.panel,
    execute: async () => {
      const hit = app.contextMenuHitTest(n => n.matches(selector));
      const index = hit ? notebooks.indexOfNode(hit) : cellIndexFromEvent();
      return ask(await action.parts(hit, index), action.prompt, action.none);
    }
  });
  for (const sel of action.selectors) {
    app.contextMenu.addItem({ command: action.id, selector: `.jp-Notebook ${sel}`, rank: 0 });
  }
}
