/**
 * Plain Playwright (galata drives JupyterLab only) against a real Jupyter Notebook 7 server
 * running minicpm_server with the stand-in model: `jlpm playwright test -c notebook7.config.js`.
 */
const galata = require('./playwright.config');

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
    // the same Chromium and flags as the galata tests
    launchOptions: galata.use.launchOptions
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
