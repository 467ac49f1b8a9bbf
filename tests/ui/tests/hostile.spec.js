/**
 * Untrusted model output must stay inert: a hostile OpenAI-compatible server on loopback
 * (servers/fake_openai.py) is the remote backend of a second jupyter server (port 8897). Every
 * answer carries an <img onerror>, a <script>, an SVG <image href>, a Markdown image, javascript:
 * links, command-linker attributes and a hidden span in a raw <pre>. In the sidebar (live and
 * reopened) and in a notebook's `%minicpm` output: no payload runs (window.__minicpmPwned stays
 * unset), nothing is fetched from the fake server's /leak path, no javascript: link or
 * command-linker attribute is on the page, and the code actions act on the Markdown source.
 */
const { expect, test } = require('@jupyterlab/galata');
const { REMOTE, SHOTS, fakeLog, labOptions, openNotebook, openPanel } = require('./helpers');

test.use(labOptions({ temperature: 0, maxTokens: 400 }, { baseURL: REMOTE }));

async function leaks(request) {
  const { requests } = await fakeLog(request);
  return { all: requests, leak: requests.filter(p => p.startsWith('/leak')) };
}

/** Reload the page (galata's reload waits for a Launcher tab, which a restored notebook hides). */
async function reloadLab(page) {
  await page.evaluate(() => window.location.reload());
  await page.waitForSelector('#jupyterlab-splash', { state: 'detached', timeout: 60000 });
  await page.waitForSelector('.lm-TabBar-tab[data-id="minicpm-chat"]');
  if (!(await page.locator('#minicpm-chat').isVisible())) {
    await page.locator('.lm-TabBar-tab[data-id="minicpm-chat"]').click();
  }
}

async function pwned(page) {
  return page.evaluate(() => window.__minicpmPwned ?? null);
}

/** What must hold on the whole page after hostile output was shown. */
async function expectNothingRan(page, request, where) {
  // give any image load / onerror a moment to happen (they would be immediate on loopback)
  await page.waitForTimeout(1500);
  expect(await pwned(page), `a payload ran in ${where}`).toBeNull();
  expect((await leaks(request)).leak, `fetched the leak path from ${where}`).toEqual([]);
  expect(await page.locator('a[href^="javascript:" i]').count()).toBe(0);
  expect(await page.locator('#minicpm-chat [data-commandlinker-command]').count()).toBe(0);
  expect(await page.locator('.jp-OutputArea [data-commandlinker-command]').count()).toBe(0);
  expect(await page.locator('#minicpm-chat img, .jp-OutputArea-output img[src^="http"]').count()).toBe(0);
}

test('the sidebar shows hostile answers as inert text, live and reopened', async ({ page, request, tmpPath }) => {
  const before = (await leaks(request)).all.length;
  await openNotebook(page, tmpPath, 'plain.ipynb');
  const panel = await openPanel(page);
  // the picker names the remote model (it is not in the catalogue)
  await expect(panel.getByTestId('minicpm-model').locator('option:checked')).toHaveText('hostile-model');

  await panel.getByTestId('minicpm-input').fill('Say something');
  await panel.getByTestId('minicpm-send').click();
  const answer = panel.locator('[data-testid="minicpm-message"][data-role="assistant"]').last();
  await expect(answer).toContainText('HOSTILE-ANSWER ends', { timeout: 60000 });
  await expect(answer).not.toHaveAttribute('aria-busy', 'true');
  expect((await leaks(request)).all.length).toBeGreaterThan(before); // the fake server answered
  await page.screenshot({ path: `${SHOTS}/20-hostile-sidebar.png` });

  const body = answer.locator('.jp-MiniCPM-body');
  // Markdown still renders: the table and the highlighted code block
  await expect(body.locator('table td').first()).toHaveText('1');
  // images become text with their URL, and links to javascript: are plain text
  await expect(body).toContainText('[image: x] http://127.0.0.1');
  await expect(body).toContainText('click me');
  await expect(body.locator('a')).toHaveCount(0);
  await expect(body.locator('script, img, svg image, iframe, [onerror], [onload]')).toHaveCount(0);
  // one code toolbar: the fenced block; the raw <pre> with a hidden span gets none
  await expect(body.locator('.jp-MiniCPM-code')).toHaveCount(1);
  await expectNothingRan(page, request, 'the live sidebar');

  // Insert & run's neighbour, Insert below, takes the source's code, not the page's text
  await answer.getByTestId('minicpm-insert').click();
  await expect.poll(() => page.notebook.getCellCount()).toBe(2);
  expect((await page.notebook.getCellTextInput(1)).trim()).toBe('print("safe code")');

  // reopen the saved chat after a reload: rendered again through the same rules
  await reloadLab(page);
  const reopened = page.locator('#minicpm-chat [data-testid="minicpm-message"][data-role="assistant"]').last();
  await expect(reopened).toContainText('HOSTILE-ANSWER ends', { timeout: 30000 });
  await page.screenshot({ path: `${SHOTS}/21-hostile-reopened.png` });
  await expectNothingRan(page, request, 'the reopened chat');
});

test('%minicpm output in a notebook shows hostile answers as inert text', async ({ page, request, tmpPath }) => {
  await openNotebook(page, tmpPath, 'hostile.ipynb');
  await page.notebook.run();
  const out = page.locator('.jp-Notebook .jp-Cell').nth(1).locator('.jp-OutputArea');
  await expect(out).toContainText('HOSTILE-ANSWER ends', { timeout: 90000 });
  await page.screenshot({ path: `${SHOTS}/22-hostile-magic.png` });
  await expect(out.locator('.jp-OutputArea-output').locator('script, img, svg image, iframe, [onerror], [onload]')).toHaveCount(0);
  await expectNothingRan(page, request, 'the %minicpm output');
});
