/**
 * Plain Playwright (galata drives JupyterLab only) against a real Jupyter Notebook 7 server
 * running minicpm_server with the stand-in model: `jlpm playwright test -c notebook7.config.js`.
 */
const port = process.env.MINICPM_UI_NB_PORT || '8896';
const token = process.env.MINICPM_UI_TOKEN || 'minicpm-ui-token';

module.exports = {
  testDir: './tests',
  testMatch: 'notebook7.spec.js',
  outputDir: './test-results/notebook7',
  timeout: 240000,
  expect: { timeout: 30000 },
  retries: 0,
  workers: 1,
  reporter: [['list']],
  use: {
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
      command: 'jupyter notebook --config jupyter_notebook_test_config.py',
      url: `http://localhost:${port}/minicpm/status?token=${token}`,
      timeout: 180000,
      reuseExistingServer: !process.env.CI
    }
  ]
};
