/**
 * What both browser configs (playwright.config.js: galata in JupyterLab; notebook7.config.js:
 * plain Playwright in Notebook 7) share: the test servers' token, the page settings, Debian's
 * Chromium with its flags (Playwright's own browser download does not work on these machines),
 * and how a jupyter server with minicpm_server is started and waited for.
 */
const token = process.env.MINICPM_UI_TOKEN || 'minicpm-ui-token';

/** Playwright `use` for a page on the jupyter server at `port`. */
function pageUse(port) {
  return {
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
  };
}

/** A `webServer` entry: `command` serves on `port`, ready once minicpm_server answers status. */
function jupyterServer(command, port, more = {}) {
  return {
    command,
    url: `http://localhost:${port}/minicpm/status?token=${token}`,
    timeout: 180000,
    reuseExistingServer: !process.env.CI,
    ...more
  };
}

/** Run settings both configs use: one worker, no retries, a patient expect. */
const RUN = { expect: { timeout: 30000 }, retries: 0, workers: 1 };

module.exports = { RUN, jupyterServer, pageUse, token };
