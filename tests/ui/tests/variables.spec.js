/**
 * Kernel variables as context, against the second jupyter server whose remote backend
 * is servers/fake_openai.py (it keeps every request body: what the model was asked). A notebook
 * with a pandas DataFrame `df` runs; `@d` in the sidebar completes to `@df` from the kernel's
 * variables, the `@df` chip shows its token count, and the prompt the model received holds the
 * DataFrame's column names. The kernel's execution count is unchanged by the silent requests.
 * "Explain cell" on a cell reading df adds `variable df` and the cell defining it; the
 * DataFrame output's context menu has "Explain this DataFrame".
 */
const { expect, test } = require('@jupyterlab/galata');
const { REMOTE, SHOTS, fakeLog, labOptions, openNotebook, openPanel } = require('./helpers');

const COLUMNS = ['region_code', 'revenue_eur', 'units_sold'];

test.use(labOptions({ temperature: 0, maxTokens: 100 }, { baseURL: REMOTE }));

async function bodies(request) {
  return (await fakeLog(request)).bodies;
}

/** dataframe.ipynb run (df shown as a table) and the sidebar ready; the notebook's cells. */
async function runDataFrameNotebook(page, tmpPath) {
  await openNotebook(page, tmpPath, 'dataframe.ipynb');
  await page.notebook.run();
  const cells = page.locator('.jp-Notebook .jp-Cell');
  await expect(cells.nth(1).locator('.jp-InputPrompt')).toContainText('[2]');
  return { cells, panel: await openPanel(page) };
}

test('@df completes from the kernel, becomes a chip, and its columns reach the model', async ({ page, request, tmpPath }) => {
  const { cells, panel } = await runDataFrameNotebook(page, tmpPath);
  await expect(page.locator('.jp-Notebook table.dataframe')).toBeVisible();

  // completion from the kernel's variables
  const input = panel.getByTestId('minicpm-input');
  await input.click();
  await input.pressSequentially('What columns does @d');
  const option = panel.getByTestId('minicpm-mention-option').filter({ hasText: 'df' });
  await expect(option.first()).toBeVisible();
  await expect(option.first()).toContainText('DataFrame');
  await page.keyboard.press('Enter'); // picks the completion, does not send
  await expect(input).toHaveValue('What columns does @df ');
  await input.pressSequentially('have?');

  // the chip: @df with its token count, the total in the budget line
  const chip = panel.locator('[data-testid="minicpm-chip"]', { hasText: '@df' });
  await expect(chip).toHaveCount(1);
  await expect(chip.getByTestId('minicpm-chip-tokens')).toContainText(/\d+ tokens/);
  await expect(chip).toHaveAttribute('title', /revenue_eur/);
  await expect(panel.getByTestId('minicpm-budget')).toContainText(/Context ≈ \d+ tokens of \d+/);
  await page.screenshot({ path: `${SHOTS}/50-variables-chip.png` });

  const before = (await bodies(request)).length;
  await panel.getByTestId('minicpm-send').click();
  const answer = panel.locator('[data-testid="minicpm-message"][data-role="assistant"]').last();
  await expect(answer).toContainText('HOSTILE-ANSWER ends', { timeout: 60000 });
  const sent = (await bodies(request)).slice(before);
  expect(sent.length).toBeGreaterThan(0);
  const prompt = JSON.stringify(sent[sent.length - 1]);
  for (const col of COLUMNS) {
    expect(prompt).toContain(col);
  }
  expect(prompt).toContain('What columns does @df have?');

  // the silent requests left the execution count alone: the next run is [3]
  await page.notebook.runCell(1);
  await expect(cells.nth(1).locator('.jp-InputPrompt')).toContainText('[3]');

  // "Explain cell" on the cell reading df: the variable and the cell defining it
  await panel.getByTestId('minicpm-new').click();
  await cells.nth(1).locator('.jp-InputArea-editor').click({ button: 'right' });
  await page.getByRole('menuitem', { name: 'MiniCPM: Explain cell' }).click();
  await expect(panel.locator('[data-testid="minicpm-chip"]', { hasText: 'variable df' })).toHaveCount(1);
  await expect(panel.locator('[data-testid="minicpm-chip"]', { hasText: 'defines df' })).toHaveCount(1);
  await page.screenshot({ path: `${SHOTS}/51-variables-explain-cell.png` });

  // "Explain this DataFrame" on the table output
  await panel.getByTestId('minicpm-new').click();
  await page.locator('.jp-Notebook table.dataframe td').first().click({ button: 'right' });
  await page.getByRole('menuitem', { name: 'MiniCPM: Explain this DataFrame' }).click();
  await expect(panel.locator('[data-testid="minicpm-chip"]', { hasText: '@df' })).toHaveCount(1);
  await expect(input).toHaveValue(/Explain this DataFrame/);
  await page.screenshot({ path: `${SHOTS}/52-variables-dataframe.png` });
});

test.describe('with autoVariables off', () => {
  test.use(labOptions({ temperature: 0, maxTokens: 100, autoVariables: false }));

  test('Explain cell sends the cell alone; @df still works', async ({ page, tmpPath }) => {
    const { cells, panel } = await runDataFrameNotebook(page, tmpPath);

    await cells.nth(1).locator('.jp-InputArea-editor').click({ button: 'right' });
    await page.getByRole('menuitem', { name: 'MiniCPM: Explain cell' }).click();
    const chips = panel.getByTestId('minicpm-chip');
    await expect(chips.first()).toContainText('cell [2] code');
    await expect(panel.getByTestId('minicpm-input')).not.toHaveValue('');
    await expect(chips.filter({ hasText: 'variable' })).toHaveCount(0);
    await expect(chips.filter({ hasText: 'defines' })).toHaveCount(0);

    const input = panel.getByTestId('minicpm-input');
    await input.fill('');
    await input.pressSequentially('What is in @df');
    await expect(chips.filter({ hasText: '@df' })).toHaveCount(1);
  });
});
