/** "Explain this DataFrame": a context-menu command on pandas table outputs. It sends the
 * kernel's description of the frame (columns, dtypes, first rows; the rendered table shows only
 * a slice), else the cell's outputs. */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import type { NotebookBridge } from './notebook';
import { Ask, addOutputAction } from './outputaction';
import type { ChatPanel } from './panel';
import { DATAFRAME_PROMPT } from './sidebar/varcontext';

export const EXPLAIN_DATAFRAME = 'minicpm:explain-dataframe';

export function addExplainDataFrame(
  app: JupyterFrontEnd,
  panel: ChatPanel,
  notebooks: NotebookBridge,
  ask: Ask,
  activeIndex: () => number
): void {
  addOutputAction(app, notebooks, ask, activeIndex, {
    id: EXPLAIN_DATAFRAME,
    label: 'MiniCPM: Explain this DataFrame',
    caption: 'Send the DataFrame (columns, dtypes, first rows, from the kernel) to MiniCPM',
    selectors: ['table.dataframe'], // pandas renders DataFrames as <table class="dataframe">
    prompt: DATAFRAME_PROMPT,
    none: 'no DataFrame output in this cell',
    // the variable the cell shows, described by the kernel; else the cell's outputs
    parts: (_hit, index) => panel.variables.dataFrame(index)
  });
}
