#!/usr/bin/env bash
# Build the development environment: Python venv with the project and its dev tools,
# buf from npm, and the generated protobuf code. Re-running it is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }
PYTHON=${PYTHON:-python3}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  log "installing python3"; apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-dev >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PYTHON" -m venv .venv || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && "$PYTHON" -m venv .venv; }
fi

# pip, without the machine's notes about its file:// indexes; pip's own exit status.
pip_quiet() {
  local out; out=$(mktemp)
  if .venv/bin/python -m pip "$@" >"$out" 2>&1; then status=0; else status=$?; fi
  grep -v "^WARNING: Location" "$out" >&2 || true
  rm -f "$out"; return "$status"
}

# Reinstall only when the lock or the project's metadata changed.
stamp=.venv/.penpay-deps
want=$(cat requirements-dev.lock pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python dependencies (requirements-dev.lock)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  # Exactly the locked versions, checked by hash; then the project itself, editable, built by the
  # setuptools of the lock. The editable finder maps `penpay` to ./penpay, so the protobuf modules
  # generated below into penpay/<svc>/v1 import without the repository root on sys.path.
  pip_quiet install -q --require-hashes -r requirements-dev.lock
  pip_quiet install -q --no-deps --no-build-isolation -e .
  .venv/bin/python -c "import penpay" || { log "the project did not install"; exit 1; }
  echo "$want" > "$stamp"
fi

# Every package of package.json present (buf, and the console's browser assets)?
node_ok=1
for pkg in $(node -e 'console.log(Object.keys(require("./package.json").devDependencies).join(" "))' 2>/dev/null || echo missing); do
  [ -f "node_modules/$pkg/package.json" ] || node_ok=0
done
if [ "$node_ok" = 0 ] || [ ! -x node_modules/.bin/buf ]; then
  command -v npm >/dev/null 2>&1 || { log "installing npm"; apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
  log "installing buf, htmx, Swagger UI and axe-core from npm"
  # Exact pins in package.json; no lock file (npm 11 leaves optional platform packages out of it).
  npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
fi

log "copying the console's browser assets (scripts/vendor_assets.py)"
.venv/bin/python scripts/vendor_assets.py >/dev/null

log "generating protobuf code"
.venv/bin/python scripts/gen_protos.py
