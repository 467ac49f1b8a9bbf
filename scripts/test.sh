#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: set-up, lint, Python tests, browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
. .venv/bin/activate

ruff check src extension kernel_ext tests bench

set +e
python -m pytest tests --ignore=tests/ui -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || exit "$rc"

[ -n "${SKIP_PACKAGE_CHECK:-}" ] || bash scripts/check-package.sh  # wheel → fresh venv, no Node.js

if [ -f scripts/ui-tests.sh ] && [ -z "${SKIP_UI_TESTS:-}" ]; then
  bash scripts/ui-tests.sh
fi
