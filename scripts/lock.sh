#!/usr/bin/env bash
# Re-resolve the lock files from pyproject.toml (run after changing a dependency, then commit them):
#   requirements.lock      what the installed wheel needs (Dockerfile, scripts/wheel_check.sh)
#   requirements-dev.lock  that plus the dev tools and the build backend (scripts/setup.sh)
# Hashes make `pip install --require-hashes` refuse anything else. uv resolves for every platform
# (--universal); it runs from a throwaway venv, not the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${PENPAY_LOCK_TOOLS:-/tmp/penpay-lock-tools}
[ -x "$tools/bin/uv" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q uv; }
common=(--universal --python-version 3.11 --generate-hashes -q --custom-compile-command "bash scripts/lock.sh")
"$tools/bin/uv" pip compile pyproject.toml "${common[@]}" -o requirements.lock "$@"
"$tools/bin/uv" pip compile pyproject.toml --extra dev "${common[@]}" -o requirements-dev.lock "$@"
# setup.py's build hook generates code with these: pyproject's [build-system] pins the same versions.
for pkg in setuptools grpcio-tools googleapis-common-protos; do
  pinned=$(grep -oE "^${pkg}==[^ ]+" requirements-dev.lock)
  grep -q "\"${pinned}\"" pyproject.toml || echo "lock: update [build-system] requires in pyproject.toml to ${pinned}"
done
