/** "Explain image": a context-menu command on image outputs (PNG, JPEG, SVG), sent with the code
 * of the cell that drew them. */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { PROMPTS, parseDataUrl } from './context';
import type { NotebookBridge } from './notebook';
import { Ask, addOutputAction } from './outputaction';
import type { IContextPart } from './protocol';

export const EXPLAIN_IMAGE = 'minicpm:explain-image';

export function addExplainImage(
  app: JupyterFrontEnd,
  notebooks: NotebookBridge,
  ask: Ask,
  cellIndexFromEvent: () => number
): void {
  addOutputAction(app, notebooks, ask, cellIndexFromEvent, {
    id: EXPLAIN_IMAGE,
    label: 'MiniCPM: Explain image',
    caption: 'Send an image output to MiniCPM',
    selectors: ['.jp-RenderedImage', '.jp-RenderedSVG'],
    prompt: PROMPTS.explainImage,
    none: 'no image output in this cell',
    parts: (hit, index) => {
      let parts = hit ? imageFromNode(hit, notebooks) : [];
      if (!parts.length) {
        parts = notebooks.imageContext(index);
      }
      // the code that drew it, too
      return parts.length ? [...notebooks.codeContext(index), ...parts] : [];
    }
  });
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
