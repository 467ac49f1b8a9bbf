/**
 * The sidebar as a new user meets it: icons are SVGs, the saved-chats list keeps its
 * height next to a long chat, code blocks have their box and an icon toolbar, the Fix button sits
 * below the traceback and only on errors, the current chat is marked and reopened after a
 * reload, chips say what they are and wait for review, Replace cell targets the cell the answer
 * was about and can be undone, the stand-in banner folds and copies its command, timestamps,
 * Continue after max tokens. Screenshots in light and dark themes.
 */
const { expect, test } = require('@jupyterlab/galata');
const { SHOTS, labOptions, openNotebook, openPanel } = require('./helpers');

test.use(labOptions({ temperature: 0, maxTokens: 120 }, { viewport: { width: 1440, height: 757 } }));

/** Save a chat through the server's API, as the sidebar does after each answer. */
async function putChat(request, id, title, messages) {
  const r = await request.put(`/minicpm/chats/${id}`, { data: { title, messages } });
  expect(r.ok()).toBe(true);
}

async function openSavedChat(panel, title) {
  const list = panel.getByTestId('minicpm-history-list');
  if (!(await list.isVisible())) {
    await panel.getByTestId('minicpm-history').click();
  }
  await panel.locator('.jp-MiniCPM-historyRow', { hasText: title }).locator('.jp-MiniCPM-historyOpen').click();
  await expect(panel.locator('.jp-MiniCPM-historyRow', { hasText: title })).toHaveAttribute('aria-current', 'true');
}

const T0 = Date.UTC(2026, 11, 1, 9, 30);

function longChat() {
  const messages = [];
  for (let i = 0; i < 18; i++) {
    messages.push({ role: 'user', content: `Question ${i}: what does step ${i} do?`, time: T0 + i * 60000 });
    messages.push({
      role: 'assistant',
      model: 'SmolLM2-135M-Instruct (stand-in)',
      content: `Step ${i} adds one.\n\n\`\`\`python\nx${i} = x${i} + 1\n\`\`\``,
      usage: { completion_tokens: 12, tokens_per_second: 80 },
      finish_reason: 'stop',
      time: T0 + i * 60000 + 5000
    });
  }
  messages[messages.length - 1].finish_reason = 'length';
  messages[messages.length - 1].content +=
    '\n\nA long inline name: `' + 'a_very_long_identifier_'.repeat(12) + '` ends here.';
  return messages;
}

test('header, banner, picker and empty chat (light and dark)', async ({ page }) => {
  const panel = await openPanel(page);
  // 1. icons are SVG LabIcons, not font glyphs
  for (const id of ['minicpm-new', 'minicpm-history']) {
    await expect(panel.getByTestId(id).locator('svg')).toHaveCount(1);
    expect(((await panel.getByTestId(id).textContent()) || '').trim()).toBe('');
  }
  // 11. a width that fits the picker and the input
  const box = await panel.boundingBox();
  expect(box.width).toBeGreaterThanOrEqual(355);
  // 10. neutral empty chat; a folded stand-in banner with a copy button; one "Get MiniCPM…" entry
  await expect(panel.getByTestId('minicpm-empty')).toContainText('stand-in');
  await expect(panel.getByTestId('minicpm-empty')).not.toContainText('Ask MiniCPM');
  const banner = panel.getByTestId('minicpm-banner');
  await expect(banner).toBeVisible();
  if (!(await panel.getByTestId('minicpm-command').isVisible())) {
    await panel.getByTestId('minicpm-banner-toggle').click();
  }
  await expect(panel.getByTestId('minicpm-command')).toHaveText(/^minicpm download \S+$/);
  await expect(panel.getByTestId('minicpm-copy-command').locator('svg')).toHaveCount(1);
  await expect(banner).not.toContainText('`');
  const picker = panel.getByTestId('minicpm-model');
  await expect(picker.locator('option[disabled]')).toHaveCount(0);
  await expect(picker.locator('option', { hasText: 'Get MiniCPM…' })).toHaveCount(1);
  await page.screenshot({ path: `${SHOTS}/30-newuser-light.png` });
  await panel.getByTestId('minicpm-banner-toggle').click();
  await expect(panel.getByTestId('minicpm-command')).toBeHidden();
  // 12. the disabled Stop button is plainly inactive (not the warn colour)
  const stop = panel.getByTestId('minicpm-stop');
  await expect(stop).toBeDisabled();
  const bg = await stop.evaluate(b => getComputedStyle(b).backgroundColor);
  const layout2 = await page.evaluate(() => {
    const probe = document.createElement('div');
    probe.style.background = 'var(--jp-layout-color2)';
    document.body.append(probe);
    const c = getComputedStyle(probe).backgroundColor;
    probe.remove();
    return c;
  });
  expect(bg).toBe(layout2);
  await page.theme.setDarkTheme();
  await page.screenshot({ path: `${SHOTS}/31-newuser-dark.png` });
  await page.theme.setLightTheme();
});

