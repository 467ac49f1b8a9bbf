/**
 * Inline completion (ghost text) in a real JupyterLab, answered by minicpm_server with the
 * stand-in model: it appears as you type, Tab accepts exactly what was shown, Escape
 * dismisses it, and typing on stops the request in flight on the server.
 */
const path = require('path');
const { expect, test, galata } = require('@jupyterlab/galata');

const SHOTS = path.resolve(__dirname, '..', 'test-results', 'screenshots');

test.use({
  autoGoto: true,
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'jupyter-minicpm:completer': { debounceMs: 100, maxTokens: 24, mode: 'line' }
  }
});

const NOTEBOOK = {
  cells: [
    { cell_type: 'markdown', metadata: {}, source: 'Helpers for a list of numbers.' },
    {
      cell_type: 'code',
      execution_count: null,
      metadata: {},
      outputs: [],
      source: 'import math\nvalues = [1, 2, 3, 4]'
    },
    { cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: '' }
  ],
  metadata: {
    kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' },
    language_info: { name: 'python' }
  },
  nbformat: 4,
  nbformat_minor: 5
};

/** Record the frames of the completion socket. */
function recordInline(page) {
  const rec = { sent: [], received: [] };
  page.on('websocket', ws => {
    if (!ws.url().includes('minicpm/complete')) {
      return;
    }
    ws.on('framesent', f => rec.sent.push(JSON.parse(f.payload)));
    ws.on('framereceived', f => rec.received.push(JSON.parse(f.payload)));
  });
  return rec;
}

async function openEmptyCell(page, tmpPath) {
  const name = 'complete.ipynb';
  await page.contents.uploadContent(JSON.stringify(NOTEBOOK), 'text', `${tmpPath}/${name}`);
  await page.filebrowser.openDirectory(tmpPath);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  await page.notebook.enterCellEditingMode(2);
}

/** The final text of the last finished request that had something to show. */
async function lastShown(rec) {
  await expect
    .poll(() => rec.received.filter(f => f.type === 'done' && f.text).length, { timeout: 60000 })
    .toBeGreaterThan(0);
  return rec.received.filter(f => f.type === 'done' && f.text).pop().text;
}

test('ghost text streams in and Tab accepts exactly what was shown', async ({ page, tmpPath }) => {
  const rec = recordInline(page);
  await openEmptyCell(page, tmpPath);
  await page.keyboard.type('import nu', { delay: 20 });
  const ghost = page.locator('.jp-GhostText');
  await expect(ghost).toBeVisible({ timeout: 60000 });
  const finalText = await lastShown(rec);
  await expect(ghost).toHaveText(finalText);
  await page.screenshot({ path: `${SHOTS}/20-ghost-text.png` });

  // the request: the cell up to the cursor, the cells above (Markdown included), no outputs
  const req = rec.sent.filter(f => f.type === 'complete').pop();
  expect(req.prefix).toBe('import nu');
  expect(req.cells.map(c => c.kind)).toEqual(['markdown', 'code']);
  expect(req.cells[1].source).toContain('values = [1, 2, 3, 4]');
  // streamed: partial frames came before the done frame of some request
  expect(rec.received.some(f => f.type === 'partial')).toBe(true);

  await page.keyboard.press('Tab');
  await expect(ghost).toHaveCount(0);
  expect(await page.notebook.getCellTextInput(2)).toBe('import nu' + finalText);
  await page.screenshot({ path: `${SHOTS}/21-accepted.png` });
});

test('Escape dismisses the suggestion and leaves the cell as typed', async ({ page, tmpPath }) => {
  const rec = recordInline(page);
  await openEmptyCell(page, tmpPath);
  await page.keyboard.type('total = sum(val', { delay: 20 });
  const ghost = page.locator('.jp-GhostText');
  await expect(ghost).toBeVisible({ timeout: 60000 });
  await lastShown(rec);
  await page.keyboard.press('Escape');
  await expect(ghost).toHaveCount(0);
  expect(await page.notebook.getCellTextInput(2)).toBe('total = sum(val');
  await page.screenshot({ path: `${SHOTS}/22-dismissed.png` });
});

test('typing on stops the request in flight on the server', async ({ page, tmpPath }) => {
  const rec = recordInline(page);
  await openEmptyCell(page, tmpPath);
  // a keystroke every 160 ms against a 100 ms debounce: each request is 60 ms old when the
  // next keystroke makes it stale
  await page.keyboard.type('import mat', { delay: 160 });
  await expect
    .poll(() => rec.sent.filter(f => f.type === 'stop').length, { timeout: 30000 })
    .toBeGreaterThan(0);
  const stopped = rec.sent.filter(f => f.type === 'stop').map(f => f.id);
  await expect
    .poll(
      () =>
        rec.received.filter(f => f.type === 'done' && stopped.includes(f.id) && f.dropped === 'cancelled')
          .length,
      { timeout: 30000 }
    )
    .toBeGreaterThan(0);
  const cancelled = rec.received.filter(f => f.type === 'done' && f.dropped === 'cancelled');
  for (const f of cancelled) {
    expect(f.text).toBe('');
    expect(f.timing.free_ms).toBeLessThan(2000); // the engine was free again at once
  }
  // the last request is answered normally
  const last = rec.sent.filter(f => f.type === 'complete').pop();
  expect(last.prefix).toBe('import mat');
  await expect
    .poll(() => rec.received.filter(f => f.type === 'done' && f.id === last.id).length, {
      timeout: 60000
    })
    .toBe(1);
  expect(rec.received.find(f => f.type === 'done' && f.id === last.id).dropped).not.toBe('cancelled');
});
