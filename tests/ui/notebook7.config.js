/**
 * Plain Playwright (galata drives JupyterLab only) against a real Jupyter Notebook 7 server
 * running minicpm_server with the stand-in model: `jlpm playwright test -c notebook7.config.js`.
 */
const { RUN, jupyterServer, pageUse } = require('./browser');

const port = process.env.MINICPM_UI_NB_PORT || '8896';

module.exports = {
  ...RUN,
  testDir: './tests',
  testMatch: 'notebook7.spec.js',
  outputDir: './test-results/notebook7',
  timeout: 240000,
  reporter: [['list']],
  use: pageUse(port),
  webServer: [jupyterServer('jupyter notebook --config jupyter_notebook_test_config.py', port)]
};
