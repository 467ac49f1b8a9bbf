/**
 * The MiniCPM sidebar in a real JupyterLab, answered by minicpm_server with the stand-in model
 * (SmolLM2-135M-Instruct). A screenshot of each step goes to test-results/screenshots/.
 */
const { expect, test } = require('@jupyterlab/galata');
const { SHOTS, labOptions, openNotebook, openPanel, recordSocket } = require('./helpers');

test.use(labOptions({ temperature: 0, maxTokens: 160 }));

function lastAnswer(panel) {
  return panel.locator('[data-testid="minicpm-message"][data-role="assistant"]').last();
}

async function waitAnswer(panel, timeout = 90000) {
  const answer = lastAnswer(panel);
  await expect(answer).toBeVisible();
  await expect(answer).not.toHaveAttribute('aria-busy', 'true', { timeout });
  await expect(answer.getByTestId('minicpm-usage')).toContainText('tokens/s');
  return answer;
}

/**
 * The answer streams in, then Stop: on a busy machine the stand-in can take minutes for a whole
 * answer, and what these tests check is the request they sent.
 */
async function answerStarts(panel) {
  const answer = lastAnswer(panel);
  await expect(answer.locator('.jp-MiniCPM-body')).not.toBeEmpty({ timeout: 90000 });
  const stop = panel.getByTestId('minicpm-stop');
  if (await stop.isEnabled()) {
    await stop.click();
  }
  await expect(answer).not.toHaveAttribute('aria-busy', 'true', { timeout: 30000 });
  await expect(answer.getByTestId('minicpm-usage')).toContainText('tokens');
  return answer;
}

test('open the panel, ask, the answer streams in', async ({ page }) => {
  const rec = recordSocket(page, 'minicpm/chat');
  const panel = await openPanel(page);
  await expect(panel.getByTestId('minicpm-standin')).toBeVisible();
  await page.screenshot({ path: `${SHOTS}/01-panel-open.png` });

  await panel.getByTestId('minicpm-input').fill('What is the capital of France?');
  await page.screenshot({ path: `${SHOTS}/02-question-typed.png` });
  await panel.getByTestId('minicpm-send').click();
  await expect(panel.locator('[data-testid="minicpm-message"][data-role="user"]')).toContainText('capital of France');
  const answer = await waitAnswer(panel);
  await expect(answer.locator('.jp-MiniCPM-body')).not.toBeEmpty();
  await expect(answer.locator('.jp-RenderedMarkdown')).toBeVisible();
  await page.screenshot({ path: `${SHOTS}/03-answer.png` });

  const deltas = rec.received.filter(f => f.type === 'delta');
  expect(deltas.length).toBeGreaterThan(1); // streamed, not one block
  expect(rec.received.find(f => f.type === 'start').model).toContain('stand-in');
  expect(rec.received.some(f => f.type === 'done')).toBe(true);

  // the saved chat is listed
  await panel.getByTestId('minicpm-history').click();
  await expect(panel.locator('.jp-MiniCPM-historyRow').first()).toContainText('capital of France');
  await page.screenshot({ path: `${SHOTS}/04-saved-chats.png` });

  // keyboard: the shortcut focuses the input; New chat empties the conversation
  await page.locator('.jp-Launcher, .jp-LauncherBody').first().click();
  await page.keyboard.press('Alt+Shift+M');
  await expect(panel.getByTestId('minicpm-input')).toBeFocused();
  await panel.getByTestId('minicpm-new').click();
  await expect(panel.getByTestId('minicpm-message')).toHaveCount(0);
});

