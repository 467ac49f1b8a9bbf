/** Small DOM helpers shared by the sidebar's parts. */
import type { LabIcon } from '@jupyterlab/ui-components';

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      e.className = v;
    } else {
      e.setAttribute(k, v);
    }
  }
  if (text !== undefined) {
    e.textContent = text;
  }
  return e;
}

export interface IButtonOptions {
  /** accessible name and tooltip */
  label: string;
  testid: string;
  onclick: () => void | Promise<void>;
  /** a LabIcon (an inline SVG: no font needed) */
  icon?: LabIcon;
  /** visible text; icon-only when absent */
  text?: string;
  className?: string;
}

/** A JupyterLab-styled button; errors from `onclick` are logged, never thrown into lumino. */
export function button(o: IButtonOptions): HTMLButtonElement {
  const b = el('button', {
    class: `jp-MiniCPM-button jp-Button jp-mod-styled ${o.className || ''}`.trim(),
    type: 'button',
    'aria-label': o.label,
    title: o.label,
    'data-testid': o.testid
  });
  if (o.icon) {
    b.append(o.icon.element({ tag: 'span', className: 'jp-MiniCPM-icon', elementPosition: 'center' }));
    b.classList.add('jp-MiniCPM-iconButton');
  }
  if (o.text) {
    b.append(el('span', { class: 'jp-MiniCPM-buttonText' }, o.text));
  }
  b.onclick = ev => {
    ev.preventDefault();
    Promise.resolve(o.onclick()).catch(e => console.error('MiniCPM:', e));
  };
  return b;
}
