#!/usr/bin/env bash
# The package as a user installs it. From a clean checkout of the committed tree:
#   1. `python -m build` gives an sdist and a wheel (the wheel built from the sdist, in pip's
#      isolated environment: jupyterlab in [build-system] requires provides jlpm);
#   2. the wheel holds the prebuilt labextension;
#   3. it installs into a fresh venv with NO Node.js on PATH (llama-cpp-python from the wheel
#      cache setup.sh keeps, so nothing compiles; no torch);
#   4. `jupyter labextension list` / `jupyter server extension list` show it enabled, and a
#      started `jupyter lab` answers /minicpm/status and lists the extension in /lab.
#
#   bash scripts/check-package.sh        # about 3-4 min warm (pip and yarn caches)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/minicpm-pkg.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
t0=$(date +%s)
step() { echo "== [check-package $(( $(date +%s) - t0 ))s] $*"; }
fail() { echo "check-package: FAILED: $*" >&2; exit 1; }

step "clean checkout of HEAD"
git clone -q --no-hardlinks "$ROOT" "$WORK/src"

step "python -m build (sdist, then the wheel from the sdist)"
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q build
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$WORK/src" > "$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; fail "python -m build"; }
SDIST=$(ls "$WORK"/dist/*.tar.gz) || fail "no sdist"
tar -tzf "$SDIST" > "$WORK/sdist.txt"  # (not piped into grep -q: pipefail + SIGPIPE)
grep -q "extension/minicpm_server/labextension/package.json" "$WORK/sdist.txt" \
  || fail "the sdist lacks the prebuilt labextension"
WHEEL=$(ls "$WORK"/dist/*.whl) || fail "no wheel"
python3 - "$WHEEL" <<'PY' || fail "the wheel lacks the prebuilt labextension"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ("share/jupyter/labextensions/jupyter-minicpm/package.json",
        "share/jupyter/labextensions/jupyter-minicpm/install.json",
        "share/jupyter/labextensions/jupyter-minicpm/static/remoteEntry.",
        "etc/jupyter/jupyter_server_config.d/minicpm_server.json")
for n in need:
    if not any(n in x for x in names):
        sys.exit(f"missing {n}")
print(f"wheel: {len(names)} files, labextension included")
PY

step "fresh venv, no Node.js on PATH"
"$PY" -m venv "$WORK/venv"
mkdir -p "$WORK/bin"
for tool in sh bash env cat uname date tee grep rm tail ls mkdir sleep; do
  ln -s "$(command -v "$tool")" "$WORK/bin/$tool"
done
export PATH="$WORK/venv/bin:$WORK/bin"
export JUPYTER_CONFIG_DIR="$WORK/jupyter-config" JUPYTER_DATA_DIR="$WORK/jupyter-data"
export JUPYTER_PREFER_ENV_PATH=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if command -v node >/dev/null 2>&1; then fail "node is on PATH"; fi
links=()
for d in "${XDG_CACHE_HOME:-$HOME/.cache}"/jupyter-minicpm/wheels/*/; do
  [ -d "$d" ] && links+=(--find-links "$d")
done
pip install -q --only-binary :all: "${links[@]}" "$WHEEL" > "$WORK/install.log" 2>&1 \
  || { tail -30 "$WORK/install.log"; fail "pip install of the wheel"; }

step "extensions enabled"
jupyter labextension list 2>&1 | tee "$WORK/lab.txt" | grep -E "jupyter-minicpm v[0-9.]+ .*enabled.*OK" \
  || { cat "$WORK/lab.txt"; fail "labextension not enabled"; }
jupyter server extension list 2>&1 | tee "$WORK/srv.txt" | grep -E "minicpm_server .*enabled" \
  || { cat "$WORK/srv.txt"; fail "server extension not enabled"; }
grep -E "minicpm_server .*OK" "$WORK/srv.txt" || { cat "$WORK/srv.txt"; fail "server extension does not load"; }

step "jupyter lab answers /minicpm/status"
PORT=${CHECK_PACKAGE_PORT:-8877}
TOKEN=check-package-token
(cd "$WORK" && exec jupyter lab --no-browser --port "$PORT" --IdentityProvider.token="$TOKEN" \
   --ServerApp.allow_root=True --ServerApp.root_dir="$WORK" --LabApp.news_url=None \
   > "$WORK/server.log" 2>&1) &
SERVER_PID=$!
python - "$PORT" "$TOKEN" <<'PY' || { tail -30 "$WORK/server.log"; fail "the server did not answer"; }
import json, sys, time, urllib.request
port, token = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()
for _ in range(120):
    try:
        status = json.loads(get("/minicpm/status"))
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("no answer from /minicpm/status")
assert "state" in status, status
lab = get("/lab")
assert '"jupyter-minicpm"' in lab or "jupyter-minicpm" in lab, "the lab page does not list the extension"
print(f"/minicpm/status: state={status['state']}; /lab lists jupyter-minicpm")
PY
step "ok"
