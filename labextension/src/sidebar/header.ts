/**
 * The status header: model picker, New chat / Saved chats buttons (LabIcons: inline SVG, so
 * they render without any icon font), the status line with the stand-in badge and load
 * progress, and the stand-in banner (collapsible, with a copy button for the download command).
 */
import { Widget } from '@lumino/widgets';
import { Clipboard, Notification } from '@jupyterlab/apputils';
import { addIcon, caretDownIcon, caretRightIcon, copyIcon, historyIcon } from '@jupyterlab/ui-components';
import { ApiError } from '../api';
import type { IModels, IStatus } from '../protocol';
import { button, el } from './dom';
import { commandFromHint, isStandIn, pickerEntries, plainHint, statusLine } from './format';

export interface IHeaderActions {
  newChat(): void;
  toggleHistory(): void;
  load(model: string): void;
}

const GET_MINICPM = '__get-minicpm__';
const BANNER_KEY = 'jupyter-minicpm:banner-collapsed';

export class StatusHeader extends Widget {
  private select: HTMLSelectElement;
  private statusText: HTMLElement;
  private badge: HTMLElement;
  private progress: HTMLProgressElement;
  private banner: HTMLElement;
  private bannerText: HTMLElement;
  private bannerToggle: HTMLButtonElement;
  private copyButton: HTMLButtonElement;
  private command: string | null = null;
  private hint = '';
  readonly historyButton: HTMLButtonElement;

  constructor(actions: IHeaderActions) {
    super();
    this.addClass('jp-MiniCPM-top');
    const row = el('div', { class: 'jp-MiniCPM-header', role: 'toolbar', 'aria-label': 'MiniCPM chat' });
    this.select = el('select', {
      class: 'jp-MiniCPM-model jp-mod-styled',
      'aria-label': 'Model',
      'data-testid': 'minicpm-model',
      title: 'Model (choosing one loads it)'
    });
    this.select.onchange = () => {
      if (this.select.value === GET_MINICPM) {
        this.select.value = this.select.dataset.current || '';
        this.showBanner(true);
        return;
      }
      actions.load(this.select.value);
    };
    const newButton = button({
      label: 'New chat',
      testid: 'minicpm-new',
      icon: addIcon,
      onclick: () => actions.newChat()
    });
    this.historyButton = button({
      label: 'Saved chats',
      testid: 'minicpm-history',
      icon: historyIcon,
      onclick: () => actions.toggleHistory()
    });
    this.historyButton.setAttribute('aria-expanded', 'false');
    row.append(this.select, newButton, this.historyButton);

    const statusRow = el('div', { class: 'jp-MiniCPM-statusRow' });
    this.statusText = el(
      'span',
      { class: 'jp-MiniCPM-status', role: 'status', 'aria-live': 'polite', 'data-testid': 'minicpm-status' },
      'Connecting…'
    );
    this.badge = el(
      'span',
      {
        class: 'jp-MiniCPM-badge',
        title: 'Not a MiniCPM model: the small embedded stand-in (SmolLM2-135M) answers until MiniCPM weights are installed',
        'data-testid': 'minicpm-standin'
      },
      'stand-in'
    );
    this.badge.hidden = true;
    this.progress = el('progress', {
      class: 'jp-MiniCPM-progress',
      max: '1',
      value: '0',
      'aria-label': 'Model loading progress'
    });
    this.progress.hidden = true;
    statusRow.append(this.statusText, this.badge, this.progress);

    // the stand-in banner: one line, expandable; the command has its own copy button
    this.banner = el('div', { class: 'jp-MiniCPM-banner', 'data-testid': 'minicpm-banner' });
    this.bannerToggle = button({
      label: 'Show how to get MiniCPM',
      testid: 'minicpm-banner-toggle',
      icon: caretRightIcon,
      text: 'Get MiniCPM…',
      className: 'jp-MiniCPM-bannerToggle',
      onclick: () => this.showBanner(this.banner.classList.contains('jp-mod-collapsed'))
    });
    this.bannerText = el('div', { class: 'jp-MiniCPM-bannerText' });
    this.copyButton = button({
      label: 'Copy the download command',
      testid: 'minicpm-copy-command',
      icon: copyIcon,
      onclick: () => {
        if (this.command) {
          Clipboard.copyToSystem(this.command);
          Notification.success('Command copied: run it in a terminal', { autoClose: 2000 });
        }
      }
    });
    this.banner.append(this.bannerToggle, this.bannerText);
    this.banner.hidden = true;
    this.node.append(row, statusRow, this.banner);
    this.showBanner(localStorage.getItem(BANNER_KEY) !== '1', false);
  }

