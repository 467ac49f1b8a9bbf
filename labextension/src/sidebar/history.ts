/**
 * Saved chats: a list that keeps its height next to a long conversation, the current chat
 * marked, open and delete per row. The last opened chat's id is remembered so a page reload
 * reopens it.
 */
import { Widget } from '@lumino/widgets';
import { deleteIcon } from '@jupyterlab/ui-components';
import type { IChatSummary } from '../protocol';
import type { ChatSession, SessionChange } from './session';
import { button, el } from './dom';
import { timeLabel, updatedMs } from './format';

const LAST_CHAT_KEY = 'jupyter-minicpm:last-chat';

/** The part of MiniCPMClient the list uses. */
export interface IHistoryClient {
  listChats(): Promise<IChatSummary[]>;
  deleteChat(id: string): Promise<void>;
}

export function lastChatId(): string | null {
  try {
    return localStorage.getItem(LAST_CHAT_KEY);
  } catch {
    return null;
  }
}

export class HistoryList extends Widget {
  constructor(
    private client: IHistoryClient,
    private session: ChatSession,
    private onOpen: (id: string) => Promise<void>
  ) {
    super();
    this.addClass('jp-MiniCPM-historyBox');
    this.node.setAttribute('role', 'list');
    this.node.setAttribute('aria-label', 'Saved chats');
    this.node.dataset.testid = 'minicpm-history-list';
    this.hide();
    session.changed.connect(this.onChange, this);
  }

  private onChange(_: ChatSession, change: SessionChange): void {
    if (change.type === 'saved' || change.type === 'reset') {
      try {
        // remembered once the chat exists on the server (or cleared by New chat)
        if (this.session.messages.length) {
          localStorage.setItem(LAST_CHAT_KEY, this.session.chatId);
        } else if (change.type === 'reset') {
          localStorage.removeItem(LAST_CHAT_KEY);
        }
      } catch {
        // private mode: nothing to remember
      }
      if (this.isVisible) {
        void this.refresh();
      }
    }
  }

  async toggle(): Promise<boolean> {
    if (this.isHidden) {
      this.show();
      await this.refresh();
      return true;
    }
    this.hide();
    return false;
  }

  async refresh(): Promise<void> {
    let chats: IChatSummary[];
    try {
      chats = await this.client.listChats();
    } catch (e) {
      this.node.textContent = '';
      this.node.append(el('div', { class: 'jp-MiniCPM-error' }, `Could not list chats: ${(e as Error).message}`));
      return;
    }
    this.node.textContent = '';
    if (!chats.length) {
      this.node.append(el('div', { class: 'jp-MiniCPM-muted' }, 'No saved chats yet.'));
      return;
    }
    chats.sort((a, b) => (updatedMs(b.updated) || 0) - (updatedMs(a.updated) || 0));
    for (const c of chats) {
      const current = c.id === this.session.chatId;
      const row = el('div', {
        class: `jp-MiniCPM-historyRow${current ? ' jp-mod-current' : ''}`,
        role: 'listitem',
        'data-testid': 'minicpm-history-row'
      });
      if (current) {
        row.setAttribute('aria-current', 'true');
      }
      const ms = updatedMs(c.updated);
      const open = el('button', {
        class: 'jp-MiniCPM-historyOpen',
        type: 'button',
        'aria-label': `Open chat ${c.title || c.id}`,
        title: c.title || c.id
      });
      open.append(
        el('span', { class: 'jp-MiniCPM-historyTitle' }, c.title || c.id),
        el('span', { class: 'jp-MiniCPM-muted' }, `${ms ? timeLabel(ms) + ' · ' : ''}${c.n_messages} messages`)
      );
      open.onclick = () => void this.onOpen(c.id).then(() => this.refresh());
      const del = button({
        label: `Delete chat ${c.title || c.id}`,
        testid: 'minicpm-delete-chat',
        icon: deleteIcon,
        className: 'jp-MiniCPM-historyDelete',
        onclick: async () => {
          await this.client.deleteChat(c.id);
          if (current) {
            this.session.reset();
          }
          await this.refresh();
        }
      });
      row.append(open, del);
      this.node.append(row);
    }
  }
}
