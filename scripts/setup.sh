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

# Reinstall only when the dependency list changed.
stamp=.venv/.penpay-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python dependencies"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  # compat mode puts the repository root on sys.path, so generated penpay/<svc>/v1 modules import.
  .venv/bin/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
  echo "$want" > "$stamp"
fi

if [ ! -x node_modules/.bin/buf ]; then
  command -v npm >/dev/null 2>&1 || { log "installing npm"; apt-get update -qq && apt-get install -y -qq npm >/dev/null; }
  log "installing buf from npm"
  # Exact pin in package.json; no lock file (npm 11 leaves optional platform packages out of it).
  npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
fi

log "generating protobuf code"
.venv/bin/python scripts/gen_protos.py