test('a long saved chat: list height, code boxes, times, Continue, reopened after reload', async ({ page, request }) => {
  await putChat(request, 'chat-newuser-long', 'Long chat about steps', longChat());
  const panel = await openPanel(page);
  await openSavedChat(panel, 'Long chat about steps');
  await expect(panel.getByTestId('minicpm-message')).toHaveCount(36);
  // 2. the saved-chats list keeps a usable height next to a long conversation
  const list = await panel.getByTestId('minicpm-history-list').boundingBox();
  expect(list.height).toBeGreaterThan(60);
  // 3. code blocks have a box and a one-row icon toolbar
  const last = panel.locator('[data-testid="minicpm-message"][data-role="assistant"]').last();
  const pre = last.locator('.jp-MiniCPM-code pre');
  const style = await pre.evaluate(p => {
    const s = getComputedStyle(p);
    return { border: s.borderTopWidth, padding: s.paddingLeft, bg: s.backgroundColor };
  });
  expect(style.border).not.toBe('0px');
  expect(style.padding).not.toBe('0px');
  expect(style.bg).not.toBe('rgba(0, 0, 0, 0)');
  const bar = last.locator('.jp-MiniCPM-codeBar');
  await expect(bar.locator('button svg')).toHaveCount(4);
  // one row: every button at the same height on the page
  const tops = await bar.locator('button').evaluateAll(bs => bs.map(b => Math.round(b.getBoundingClientRect().top)));
  expect(new Set(tops).size).toBe(1);
  // 11. long inline code wraps: the conversation does not scroll sideways
  const log = panel.getByRole('log', { name: 'Conversation', exact: true }); // not the agent's log
  const [sw, cw] = await log.evaluate(l => [l.scrollWidth, l.clientWidth]);
  expect(sw).toBeLessThanOrEqual(cw + 1);
  // 12. timestamps, and Continue after "hit max tokens"
  await expect(last.getByTestId('minicpm-time')).toBeVisible();
  await expect(last.getByTestId('minicpm-usage')).toContainText('hit max tokens');
  await expect(last.getByTestId('minicpm-continue')).toBeVisible();
  await last.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${SHOTS}/32-long-chat.png` });
  await page.theme.setDarkTheme();
  await page.screenshot({ path: `${SHOTS}/33-long-chat-dark.png` });
  await page.theme.setLightTheme();
  // 5. a reload reopens the chat, marked current in the list
  await page.evaluate(() => window.location.reload());
  await page.waitForSelector('#jupyterlab-splash', { state: 'detached', timeout: 60000 });
  await page.waitForSelector('.lm-TabBar-tab[data-id="minicpm-chat"]');
  if (!(await page.locator('#minicpm-chat').isVisible())) {
    await page.locator('.lm-TabBar-tab[data-id="minicpm-chat"]').click();
  }
  const again = page.locator('#minicpm-chat');
  await expect(again.getByTestId('minicpm-message')).toHaveCount(36, { timeout: 30000 });
  await again.getByTestId('minicpm-history').click();
  await expect(again.locator('.jp-MiniCPM-historyRow[aria-current="true"]')).toContainText('Long chat about steps');
  await page.screenshot({ path: `${SHOTS}/34-reopened-after-reload.png` });
});

test('chips by kind wait for review; Fix error only on errors, below the traceback', async ({ page, tmpPath }) => {
  await openNotebook(page, tmpPath, 'two_cells.ipynb');
  await page.notebook.run();
  const panel = await openPanel(page);
  // 6. code and output of one cell are told apart
  await page.notebook.selectCells(0);
  await panel.getByTestId('minicpm-add-cell').click();
  const chips = panel.getByTestId('minicpm-chip');
  await expect(chips).toHaveCount(2);
  await expect(chips.nth(0)).toContainText('cell [1] code');
  await expect(chips.nth(1)).toContainText('cell [1] output');
  await expect(chips.locator('svg')).toHaveCount(4); // kind icon + remove icon
  // 8. "Fix error" is disabled on a cell without an error
  await page.locator('.jp-Notebook .jp-Cell').nth(1).locator('.jp-InputArea-editor').click({ button: 'right' });
  const item = page.getByRole('menuitem', { name: 'MiniCPM: Fix error' });
  await expect(item).toHaveAttribute('aria-disabled', 'true');
  await page.keyboard.press('Escape');
  await page.screenshot({ path: `${SHOTS}/35-chips-by-kind.png` });

  await openNotebook(page, tmpPath, 'error.ipynb');
  await page.notebook.run();
  const fix = page.getByTestId('minicpm-fix-error');
  await expect(fix).toBeVisible();
  // 4. below the traceback, not over its first line
  const tb = await page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output.jp-MiniCPM-hasFix').first().locator('pre').boundingBox();
  const fb = await fix.boundingBox();
  expect(fb.y).toBeGreaterThanOrEqual(tb.y + tb.height - 1);
  await expect(fix.locator('svg')).toHaveCount(1);
  await page.screenshot({ path: `${SHOTS}/36-fix-button.png` });
  // 6. one-click actions put their chips and prompt up for review; nothing is sent yet
  await panel.getByTestId('minicpm-new').click();
  await fix.click();
  await expect(panel.getByTestId('minicpm-chip')).toHaveCount(2);
  await expect(panel.locator('[data-testid="minicpm-chip"][data-kind="error"]')).toContainText('error');
  await expect(panel.getByTestId('minicpm-input')).not.toHaveValue('');
  await expect(panel.getByTestId('minicpm-message')).toHaveCount(0);
  await page.screenshot({ path: `${SHOTS}/37-fix-review.png` });
});

test('Replace cell targets the cell the answer was about, and Undo puts it back', async ({ page, request, tmpPath }) => {
  await openNotebook(page, tmpPath, 'two_cells.ipynb');
  await putChat(request, 'chat-newuser-replace', 'Replace target', [
    {
      role: 'user',
      content: 'Make x 42',
      context: [{ kind: 'cell', label: 'cell #1', text: 'x = 21\nx', cellId: 'target' }],
      time: T0
    },
    { role: 'assistant', content: 'Here:\n\n```python\nx = 42\n```', finish_reason: 'stop', time: T0 + 1000 }
  ]);
  const panel = await openPanel(page);
  await openSavedChat(panel, 'Replace target');
  await page.notebook.selectCells(1); // the active cell is NOT the one the answer was about
  // its tooltip names the cell it will change
  await panel.getByTestId('minicpm-replace').hover();
  await expect(panel.getByTestId('minicpm-replace')).toHaveAttribute('title', /Replace cell #1 /);
  await panel.getByTestId('minicpm-replace').click();
  // the same diff as an agent proposal first; nothing changes before Accept
  const dialog = page.locator('.jp-Dialog');
  await expect(dialog.getByTestId('minicpm-replace-diff').locator('[data-op="+"]')).toHaveText(['+added: x = 42']);
  // (read from the editor's lines: the modal dialog is in the way of getCellTextInput's click)
  await expect(page.locator('.jp-NotebookPanel .jp-Cell').first().locator('.cm-line')).toHaveText(['x = 21', 'x']);
  await dialog.getByRole('button', { name: 'Accept' }).click();
  await expect.poll(() => page.notebook.getCellTextInput(0)).toBe('x = 42');
  expect(await page.notebook.getCellTextInput(1)).toBe('y = 2');
  // Undo under the code block (also offered in a notification)
  const undo = panel.getByTestId('minicpm-undo');
  await expect(undo).toBeVisible();
  await expect(undo.locator('..')).toContainText('Replaced cell #1');
  await page.screenshot({ path: `${SHOTS}/38-replace-undo.png` });
  await undo.click();
  await expect.poll(() => page.notebook.getCellTextInput(0)).toBe('x = 21\nx');
});
