/** The "Fix error with MiniCPM" button under each error output of a notebook. */
import type { CodeCell } from '@jupyterlab/cells';
import type { NotebookPanel } from '@jupyterlab/notebook';
import { bugIcon } from '@jupyterlab/ui-components';

/** Add a "Fix error" button under each error output of a notebook, as outputs change. */
export function addFixButtons(nb: NotebookPanel, fix: (cellIndex: number) => void): void {
  let scheduled = 0;
  const scan = () => {
    scheduled = 0;
    nb.content.widgets.forEach((cell, index) => {
      // no instanceof: compare by model type (robust to duplicated modules)
      if (cell.model.type !== 'code') {
        return;
      }
      const codeCell = cell as CodeCell;
      const outputs = codeCell.model.outputs;
      const children = codeCell.outputArea.node.querySelectorAll(':scope > .jp-OutputArea-child');
      children.forEach((child, i) => {
        const isError = i < outputs.length && outputs.get(i).type === 'error';
        const existing = child.querySelector('.jp-MiniCPM-fixButton');
        if (isError && !existing) {
          const b = document.createElement('button');
          b.className = 'jp-MiniCPM-fixButton jp-Button jp-mod-styled jp-mod-small';
          b.type = 'button';
          b.append(bugIcon.element({ tag: 'span', className: 'jp-MiniCPM-icon' }), 'Fix error with MiniCPM');
          b.setAttribute('aria-label', 'Fix this error with MiniCPM');
          b.dataset.testid = 'minicpm-fix-error';
          b.onclick = ev => {
            ev.preventDefault();
            ev.stopPropagation();
            const idx = nb.content.widgets.indexOf(cell);
            nb.content.activeCellIndex = idx;
            fix(idx);
          };
          // inside the error output, below the traceback (never over its header line)
          const host = child.querySelector('.jp-OutputArea-output') || child;
          host.classList.add('jp-MiniCPM-hasFix');
          host.append(b);
        } else if (!isError && existing) {
          existing.remove();
        }
      });
      void index;
    });
  };
  const observer = new MutationObserver(() => {
    if (!scheduled) {
      scheduled = window.setTimeout(scan, 250);
    }
  });
  observer.observe(nb.content.node, { childList: true, subtree: true });
  nb.disposed.connect(() => observer.disconnect());
}
