#!/usr/bin/env bash
# The main job on embedded defaults: set up, then `penpay demo` — it starts the whole stack in one
# process (SQLite, in-process bus, both simulators, Deriv gateway, M-Pesa callbacks, relay, saga
# workers, gRPC API, HTTP bridge) unless one already answers, walks a user through a deposit and a
# withdrawal over the HTTP bridge, prints the balances and the ledger, and exits 0.
# `bash scripts/run.sh up` keeps the stack running instead (`penpay up`; Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "up" ]; then
    shift
    exec .venv/bin/penpay up "$@"
fi
exec .venv/bin/penpay demo "$@"
