/**
 * Inline completion (ghost text) in a real JupyterLab, answered by minicpm_server with the
 * stand-in model: it appears as you type, Tab accepts exactly what was shown, Escape
 * dismisses it, and typing on stops the request in flight on the server.
 */
const { expect, test } = require('@jupyterlab/galata');
const { SHOTS, labOptions, recordSocket } = require('./helpers');

const COMPLETER = { plugin: 'jupyter-minicpm:completer' };

test.use(labOptions({ debounceMs: 100, maxTokens: 24, mode: 'line' }, COMPLETER));

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

/** In the empty cell, type `text`; the ghost text once shown and the suggestion's final text. */
async function typeForGhost(page, tmpPath, text) {
  const rec = recordSocket(page, 'minicpm/complete');
  await openEmptyCell(page, tmpPath);
  await page.keyboard.type(text, { delay: 20 });
  const ghost = page.locator('.jp-GhostText');
  await expect(ghost).toBeVisible({ timeout: 60000 });
  return { rec, ghost, finalText: await lastShown(rec) };
}

test('ghost text streams in and Tab accepts exactly what was shown', async ({ page, tmpPath }) => {
  const { rec, ghost, finalText } = await typeForGhost(page, tmpPath, 'import nu');
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
  const { ghost } = await typeForGhost(page, tmpPath, 'total = sum(val');
  await page.keyboard.press('Escape');
  await expect(ghost).toHaveCount(0);
  expect(await page.notebook.getCellTextInput(2)).toBe('total = sum(val');
  await page.screenshot({ path: `${SHOTS}/22-dismissed.png` });
});

test.describe('long suggestions', () => {
  test.use(labOptions({ debounceMs: 100, maxTokens: 200, mode: 'statement' }, COMPLETER));

  test('typing on stops the request in flight on the server', async ({ page, tmpPath }) => {
    const rec = recordSocket(page, 'minicpm/complete');
    await openEmptyCell(page, tmpPath);
    // an open list: the suggestion (one statement) goes on for many tokens
    const typed = 'values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,';
    await page.keyboard.type(typed, { delay: 10 });
    const inFlight = () => {
      const last = rec.sent.filter(f => f.type === 'complete').pop();
      return last && rec.received.some(f => f.id === last.id && f.type === 'partial') &&
        !rec.received.some(f => f.id === last.id && f.type === 'done') ? last.id : null;
    };
    await expect.poll(inFlight, { timeout: 60000 }).not.toBeNull();
    const old = inFlight();
    await page.keyboard.type(' ');
    // the keystroke sent a stop for it at once; the server freed the engine
    await expect.poll(() => rec.sent.some(f => f.type === 'stop' && f.id === old)).toBe(true);
    await expect
      .poll(() => rec.received.find(f => f.type === 'done' && f.id === old), { timeout: 30000 })
      .toBeTruthy();
    const done = rec.received.find(f => f.type === 'done' && f.id === old);
    expect(done.dropped).toBe('cancelled');
    expect(done.text).toBe('');
    expect(done.usage.completion_tokens).toBeLessThan(200);
    // the request for the new text follows
    await expect
      .poll(() => rec.sent.filter(f => f.type === 'complete').pop().prefix, { timeout: 30000 })
      .toBe(typed + ' ');
    await page.screenshot({ path: `${SHOTS}/23-typing-on.png` });
  });
});

test.describe('a fresh line', () => {
  test.use(labOptions({ debounceMs: 100, maxTokens: 32, mode: 'line' }, COMPLETER));

  test('ghost text appears on the line after def f(x): + Enter', async ({ page, tmpPath }) => {
    const rec = recordSocket(page, 'minicpm/complete');
    await openEmptyCell(page, tmpPath);
    await page.keyboard.type('def f(x):', { delay: 20 });
    await page.keyboard.press('Enter'); // the editor indents the new line
    // (no getCellTextInput here: it selects the cell's text, which dismisses ghost text)
    const ghost = page.locator('.jp-GhostText');
    await expect(ghost).toBeVisible({ timeout: 60000 });
    const finalText = await lastShown(rec);
    await expect(ghost).toContainText(finalText.trim().split(/\s+/)[0]);
    // asked for on the fresh line, for the body (block mode after an opener) ...
    const fresh = rec.sent.filter(f => f.type === 'complete' && f.prefix === 'def f(x):\n    ');
    // ... unless the suggestion asked for before Enter began with this newline: then kept
    const before = rec.received.find(
      f => f.text && f.text.startsWith('\n    ') &&
        rec.sent.some(s => s.id === f.id && s.prefix === 'def f(x):')
    );
    expect(fresh.length > 0 || Boolean(before)).toBe(true);
    if (fresh.length) {
      expect(fresh[0].mode).toBe('block');
    }
    await page.screenshot({ path: `${SHOTS}/24-fresh-line.png` });
    await page.keyboard.press('Tab');
    await expect(ghost).toHaveCount(0);
    const cell = await page.notebook.getCellTextInput(2);
    expect(cell.startsWith('def f(x):\n    ')).toBe(true);
    expect(cell.trim().length).toBeGreaterThan('def f(x):'.length); // a body was accepted
    if (fresh.length) {
      expect(cell).toBe('def f(x):\n    ' + finalText);
    }
  });
});
