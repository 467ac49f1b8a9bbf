#!/usr/bin/env bash
# Build the JupyterLab sidebar (labextension/) and install the build into the active
# environment, laid out as the wheel does. Skips the build when it is newer than every source
# file; FORCE=1 rebuilds. Needs Node.js >= 20 and jlpm (from jupyterlab, in the venv).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=extension/minicpm_server/labextension
stamp="$OUT/static/style.js"
if [ -z "${FORCE:-}" ] && [ -f "$stamp" ] && [ -d node_modules ] && \
   [ -z "$(find labextension/src labextension/style labextension/schema labextension/package.json \
            package.json yarn.lock -newer "$stamp" -print -quit 2>/dev/null)" ]; then
  echo "labextension: build is up to date" >&2
else
  # one install at the workspace root (package.json) serves labextension/ and tests/ui/
  jlpm install --immutable
  (cd labextension && jlpm build:prod)
fi

# An editable install copies shared data into the environment only once: put the build there.
DEST="$(python -c 'import sys; print(sys.prefix)')/share/jupyter/labextensions/jupyter-minicpm"
rm -rf "$DEST" && mkdir -p "$(dirname "$DEST")"
cp -r "$OUT" "$DEST"
cp labextension/install.json "$DEST/"
