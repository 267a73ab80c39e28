#!/usr/bin/env bash
# The whole test suite: set-up, services, linters, type check, proto lint, the wheel check, then
# pytest with coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash scripts/setup.sh
bash scripts/services.sh

export APP_ENV=testing PENPAY_APP_ENV=testing

echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
# Every package that ships, the bench and the tests (generated gRPC code excluded in pyproject.toml).
PACKAGES="domain application persistence security mpesa_adapter deriv_gateway sms_adapter workers penpay_api penpay proving bench tests"
echo "== mypy --strict $PACKAGES"; .venv/bin/mypy --strict $PACKAGES
echo "== buf lint"; node_modules/.bin/buf lint && echo "buf lint: clean"
echo "== buf breaking"; bash scripts/buf_breaking.sh
echo "== wheel check (build, install outside the checkout, migrate, up, demo)"
# Its venv also serves tests/integration/test_compose.py (the compose services from the wheel).
PENPAY_WHEEL_VENV=$(bash scripts/wheel_check.sh | tail -n 1)
export PENPAY_WHEEL_VENV
echo "== pytest"
# Three processes, a test file each at a time (--dist loadfile: a file's module fixtures, such as a
# cluster, stay in one process). Each process has its own MariaDB database and Redis key prefixes.
# Files go out in collection order, the longest first (tests/conftest.py, LONG_FIRST); xdist's own
# order (most tests first) left the few-test, minutes-long files (the chaos soak) for the end.
.venv/bin/pytest -p no:cacheprovider -n "${PENPAY_TEST_PROCESSES:-3}" --dist loadfile --no-loadscope-reorder \
  --cov --cov-report=term:skip-covered "$@"
echo "== test.sh finished in $(( $(date +%s) - start )) s"
