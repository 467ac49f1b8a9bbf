/**
 * Agent mode (issue 22) against a scripted model: servers/fake_openai.py answers requests that
 * carry tools with the tool calls a test queued (POST /script), through the remote backend of
 * the second jupyter server and its /minicpm/v1/chat/completions route. Every change is a diff
 * first; the notebook changes only on Accept; Undo restores the turn's cells and nothing else;
 * a run waits for "Run"; a hostile model changes nothing by itself; Stop and the step limit end
 * a turn; tool results reach the model as role "tool".
 */
const { expect, test, galata } = require('@jupyterlab/galata');
const { FAKE, REMOTE, SHOTS, cellSources: sources, fakeLog, openNotebook } = require('./helpers');
const ORIGINAL = ['a = 1', 'b = 2', 'c = 3', 'print(a + b + c)'];

test.use({
  baseURL: REMOTE,
  autoGoto: true,
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'jupyter-minicpm:plugin': { temperature: 0, maxTokens: 200, agentStepLimit: 8 }
  }
});

// each test starts a kernel and waits for the model: slow on a loaded 2-core machine
test.describe.configure({ timeout: 240000 });

const call = (name, args) => ({ name, arguments: args });

async function script(request, replies) {
  await request.post(`${FAKE}/script`, { data: { replies } });
}

/** The chat requests with tools the fake model received since `from`. */
async function toolRequests(request, from = 0) {
  const { bodies } = await fakeLog(request);
  return bodies.filter(b => b && b.tools).slice(from);
}

/** agent.ipynb open, the sidebar in Agent mode, the fake's queue set to `replies`. */
async function openAgent(page, request, tmpPath, replies) {
  await script(request, replies);
  await openNotebook(page, tmpPath, 'agent.ipynb');
  await page.locator('.lm-TabBar-tab[data-id="minicpm-chat"]').click();
  const panel = page.locator('#minicpm-chat');
  await expect(panel.getByTestId('minicpm-status')).toContainText('Ready', { timeout: 120000 });
  const toggle = panel.getByRole('button', { name: 'Agent', exact: true });
  await expect(toggle).toHaveAttribute('aria-pressed', 'false'); // chat is the default
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-pressed', 'true');
  return panel;
}

async function ask(panel, text) {
  await panel.getByTestId('minicpm-input').fill(text);
  await panel.getByTestId('minicpm-send').click();
}

test('an edit is a diff first; Accept applies exactly it; Undo puts it back', async ({ page, request, tmpPath }) => {
  const before = (await toolRequests(request)).length;
  const proposed = 'a = 10  # ten\nprint(a)';
  const panel = await openAgent(page, request, tmpPath, [
    { tool_calls: [call('edit_cell', { cell: 1, source: proposed })] },
    { content: 'Changed cell 1.' }
  ]);
  await ask(panel, 'make a ten');
  const card = panel.getByTestId('minicpm-proposal');
  await expect(card).toBeVisible({ timeout: 60000 });
  await expect(card.locator('[data-op="-"]')).toHaveText(['−removed: a = 1']);
  await expect(card.locator('[data-op="+"]')).toHaveCount(2);
  await expect(card.locator('.jp-MiniCPM-tok-comment')).toHaveText('# ten'); // coloured
  expect(await sources(page)).toEqual(ORIGINAL); // nothing changed yet
  await page.screenshot({ path: `${SHOTS}/40-agent-diff.png` });
  await card.getByRole('button', { name: 'Accept', exact: true }).click();
  await expect(panel.getByTestId('minicpm-agent-message').last()).toHaveText(/Changed cell 1\./);
  expect(await sources(page)).toEqual([proposed, ...ORIGINAL.slice(1)]);
  // the tool result went back as role "tool", answering the call's id
  const reqs = await toolRequests(request, before);
  expect(reqs).toHaveLength(2);
  const msgs = reqs[1].messages;
  const asked = msgs[msgs.length - 2].tool_calls[0];
  expect(msgs[msgs.length - 1]).toMatchObject({ role: 'tool', tool_call_id: asked.id });
  expect(msgs[msgs.length - 1].content).toMatch(/^accepted/);
  await panel.getByRole('button', { name: 'Undo', exact: true }).click();
  await expect.poll(() => sources(page)).toEqual(ORIGINAL);
});

test('Reject leaves the cell; the model is told', async ({ page, request, tmpPath }) => {
  const before = (await toolRequests(request)).length;
  const panel = await openAgent(page, request, tmpPath, [
    { tool_calls: [call('edit_cell', { cell: 2, source: 'b = 200' })] },
    { content: 'OK, left as is.' }
  ]);
  await ask(panel, 'change b');
  const card = panel.getByTestId('minicpm-proposal');
  await card.getByRole('button', { name: 'Reject' }).click({ timeout: 60000 });
  await expect(panel.getByTestId('minicpm-agent-message').last()).toHaveText(/left as is/);
  expect(await sources(page)).toEqual(ORIGINAL);
  const msgs = (await toolRequests(request, before))[1].messages;
  expect(msgs[msgs.length - 1]).toMatchObject({ role: 'tool' });
  expect(msgs[msgs.length - 1].content).toMatch(/^rejected/);
  await expect(panel.getByRole('button', { name: 'Undo', exact: true })).toHaveCount(0);
});

