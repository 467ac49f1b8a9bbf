/**
 * Agent mode against the stand-in model running inside the jupyter server (SmolLM2-135M through
 * llama.cpp, tool calls constrained by the grammar), not a scripted fake. The stand-in's edits
 * are poor, so this asserts the flow, not the text: every call is well-formed (no argument or
 * JSON errors come back); a diff is shown before any change; Accept applies exactly the call's
 * source; Undo restores the notebook. If the model only reads (or its call does not fit the
 * notebook), the turn must end cleanly with the notebook unchanged. Greedy (temperature 0) and
 * every request must call a tool (agentToolChoice "required"; with "first" the stand-in reads
 * cell 1 and then answers in words), so the turn ends at the step limit, 2.
 */
const { expect, test, galata } = require('@jupyterlab/galata');
const { cellSources: sources, openNotebook } = require('./helpers');

const ORIGINAL = ['a = 1', 'b = 2', 'c = 3', 'print(a + b + c)'];
// what validateCall answers for a call that is not well-formed (tools.ts)
const MALFORMED = /not valid JSON|unknown tool|unknown argument|missing argument|must be an integer|must be a string|must be one of|must be a JSON object|arguments missing/;

test.use({
  autoGoto: true,
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'jupyter-minicpm:plugin': { temperature: 0, maxTokens: 160, agentStepLimit: 2, agentToolChoice: 'required' }
  }
});

// two grammar-constrained requests of the real model on a loaded 2-core machine
test.describe.configure({ timeout: 600000 });

/** 'proposal' / 'run' (a card waits for the user), 'busy' (the model works) or 'done'. */
function turnState(panel) {
  return panel.evaluate(node => {
    const waiting = id => [...node.querySelectorAll(`[data-testid="${id}"]`)].some(c => !c.dataset.decision);
    if (waiting('minicpm-proposal')) {
      return 'proposal';
    }
    if (waiting('minicpm-run-request')) {
      return 'run';
    }
    return node.classList.contains('jp-mod-busy') ? 'busy' : 'done';
  });
}

/** The arguments of the latest call in the trace ("→ edit_cell({...})"), or null if cut. */
async function lastCallArgs(panel) {
  const text = (await panel.getByTestId('minicpm-agent-call').last().textContent()) || '';
  const m = /^→ \w+\(([\s\S]*)\)$/.exec(text);
  try {
    return m ? JSON.parse(m[1]) : null;
  } catch {
    return null;
  }
}

test('the stand-in in Agent mode: well-formed calls, a diff before any change, Accept, Undo', async ({ page, tmpPath }) => {
  await openNotebook(page, tmpPath, 'agent.ipynb');
  await page.locator('.lm-TabBar-tab[data-id="minicpm-chat"]').click();
  const panel = page.locator('#minicpm-chat');
  await expect(panel.getByTestId('minicpm-status')).toContainText('Ready', { timeout: 180000 });
  await panel.getByRole('button', { name: 'Agent', exact: true }).click();
  await panel.getByTestId('minicpm-input').fill('Call edit_cell on cell 1 with the source a = 10');
  await panel.getByTestId('minicpm-send').click();
  await expect(panel).toHaveClass(/jp-mod-busy/);

  let accepted = 0;
  for (;;) {
    await expect.poll(() => turnState(panel), { timeout: 540000, intervals: [1000] }).not.toBe('busy');
    const state = await turnState(panel);
    if (state === 'done') {
      break;
    }
    if (state === 'run') {
      // running is not what was asked: decline (and nothing may have run)
      await panel.getByTestId('minicpm-agent-skip').click();
      continue;
    }
    const card = panel.locator('[data-testid="minicpm-proposal"]:not([data-decision])').first();
    await expect(card.getByTestId('minicpm-diff')).toBeVisible();
    const before = await sources(page);
    if (!accepted) {
      expect(before).toEqual(ORIGINAL); // the diff is shown; the notebook has not changed
    }
    const tool = await card.getAttribute('data-tool');
    const args = await lastCallArgs(panel);
    await card.getByRole('button', { name: 'Accept', exact: true }).click();
    accepted++;
    const grow = { edit_cell: 0, insert_cell: 1, delete_cell: -1 }[tool];
    await expect.poll(async () => (await sources(page)).length).toBe(before.length + grow);
    if (tool === 'edit_cell' && args) {
      await expect.poll(async () => (await sources(page))[args.cell - 1]).toBe(args.source); // exactly it
    }
  }

  // every call the model made was well-formed for its schema (the grammar's job)
  const calls = await panel.getByTestId('minicpm-agent-call').count();
  expect(calls).toBe(2); // every request had to call a tool (no parallel calls on the local engine)
  await expect(panel.getByTestId('minicpm-agent-note').last()).toContainText('Stopped after 2 steps');
  for (const e of await panel.getByTestId('minicpm-agent-error').allTextContents()) {
    expect(e).not.toMatch(MALFORMED);
  }
  await expect(panel.getByTestId('minicpm-send')).toBeEnabled();
  const trace = await panel.locator('[data-testid^="minicpm-agent-"]:is(.jp-MiniCPM-agentTrace)').allTextContents();
  console.log(`stand-in turn: ${calls} call(s), ${accepted} accepted\n  ${trace.join('\n  ')}`);
  if (accepted) {
    await panel.getByRole('button', { name: 'Undo', exact: true }).click();
    await expect.poll(() => sources(page)).toEqual(ORIGINAL);
  } else {
    // it only read (or its call did not fit the notebook) and the turn ended cleanly
    await expect(panel.getByRole('button', { name: 'Undo', exact: true })).toHaveCount(0);
    expect(await sources(page)).toEqual(ORIGINAL);
  }
});
