/**
 * Galata (JupyterLab's Playwright) against a real jupyter server running minicpm_server with
 * the stand-in model. Debian's chromium (`apt-get install -y chromium`): Playwright's own browser
 * download does not work on these machines.
 */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

const port = process.env.MINICPM_UI_PORT || '8899';
const token = process.env.MINICPM_UI_TOKEN || 'minicpm-ui-token';

module.exports = {
  ...baseConfig,
  testDir: './tests',
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
  webServer: {
    command: 'jupyter lab --config jupyter_server_test_config.py',
    url: `http://localhost:${port}/minicpm/status?token=${token}`,
    timeout: 180000,
    reuseExistingServer: !process.env.CI
  }
};
