/**
 * Galata (JupyterLab's Playwright) against a real jupyter server running minicpm_server with
 * the stand-in model. Debian's chromium (`apt-get install -y chromium`): Playwright's own browser
 * download does not work on these machines.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const port = process.env.MINICPM_UI_PORT || '8899';
const token = process.env.MINICPM_UI_TOKEN || 'minicpm-ui-token';
// the hostile-output tests: a fake OpenAI server and a second jupyter server using it
const fakePort = process.env.MINICPM_UI_FAKE_PORT || '8898';
const remotePort = process.env.MINICPM_UI_REMOTE_PORT || '8897';
const reuse = !process.env.CI;

module.exports = {
  ...baseConfig,
  testDir: './tests',
  testIgnore: ['**/notebook7.spec.js'], // Jupyter Notebook 7: notebook7.config.js
  outputDir: './test-results/artifacts',
  timeout: 120000,
  expect: { timeout: 30000 },
  retries: 0,
  workers: 1,
  reporter: [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]],
  use: {
    ...baseConfig.use,
    baseURL: `http://localhost:${port}`,
    extraHTTPHeaders: { Authorization: `token ${token}` },
    video: 'off',
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    viewport: { width: 1400, height: 900 },
    launchOptions: {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic'
      ]
    }
  },
  webServer: [
    {
      command: `python servers/fake_openai.py --port ${fakePort}`,
      url: `http://127.0.0.1:${fakePort}/health`,
      timeout: 30000,
      reuseExistingServer: reuse
    },
    {
      command: 'jupyter lab --config jupyter_server_test_config.py',
      url: `http://localhost:${port}/minicpm/status?token=${token}`,
      timeout: 180000,
      reuseExistingServer: reuse
    },
    {
      command: 'jupyter lab --config jupyter_server_test_config.py',
      env: {
        MINICPM_UI_PORT: remotePort,
        MINICPM_UI_REMOTE_URL: `http://127.0.0.1:${fakePort}/v1`
      },
      url: `http://localhost:${remotePort}/minicpm/status?token=${token}`,
      timeout: 180000,
      reuseExistingServer: reuse
    }
  ]
};