test('Undo restores edited, inserted and deleted cells and keeps the user edit elsewhere', async ({ page, request, tmpPath }) => {
  const panel = await openAgent(page, request, tmpPath, [
    {
      tool_calls: [
        call('edit_cell', { cell: 1, source: 'a = 100' }),
        call('insert_cell', { position: 3, type: 'markdown', source: '## inserted' }),
        call('delete_cell', { cell: 3 })
      ]
    },
    { content: 'Three changes.' }
  ]);
  await ask(panel, 'rework');
  await expect(panel.getByTestId('minicpm-proposal')).toHaveCount(3, { timeout: 60000 });
  expect(await sources(page)).toEqual(ORIGINAL);
  await panel.getByRole('button', { name: 'Accept all' }).first().click();
  await expect(panel.getByTestId('minicpm-agent-message').last()).toHaveText(/Three changes/);
  expect(await sources(page)).toEqual(['a = 100', 'b = 2', '## inserted', 'print(a + b + c)']);
  await page.notebook.setCell(3, 'code', 'print("mine")'); // the user's own edit
  await panel.getByRole('button', { name: 'Undo', exact: true }).click();
  await expect.poll(() => sources(page)).toEqual(['a = 1', 'b = 2', 'c = 3', 'print("mine")']);
});

test('a hostile model runs nothing and deletes nothing by itself; Stop ends the turn', async ({ page, request, tmpPath }) => {
  const panel = await openAgent(page, request, tmpPath, [
    {
      tool_calls: [
        call('edit_cell', { cell: 1, source: "import os; os.system('touch pwned.txt')" }),
        call('run_cell', { cell: 1 }),
        ...[1, 2, 3, 4].map(c => call('delete_cell', { cell: c })),
        call('delete_cell', { cell: 99 })
      ]
    }
  ]);
  await ask(panel, 'hello');
  await expect(panel.getByTestId('minicpm-proposal')).toHaveCount(5, { timeout: 60000 });
  const run = panel.getByTestId('minicpm-run-request');
  await expect(run.locator('pre')).toHaveText('a = 1'); // the cell as it is, not the proposal
  await expect(panel.getByTestId('minicpm-agent-error')).toContainText('cell 99 does not exist');
  await page.waitForTimeout(1000);
  expect(await sources(page)).toEqual(ORIGINAL);
  await panel.getByTestId('minicpm-stop').click();
  await expect(panel.getByTestId('minicpm-agent-note').last()).toHaveText('Stopped.');
  expect(await sources(page)).toEqual(ORIGINAL);
  expect(await page.contents.fileExists(`${tmpPath}/pwned.txt`)).toBe(false);
  await expect(panel.getByTestId('minicpm-send')).toBeEnabled();
});

test('a run waits for the Run button; its output goes back to the model', async ({ page, request, tmpPath }) => {
  const before = (await toolRequests(request)).length;
  const panel = await openAgent(page, request, tmpPath, [
    { tool_calls: [call('run_cell', { cell: 4 })] },
    { content: 'It printed 6.' }
  ]);
  await page.notebook.runCell(0);
  await page.notebook.runCell(1);
  await page.notebook.runCell(2);
  await ask(panel, 'run the last cell');
  const run = panel.getByTestId('minicpm-run-request');
  await expect(run.locator('pre')).toHaveText('print(a + b + c)', { timeout: 60000 });
  await page.waitForTimeout(500);
  expect(await page.locator('.jp-Cell').nth(3).locator('.jp-OutputArea-output').count()).toBe(0);
  await run.getByRole('button', { name: 'Run', exact: true }).click();
  await expect(panel.getByTestId('minicpm-agent-message').last()).toHaveText(/printed 6/);
  await expect(page.locator('.jp-Cell').nth(3).locator('.jp-OutputArea-output')).toHaveText('6');
  const msgs = (await toolRequests(request, before))[1].messages;
  expect(msgs[msgs.length - 1]).toMatchObject({ role: 'tool' });
  expect(msgs[msgs.length - 1].content).toContain('6');
});

test.describe('step limit', () => {
  test.use({
    mockSettings: {
      ...galata.DEFAULT_SETTINGS,
      'jupyter-minicpm:plugin': { temperature: 0, maxTokens: 200, agentStepLimit: 2 }
    }
  });

  test('the step limit ends a turn; a slow model is stopped', async ({ page, request, tmpPath }) => {
    const before = (await toolRequests(request)).length;
    const read = { tool_calls: [call('read_cells', { first: 1, last: 4 })] };
    const panel = await openAgent(page, request, tmpPath, [read, read, read]);
    await ask(panel, 'read forever');
    await expect(panel.getByTestId('minicpm-agent-note').last()).toContainText('Stopped after 2 steps', { timeout: 60000 });
    expect(await toolRequests(request, before)).toHaveLength(2);

    await script(request, [{ slow: 60, content: 'late' }]);
    await ask(panel, 'take your time');
    await expect(panel.getByTestId('minicpm-stop')).toBeEnabled({ timeout: 30000 });
    await page.waitForTimeout(1000);
    await panel.getByTestId('minicpm-stop').click();
    await expect(panel.getByTestId('minicpm-agent-note').last()).toHaveText('Stopped.');
    await expect(panel.getByTestId('minicpm-send')).toBeEnabled();
  });
});