test('"Fix error" on a failing cell sends its traceback and gets an answer', async ({ page, tmpPath }) => {
  const rec = recordSocket(page, 'minicpm/chat');
  await openNotebook(page, tmpPath, 'error.ipynb');
  await page.notebook.run();
  const fix = page.getByTestId('minicpm-fix-error');
  await expect(fix).toBeVisible();
  await page.screenshot({ path: `${SHOTS}/05-error-cell.png` });
  await fix.click();

  // the chips wait in the input for review; Send sends them
  const panel = page.locator('#minicpm-chat');
  await expect(panel).toBeVisible();
  await expect(panel.getByTestId('minicpm-chip')).toHaveCount(2);
  await expect(panel.getByTestId('minicpm-input')).not.toHaveValue('');
  await panel.getByTestId('minicpm-send').click();
  const user = panel.locator('[data-testid="minicpm-message"][data-role="user"]').last();
  await expect(user.locator('.jp-MiniCPM-used')).toContainText('error');
  await answerStarts(panel);
  await page.screenshot({ path: `${SHOTS}/06-fix-error-answer.png` });

  const chat = rec.sent.find(f => f.type === 'chat');
  const err = chat.context.find(p => p.kind === 'error');
  expect(err.text).toContain('ZeroDivisionError');
  expect(err.text).not.toMatch(/\x1b\[/);
  expect(chat.context.find(p => p.kind === 'cell').text).toContain('def mean');
});

test('"Explain image" on a matplotlib output sends the image', async ({ page, tmpPath }) => {
  const rec = recordSocket(page, 'minicpm/chat');
  await openNotebook(page, tmpPath, 'figure.ipynb');
  await page.notebook.run();
  const img = page.locator('.jp-Notebook .jp-RenderedImage img').first();
  await expect(img).toBeVisible();
  await img.click({ button: 'right' });
  const item = page.getByRole('menuitem', { name: 'MiniCPM: Explain image' });
  await expect(item).toBeVisible();
  await page.screenshot({ path: `${SHOTS}/07-image-context-menu.png` });
  await item.click();

  const panel = page.locator('#minicpm-chat');
  // the code that drew the figure goes with it
  await expect(panel.locator('[data-testid="minicpm-chip"][data-kind="cell"]')).toHaveCount(1);
  await expect(panel.locator('[data-testid="minicpm-chip"][data-kind="image"]')).toHaveCount(1);
  // said before sending: the stand-in cannot see pixels
  await expect(panel.getByTestId('minicpm-vision-note')).toContainText('cannot see images');
  await panel.getByTestId('minicpm-send').click();
  await answerStarts(panel);
  await page.screenshot({ path: `${SHOTS}/08-explain-image-answer.png` });
  const chat = rec.sent.find(f => f.type === 'chat');
  const image = chat.context.find(p => p.kind === 'image');
  expect(chat.context.find(p => p.kind === 'cell').text).toContain('plt.');
  expect(image.mime).toBe('image/png');
  expect(image.data.length).toBeGreaterThan(1000);
  expect(Buffer.from(image.data, 'base64').subarray(1, 4).toString()).toBe('PNG');
});

test('a code block from an answer is inserted as a new cell', async ({ page, tmpPath }) => {
  await openNotebook(page, tmpPath, 'plain.ipynb');
  const panel = await openPanel(page);
  await panel
    .getByTestId('minicpm-input')
    .fill('Write Python code that prints hello world. Answer with one fenced python code block.');
  await panel.getByTestId('minicpm-input').press('Enter'); // keyboard send
  const answer = await waitAnswer(panel);
  const insert = answer.getByTestId('minicpm-insert').first();
  await expect(insert).toBeVisible();
  const code = (await answer.locator('.jp-MiniCPM-code pre').first().textContent()).replace(/\n$/, '');
  expect(await page.notebook.getCellCount()).toBe(1);
  await page.screenshot({ path: `${SHOTS}/09-code-answer.png` });
  await insert.click();
  await expect.poll(() => page.notebook.getCellCount()).toBe(2);
  expect((await page.notebook.getCellTextInput(1)).trim()).toBe(code.trim());
  await page.screenshot({ path: `${SHOTS}/10-code-inserted.png` });
});

test.describe('long answers', () => {
  test.use(labOptions({ temperature: 0.7, maxTokens: 2000 }));

  test('stop ends a long answer', async ({ page }) => {
    const rec = recordSocket(page, 'minicpm/chat');
    const panel = await openPanel(page);
    await panel
      .getByTestId('minicpm-input')
      .fill('Write a very long story about a dragon who learns Python. Use at least 1500 words.');
    await panel.getByTestId('minicpm-send').click();
    const answer = lastAnswer(panel);
    await expect.poll(() => rec.received.filter(f => f.type === 'delta').length).toBeGreaterThan(3);
    await expect(panel.getByTestId('minicpm-stop')).toBeEnabled();
    await page.screenshot({ path: `${SHOTS}/11-streaming-before-stop.png` });
    const t0 = Date.now();
    await panel.getByTestId('minicpm-stop').click();
    await expect(answer).not.toHaveAttribute('aria-busy', 'true', { timeout: 10000 });
    expect(Date.now() - t0).toBeLessThan(10000);
    await expect(answer.getByTestId('minicpm-usage')).toContainText('stopped');
    await expect(panel.getByTestId('minicpm-stop')).toBeDisabled();
    const done = rec.received.find(f => f.type === 'done');
    expect(done.finish_reason).toBe('cancelled');
    expect(done.usage.completion_tokens).toBeLessThan(2000);
    await page.screenshot({ path: `${SHOTS}/12-stopped.png` });
  });
});
