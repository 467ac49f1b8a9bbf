/**
 * An answer's body: Markdown through JupyterLab's rendermime (tables, highlighted code), with
 * the SafeSanitizer in between (sanitize.ts) and the code toolbar on each code block. The code
 * the toolbar acts on comes from the answer's Markdown source (codeblocks.ts).
 */
import {
  IRenderMime,
  IRenderMimeRegistry,
  MimeModel,
  RenderMimeRegistry,
  markdownRendererFactory
} from '@jupyterlab/rendermime';
import { LabIcon, addIcon, copyIcon, editIcon, runIcon } from '@jupyterlab/ui-components';
import { Notification } from '@jupyterlab/apputils';
import { fencedBlocks, matchBlocks } from './codeblocks';
import { button, el } from './dom';
import { SafeSanitizer, scrubRendered } from './sanitize';

/** A change that can be taken back (Replace cell). */
export interface IUndoable {
  label: string;
  undo(): void;
}

/** What the code toolbar does; `index` is the answer's message index. */
export interface ICodeActions {
  copy(code: string): void;
  insertBelow(code: string): void | Promise<void>;
  /** may first ask (a diff of the change); void when nothing was replaced */
  replace(code: string, index: number): IUndoable | void | Promise<IUndoable | void>;
  /** which cell Replace would change, for its tooltip ("cell #2"), null when none */
  replaceTarget(index: number): string | null;
  insertAndRun(code: string): void | Promise<void>;
}

/**
 * A rendermime for untrusted text: Markdown only, JupyterLab's parser (highlighted code), our
 * sanitizer; no resolver or link handler (nothing resolves to a file or command), no math
 * typesetting (MathJax can make links and styles the sanitizer never saw).
 */
export function safeRendermime(rendermime: IRenderMimeRegistry): IRenderMimeRegistry {
  return new RenderMimeRegistry({
    initialFactories: [markdownRendererFactory],
    sanitizer: new SafeSanitizer(rendermime.sanitizer),
    markdownParser: rendermime.markdownParser || undefined
  });
}

/** Renders one answer, again as it streams (at most every 80 ms, never two at once). */
export class AnswerBody {
  private renderer: IRenderMime.IRenderer | null = null;
  private source = '';
  private rendering = false;
  private dirty = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    readonly host: HTMLElement,
    private rendermime: IRenderMimeRegistry,
    private onRendered: () => void = () => undefined
  ) {}

  /** Render `source` soon (coalescing updates while streaming). */
  update(source: string): void {
    this.source = source;
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.idle = this.flush();
      }, 80);
    }
  }

  /** Render `source` now; resolves when the page shows it. */
  async render(source: string): Promise<void> {
    this.source = source;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    await this.idle;
    this.idle = this.flush();
    await this.idle;
  }

  private async flush(): Promise<void> {
    if (this.rendering) {
      this.dirty = true;
      return;
    }
    this.rendering = true;
    try {
      do {
        this.dirty = false;
        if (!this.renderer) {
          this.renderer = this.rendermime.createRenderer('text/markdown');
          this.host.textContent = '';
          this.host.append(this.renderer.node);
        }
        await this.renderer.renderModel(
          new MimeModel({ data: { 'text/markdown': this.source }, trusted: false })
        );
        scrubRendered(this.renderer.node);
      } while (this.dirty);
    } finally {
      this.rendering = false;
    }
    this.onRendered();
  }

  /** The code toolbar on each <pre> that is a code block of the source. */
  addCodeActions(actions: ICodeActions, index: number): void {
    const pres = Array.from(this.host.querySelectorAll('pre')).filter(
      p => !p.parentElement?.classList.contains('jp-MiniCPM-code')
    );
    const blocks = matchBlocks(
      pres.map(p => p.textContent || ''),
      fencedBlocks(this.source)
    );
    pres.forEach((pre, i) => {
      const block = blocks[i];
      if (!block) {
        return; // not a code block of the answer's source: no actions
      }
      const code = block.code;
      const wrap = el('div', { class: 'jp-MiniCPM-code', 'data-lang': block.lang });
      pre.replaceWith(wrap);
      const bar = el('div', { class: 'jp-MiniCPM-codeBar', role: 'toolbar', 'aria-label': 'Code block actions' });
      const act = (label: string, testid: string, icon: LabIcon, fn: () => void | Promise<void>) =>
        bar.append(
          button({
            label,
            testid,
            icon,
            className: 'jp-MiniCPM-codeButton',
            onclick: async () => {
              try {
                await fn();
              } catch (e) {
                Notification.error(`MiniCPM: ${(e as Error).message}`, { autoClose: 4000 });
              }
            }
          })
        );
      act('Copy code', 'minicpm-copy', copyIcon, () => actions.copy(code));
      act('Insert code as a new cell below the active cell', 'minicpm-insert', addIcon, () =>
        actions.insertBelow(code)
      );
      act('Replace the cell this answer is about with this code', 'minicpm-replace', editIcon, async () => {
        const done = await actions.replace(code, index);
        if (done) {
          this.showUndo(wrap, done);
        }
      });
      act('Insert code below and run it', 'minicpm-insert-run', runIcon, () => actions.insertAndRun(code));
      // the tooltip names the cell Replace will change, looked up when the pointer gets there
      const replace = bar.querySelector<HTMLElement>('[data-testid="minicpm-replace"]');
      const name = () => {
        const target = actions.replaceTarget(index);
        replace?.setAttribute('title', target ? `Replace ${target} (the cell this answer is about) with this code` : 'Open a notebook to replace a cell');
      };
      replace?.addEventListener('mouseenter', name);
      replace?.addEventListener('focus', name);
      if (block.lang) {
        bar.prepend(el('span', { class: 'jp-MiniCPM-codeLang' }, block.lang));
      }
      wrap.append(bar, pre);
    });
  }

  /** "Replaced cell #2 · Undo" under the code block. */
  private showUndo(wrap: HTMLElement, done: IUndoable): void {
    wrap.querySelector('.jp-MiniCPM-undoNote')?.remove();
    const note = el('div', { class: 'jp-MiniCPM-undoNote', role: 'status' }, `Replaced ${done.label}. `);
    note.append(
      button({
        label: `Undo: put ${done.label} back`,
        text: 'Undo',
        testid: 'minicpm-undo',
        className: 'jp-mod-small',
        onclick: () => {
          done.undo();
          note.remove();
        }
      })
    );
    wrap.append(note);
  }

  dispose(): void {
    if (this.timer) {
      clearTimeout(this.timer);
    }
    this.renderer?.dispose();
    this.renderer = null;
  }
}
