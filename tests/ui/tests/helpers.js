/**
 * What the browser specs share: where screenshots and notebooks are, the second server's and the
 * fake model's addresses, galata options with our settings, recording a socket's frames, opening
 * the sidebar and a notebook. Not a spec (Playwright runs only *.spec.js).
 */
const path = require('path');
const { expect, galata } = require('@jupyterlab/galata');

const SHOTS = path.resolve(__dirname, '..', 'test-results', 'screenshots');
const NOTEBOOKS = path.resolve(__dirname, '..', 'notebooks');
/** servers/fake_openai.py, and the jupyter server whose remote backend it is */
const FAKE = `http://127.0.0.1:${process.env.MINICPM_UI_FAKE_PORT || '8898'}`;
const REMOTE = `http://localhost:${process.env.MINICPM_UI_REMOTE_PORT || '8897'}`;

/** galata options for `test.use`: JupyterLab opened for each test, `settings` for `plugin`. */
function labOptions(settings, { plugin = 'jupyter-minicpm:plugin', ...more } = {}) {
  return {
    autoGoto: true,
    mockSettings: { ...galata.DEFAULT_SETTINGS, [plugin]: settings },
    ...more
  };
}

/** Record the frames the page sends and receives on the socket whose URL holds `route`. */
function recordSocket(page, route) {
  const rec = { sent: [], received: [] };
  page.on('websocket', ws => {
    if (!ws.url().includes(route)) {
      return;
    }
    ws.on('framesent', f => rec.sent.push(JSON.parse(f.payload)));
    ws.on('framereceived', f => rec.received.push(JSON.parse(f.payload)));
  });
  return rec;
}

/** Open the sidebar and wait until its model is ready. */
async function openPanel(page) {
  await page.locator('.lm-TabBar-tab[data-id="minicpm-chat"]').click();
  const panel = page.locator('#minicpm-chat');
  await expect(panel).toBeVisible();
  await expect(panel.getByTestId('minicpm-status')).toContainText('Ready', { timeout: 120000 });
  return panel;
}

/** Upload notebooks/`name` (typing cells breaks on auto-indent) and open it. */
async function openNotebook(page, tmpPath, name) {
  await page.contents.uploadFile(path.join(NOTEBOOKS, name), `${tmpPath}/${name}`);
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
}

/** What the fake model server logged: `requests` (paths) and `bodies` (what the model was asked). */
async function fakeLog(request) {
  const r = await request.get(`${FAKE}/log`);
  return r.json();
}

/** Every cell's source, in order. */
async function cellSources(page) {
  const n = await page.notebook.getCellCount();
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push(await page.notebook.getCellTextInput(i));
  }
  return out;
}

module.exports = {
  FAKE, NOTEBOOKS, REMOTE, SHOTS, cellSources, fakeLog, labOptions, openNotebook, openPanel, recordSocket
};