  private showBanner(open: boolean, remember = true): void {
    this.banner.classList.toggle('jp-mod-collapsed', !open);
    this.bannerToggle.setAttribute('aria-expanded', String(open));
    const icon = open ? caretDownIcon : caretRightIcon;
    this.bannerToggle.querySelector('.jp-MiniCPM-icon')?.replaceWith(
      icon.element({ tag: 'span', className: 'jp-MiniCPM-icon', elementPosition: 'center' })
    );
    if (remember) {
      localStorage.setItem(BANNER_KEY, open ? '0' : '1');
    }
  }

  setHistoryOpen(open: boolean): void {
    this.historyButton.setAttribute('aria-expanded', String(open));
    this.historyButton.classList.toggle('jp-mod-active', open);
  }

  /** Fill the picker: local models, the current one (even a remote one), "Get MiniCPM…". */
  setModels(r: IModels): void {
    const { entries, missing } = pickerEntries(r.models, r.current, r.current_label);
    this.select.textContent = '';
    for (const e of entries) {
      const attrs: Record<string, string> = { value: e.value };
      if (e.source) {
        attrs['data-source'] = e.source;
        attrs.title = `${e.label}: found in ${e.source}, loaded from there (no copy)`;
      }
      if (e.path) {
        attrs['data-path'] = e.path;
      }
      this.select.append(el('option', attrs, e.label));
    }
    if (missing) {
      this.select.append(el('option', { value: GET_MINICPM }, 'Get MiniCPM…'));
    }
    this.select.value = r.current || '';
    this.select.dataset.current = this.select.value;
  }

  showStatus(st: IStatus): void {
    this.statusText.dataset.state = st.state;
    this.statusText.textContent = statusLine(st);
    const standIn = isStandIn(st);
    this.badge.hidden = !standIn;
    this.progress.hidden = st.state !== 'loading';
    this.progress.value = st.progress || 0;
    const hint = st.hint || '';
    if (hint !== this.hint) {
      this.hint = hint;
      this.command = commandFromHint(hint);
      this.bannerText.textContent = '';
      this.bannerText.append(el('span', {}, plainHint(hint)));
      if (this.command) {
        const cmd = el('div', { class: 'jp-MiniCPM-command' });
        cmd.append(el('code', { 'data-testid': 'minicpm-command' }, this.command), this.copyButton);
        this.bannerText.append(cmd);
      }
    }
    this.banner.hidden = !hint;
    const model = st.model;
    if (model) {
      const options = [...this.select.options];
      // the status names the model by the file's own name: find its entry by name or file
      const match =
        options.find(o => o.value === model.model) ||
        (model.path ? options.find(o => o.value && o.dataset.path === model.path) : undefined);
      let value = match ? match.value : model.model;
      if (!match) {
        // a model the catalogue does not list (remote, a path): show its name anyway
        this.select.append(el('option', { value: model.model }, model.label || model.model));
        value = model.model;
      }
      this.select.value = value;
      this.select.dataset.current = value;
    }
  }

  showError(e: unknown): void {
    this.statusText.textContent =
      e instanceof ApiError && e.status === 404
        ? 'MiniCPM server extension not found (is minicpm_server enabled?)'
        : `Server unreachable: ${(e as Error).message || e}`;
    this.statusText.dataset.state = 'error';
  }
}
