#!/usr/bin/env bash
# The main job on embedded defaults (SQLite file, no Redis needed).
# Today: set up, migrate the embedded database and print its schema version.
# The whole stack (`penpay up`: simulators, gateway, API, HTTP bridge, workers) replaces
# this smoke run when it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/penpay migrate "$@"
