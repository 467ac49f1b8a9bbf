/**
 * The MiniCPM panel in Jupyter Notebook 7 (not JupyterLab): opened from View › Right Sidebar,
 * the picker names a model another tool downloaded (a fake Ollama store) with its source, a cell
 * goes in as a context chip, and the stand-in answers; inline completion shows ghost text in a
 * notebook page and Tab accepts it. Run by notebook7.config.js.
 */
const fs = require('fs');
const path = require('path');
const { expect, test } = require('@playwright/test');

const SHOTS = path.resolve(__dirname, '..', 'test-results', 'screenshots');
const NOTEBOOKS = path.resolve(__dirname, '..', 'notebooks');

function recordChat(page) {
  const rec = { sent: [], received: [] };
  page.on('websocket', ws => {
    if (ws.url().includes('minicpm/chat')) {
      ws.on('framesent', f => rec.sent.push(JSON.parse(f.payload)));
      ws.on('framereceived', f => rec.received.push(JSON.parse(f.payload)));
    }
  });
  return rec;
}

test('Notebook 7: View › Right Sidebar › Show MiniCPM, a cell chip, an answer', async ({ page, request }) => {
  const name = `nb7-${Date.now()}.ipynb`;
  const content = JSON.parse(fs.readFileSync(path.join(NOTEBOOKS, 'two_cells.ipynb'), 'utf8'));
  const put = await request.put(`/api/contents/${name}`, { data: { type: 'notebook', format: 'json', content } });
  expect(put.ok()).toBeTruthy();

  const rec = recordChat(page);
  await page.goto(`/notebooks/${name}`);
  const firstCell = page.locator('.jp-Notebook .jp-Cell').first();
  await expect(firstCell).toBeVisible({ timeout: 60000 });
  await expect(page.locator('#minicpm-chat')).toBeHidden();

  await page.locator('.lm-MenuBar-itemLabel', { hasText: /^View$/ }).click();
  await page.locator('.lm-Menu-item', { hasText: 'Right Sidebar' }).hover();
  await page.locator('.lm-Menu-item', { hasText: 'Show MiniCPM' }).click();
  const panel = page.locator('#minicpm-chat');
  await expect(panel).toBeVisible();
  await expect(panel.getByTestId('minicpm-status')).toContainText('Ready', { timeout: 120000 });
  await page.screenshot({ path: `${SHOTS}/nb7-01-panel-open.png` });

  // the picker lists the fake Ollama store's model under Ollama's own name, with the store
  const ollama = panel.locator('[data-testid="minicpm-model"] option[data-source="ollama"]');
  await expect(ollama).toHaveCount(1);
  await expect(ollama).toHaveText('minicpm-tiny:latest · Ollama');
  await expect(ollama).toHaveAttribute('value', 'ollama:minicpm-tiny:latest');

  await firstCell.click();
  await panel.getByTestId('minicpm-add-cell').click();
  await expect(panel.locator('[data-testid="minicpm-chip"][data-kind="cell"]')).toHaveCount(1);
  await panel.getByTestId('minicpm-input').fill('What does this cell compute?');
  await panel.getByTestId('minicpm-send').click();
  const answer = panel.locator('[data-testid="minicpm-message"][data-role="assistant"]').last();
  await expect(answer.locator('.jp-MiniCPM-body')).not.toBeEmpty({ timeout: 90000 });
  const stop = panel.getByTestId('minicpm-stop');
  if (await stop.isEnabled()) {
    await stop.click();
  }
  await expect(answer).not.toHaveAttribute('aria-busy', 'true', { timeout: 30000 });
  await page.screenshot({ path: `${SHOTS}/nb7-02-answer.png` });

  const chat = rec.sent.find(f => f.type === 'chat');
  expect(chat.context.find(p => p.kind === 'cell').text).toContain('x = 21');
  expect(rec.received.some(f => f.type === 'delta')).toBe(true);
});

test('Notebook 7: inline completion streams ghost text and Tab accepts it', async ({ page, request }) => {
  const name = `nb7-complete-${Date.now()}.ipynb`;
  const content = {
    cells: [
      { cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: 'import math\nvalues = [1, 2, 3, 4]' },
      { cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source: '' }
    ],
    metadata: { kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' } },
    nbformat: 4,
    nbformat_minor: 5
  };
  const put = await request.put(`/api/contents/${name}`, { data: { type: 'notebook', format: 'json', content } });
  expect(put.ok()).toBeTruthy();
  const sent = [];
  const received = [];
  page.on('websocket', ws => {
    if (ws.url().includes('minicpm/complete')) {
      ws.on('framesent', f => sent.push(JSON.parse(f.payload)));
      ws.on('framereceived', f => received.push(JSON.parse(f.payload)));
    }
  });
  await page.goto(`/notebooks/${name}`);
  const editor = page.locator('.jp-Notebook .jp-Cell').nth(1).locator('.cm-content');
  await expect(editor).toBeVisible({ timeout: 60000 });
  await editor.click();
  await page.keyboard.type('import nu', { delay: 20 });
  const ghost = page.locator('.jp-GhostText');
  await expect(ghost).toBeVisible({ timeout: 90000 });
  await expect.poll(() => received.filter(f => f.type === 'done' && f.text).length, { timeout: 60000 }).toBeGreaterThan(0);
  const shown = received.filter(f => f.type === 'done' && f.text).pop().text;
  await expect(ghost).toHaveText(shown);
  await page.screenshot({ path: `${SHOTS}/nb7-03-ghost-text.png` });
  expect(sent.filter(f => f.type === 'complete').pop().prefix).toBe('import nu');
  await page.keyboard.press('Tab');
  // the cell's text without any ghost text (a next suggestion may already be showing)
  const typed = () =>
    editor.evaluate(el =>
      [...el.querySelectorAll('.cm-line')]
        .map(line => {
          const copy = line.cloneNode(true);
          copy.querySelectorAll('.jp-GhostText').forEach(g => g.remove());
          return copy.textContent;
        })
        .join('\n')
    );
  await expect.poll(typed).toBe('import nu' + shown);
  await page.screenshot({ path: `${SHOTS}/nb7-04-accepted.png` });
});
