/**
 * Galata (JupyterLab's Playwright) against a real jupyter server running minicpm_server with
 * the stand-in model. Debian's chromium (`apt-get install -y chromium`): Playwright's own browser
 * download does not work on these machines.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');
const { RUN, jupyterServer, pageUse } = require('./browser');

const port = process.env.MINICPM_UI_PORT || '8899';
// the hostile-output tests: a fake OpenAI server and a second jupyter server using it
const fakePort = process.env.MINICPM_UI_FAKE_PORT || '8898';
const remotePort = process.env.MINICPM_UI_REMOTE_PORT || '8897';
const command = 'jupyter lab --config jupyter_server_test_config.py';

module.exports = {
  ...baseConfig,
  ...RUN,
  testDir: './tests',
  testIgnore: ['**/notebook7.spec.js'], // Jupyter Notebook 7: notebook7.config.js
  outputDir: './test-results/artifacts',
  timeout: 120000,
  reporter: [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]],
  use: { ...baseConfig.use, ...pageUse(port) },
  webServer: [
    {
      command: `python servers/fake_openai.py --port ${fakePort}`,
      url: `http://127.0.0.1:${fakePort}/health`,
      timeout: 30000,
      reuseExistingServer: !process.env.CI
    },
    jupyterServer(command, port),
    jupyterServer(command, remotePort, {
      env: { MINICPM_UI_PORT: remotePort, MINICPM_UI_REMOTE_URL: `http://127.0.0.1:${fakePort}/v1` }
    })
  ]
};
