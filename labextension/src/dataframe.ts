/** "Explain this DataFrame": a context-menu command on pandas table outputs. It sends the
 * kernel's description of the frame (columns, dtypes, first rows; the rendered table shows only
 * a slice), else the cell's outputs. */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { NotebookBridge } from './notebook';
import type { ChatPanel } from './panel';
import type { IContextPart } from './protocol';
import { DATAFRAME_PROMPT } from './sidebar/varcontext';

export const EXPLAIN_DATAFRAME = 'minicpm:explain-dataframe';

export function addExplainDataFrame(
  app: JupyterFrontEnd,
  panel: ChatPanel,
  notebooks: NotebookBridge,
  ask: (parts: IContextPart[], prompt: string, what: string) => Promise<void>,
  activeIndex: () => number
): void {
  app.commands.addCommand(EXPLAIN_DATAFRAME, {
    label: 'MiniCPM: Explain this DataFrame',
    caption: 'Send the DataFrame (columns, dtypes, first rows, from the kernel) to MiniCPM',
    isEnabled: () => !!notebooks.panel,
    execute: async () => {
      const hit = app.contextMenuHitTest(n => n.matches('table.dataframe'));
      // the variable the cell shows, described by the kernel; else the cell's outputs
      const parts = await panel.variables.dataFrame(hit ? notebooks.indexOfNode(hit) : activeIndex());
      return ask(parts, DATAFRAME_PROMPT, 'no DataFrame output in this cell');
    }
  });
  // pandas renders DataFrames as <table class="dataframe">
  app.contextMenu.addItem({ command: EXPLAIN_DATAFRAME, selector: '.jp-Notebook table.dataframe', rank: 0 });
}
