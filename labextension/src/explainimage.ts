/** "Explain image": a context-menu command on image outputs (PNG, JPEG, SVG) and the cell that drew them. */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { PROMPTS, parseDataUrl } from './context';
import type { NotebookBridge } from './notebook';
import type { IContextPart } from './protocol';

export const EXPLAIN_IMAGE = 'minicpm:explain-image';

const IMAGE_SELECTOR = '.jp-RenderedImage, .jp-RenderedSVG';

export function addExplainImage(
  app: JupyterFrontEnd,
  notebooks: NotebookBridge,
  ask: (parts: IContextPart[], prompt: string, what: string) => Promise<void>,
  cellIndexFromEvent: () => number
): void {
  app.commands.addCommand(EXPLAIN_IMAGE, {
    label: 'MiniCPM: Explain image',
    caption: 'Send an image output to MiniCPM',
    isEnabled: () => !!notebooks.panel,
    execute: () => {
      const hit = app.contextMenuHitTest(n => n.matches(IMAGE_SELECTOR));
      let parts: IContextPart[] = [];
      if (hit) {
        parts = imageFromNode(hit, notebooks);
      }
      const index = hit ? notebooks.indexOfNode(hit) : cellIndexFromEvent();
      if (!parts.length) {
        parts = notebooks.imageContext(index);
      }
      if (parts.length) {
        parts = [...notebooks.codeContext(index), ...parts]; // the code that drew it, too
      }
      return ask(parts, PROMPTS.explainImage, 'no image output in this cell');
    }
  });
  // lumino context-menu selectors take no commas: one item per image renderer
  for (const sel of IMAGE_SELECTOR.split(', ')) {
    app.contextMenu.addItem({ command: EXPLAIN_IMAGE, selector: `.jp-Notebook ${sel}`, rank: 0 });
  }
}

/** The image under a context-menu click → an image part (svg as text). */
function imageFromNode(node: HTMLElement, notebooks: NotebookBridge): IContextPart[] {
  const index = notebooks.indexOfNode(node);
  const cellLabel = index >= 0 ? `cell #${index + 1}` : 'output';
  const img = node.querySelector('img');
  if (img && img.src) {
    const parsed = parseDataUrl(img.src);
    if (parsed) {
      if (parsed.mime === 'image/svg+xml') {
        const svg = atob(parsed.data);
        return [{ kind: 'text', label: `figure of ${cellLabel} (SVG source)`, text: svg.slice(0, 6000) }];
      }
      // use the cell's numbering when we can (cell [n])
      const fromCell = index >= 0 ? notebooks.imageContext(index).find(p => p.data === parsed.data) : undefined;
      return [fromCell || { kind: 'image', label: `figure of ${cellLabel}`, mime: parsed.mime, data: parsed.data }];
    }
  }
  const svg = node.querySelector('svg');
  if (svg) {
    return [{ kind: 'text', label: `figure of ${cellLabel} (SVG source)`, text: svg.outerHTML.slice(0, 6000) }];
  }
  return [];
}
