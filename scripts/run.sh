#!/usr/bin/env bash
# The main job on embedded defaults: set up, then `penpay up` — the whole stack in one process
# (SQLite file, in-process bus, both simulators, Deriv gateway, M-Pesa callbacks, relay, saga
# workers, gRPC API, HTTP bridge). It prints the addresses; Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/penpay up "$@"
