import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { MiniCPMClient } from './api';
import completerPlugin from './completion/completer';
import { NotebookBridge } from './notebook';
import { ChatPanel, IMiniCPMSettings } from './panel';
import { PROMPTS } from './context';
import { addExplainDataFrame } from './dataframe';
import { EXPLAIN_IMAGE, addExplainImage } from './explainimage';
import { addFixButtons } from './fixbuttons';
import type { Ask } from './outputaction';
import { watchPreread } from './sidebar/preread';

const PLUGIN_ID = 'jupyter-minicpm:plugin';

export namespace CommandIDs {
  export const open = 'minicpm:open';
  export const focus = 'minicpm:focus-input';
  export const newChat = 'minicpm:new-chat';
  export const explainCell = 'minicpm:explain-cell';
  export const fixError = 'minicpm:fix-error';
  export const explainImage = EXPLAIN_IMAGE;
  export const attachCell = 'minicpm:attach-cell';
}

const chatIcon = new LabIcon({
  name: 'minicpm:chat',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><path class="jp-icon3" fill="#616161" d="M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3zm5 0a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3zm5 0a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3z"/></svg>'
});

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'MiniCPM chat sidebar: reads cells, errors and image outputs',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ISettingRegistry, ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const settings = ServerConnection.makeSettings();
    const client = new MiniCPMClient(settings, ServerConnection.makeRequest);
    const notebooks = new NotebookBridge(tracker);
    const panel = new ChatPanel(client, rendermime, notebooks);
    panel.title.icon = chatIcon;
    panel.title.caption = 'MiniCPM';
    // JupyterLab's right tab shows the icon alone; Notebook 7 heads its side panel with the label
    panel.title.label = app.name === 'Jupyter Notebook' ? 'MiniCPM' : '';
    app.shell.add(panel, 'right', { rank: 600 });
    restorer?.add(panel, 'minicpm-chat');
    tracker.currentChanged.connect(() => panel.refreshContext());
    watchPreread({ panel, tracker, request: (path, method, body) => client.request(path, method, body) });

    let started = false;
    const startOnce = () => {
      if (!started) {
        started = true;
        void panel.start();
      }
    };

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(s => {
          const apply = () => panel.applySettings(s.composite as unknown as IMiniCPMSettings);
          apply();
          s.changed.connect(apply);
        })
        .catch(e => console.warn('MiniCPM: settings not loaded', e))
        .finally(() => void app.restored.then(startOnce));
    } else {
      void app.restored.then(startOnce);
    }

    const show = () => {
      app.shell.activateById(panel.id);
    };

    /** Attach `parts` and put `prompt` up for review (or send it: `sendActionsAtOnce`). */
    const ask: Ask = async (parts, prompt, what, cellIndex) => {
      if (!parts.length) {
        Notification.warning(`MiniCPM: ${what}`, { autoClose: 3000 });
        return;
      }
      show();
      if (panel.busy && panel.settings.sendActionsAtOnce) {
        Notification.info('MiniCPM is still answering; stop it first.', { autoClose: 3000 });
      }
      await panel.attachAndAsk(parts, prompt, cellIndex);
    };

    /** A cell index from a context-menu click, else the active cell. */
    const cellIndexFromEvent = (): number => {
      const node = app.contextMenuHitTest(n => n.classList.contains('jp-Cell'));
      if (node) {
        const i = notebooks.indexOfNode(node);
        if (i >= 0) {
          return i;
        }
      }
      return notebooks.activeIndex();
    };

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open MiniCPM chat',
      caption: 'Show the MiniCPM chat sidebar',
      execute: show
    });
    app.commands.addCommand(CommandIDs.focus, {
      label: 'MiniCPM: Focus chat input',
      execute: () => {
        show();
        // after the sidebar is shown
        requestAnimationFrame(() => panel.focusInput());
      }
    });
    app.commands.addCommand(CommandIDs.newChat, {
      label: 'MiniCPM: New chat',
      execute: () => {
        show();
        panel.newChat();
      }
    });
    app.commands.addCommand(CommandIDs.attachCell, {
      label: 'Attach cell to MiniCPM chat',
      isEnabled: () => !!tracker.currentWidget,
      execute: () => {
        show();
        panel.attach(notebooks.cellContext(cellIndexFromEvent(), panel.settings.sendImagesByDefault));
      }
    });
    app.commands.addCommand(CommandIDs.explainCell, {
      label: 'MiniCPM: Explain cell',
      caption: 'Ask MiniCPM to explain the active cell',
      isEnabled: () => !!tracker.currentWidget,
      execute: () => {
        const index = cellIndexFromEvent();
        return ask(
          notebooks.cellContext(index, panel.settings.sendImagesByDefault),
          PROMPTS.explainCell,
          'no cell to explain',
          index
        );
      }
    });
    app.commands.addCommand(CommandIDs.fixError, {
      label: 'MiniCPM: Fix error',
      caption: "Send the active cell and its traceback to MiniCPM",
      // only where there is an error to fix
      isEnabled: args =>
        !!tracker.currentWidget &&
        notebooks.errorContext(typeof args.cellIndex === 'number' ? args.cellIndex : cellIndexFromEvent()).length > 0,
      execute: args => {
        const index = typeof args.cellIndex === 'number' ? args.cellIndex : cellIndexFromEvent();
        return ask(notebooks.errorContext(index), PROMPTS.fixError, 'this cell has no error output', index);
      }
    });
    addExplainDataFrame(app, panel, notebooks, ask, cellIndexFromEvent);
    addExplainImage(app, notebooks, ask, cellIndexFromEvent);

    app.contextMenu.addItem({ type: 'separator', selector: '.jp-Notebook .jp-Cell', rank: 20 });
    app.contextMenu.addItem({ command: CommandIDs.explainCell, selector: '.jp-Notebook .jp-Cell', rank: 20 });
    app.contextMenu.addItem({ command: CommandIDs.fixError, selector: '.jp-Notebook .jp-Cell', rank: 20 });
    app.contextMenu.addItem({ command: CommandIDs.attachCell, selector: '.jp-Notebook .jp-Cell', rank: 20 });

    if (palette) {
      const category = 'MiniCPM';
      for (const command of [
        CommandIDs.open,
        CommandIDs.focus,
        CommandIDs.newChat,
        CommandIDs.explainCell,
        CommandIDs.fixError,
        CommandIDs.explainImage
      ]) {
        palette.addItem({ command, category });
      }
    }

    // A "Fix error" button on error outputs.
    const fix = (cellIndex: number) => void app.commands.execute(CommandIDs.fixError, { cellIndex });
    tracker.widgetAdded.connect((_, nb) => addFixButtons(nb, fix));
    tracker.forEach(nb => addFixButtons(nb, fix));
  }
};

export default [plugin, completerPlugin];
