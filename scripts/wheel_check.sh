#!/usr/bin/env bash
# The wheel as an operator gets it: build it from a clean copy of the tree (no generated code in
# it: setup.py's hook must generate the protobuf modules), install it into a new venv outside the
# checkout (requirements.lock by hash, then the wheel alone), and from an empty directory run
# `penpay migrate`, `penpay migrate --sql`, `penpay up` and `penpay demo` against it.
#   bash scripts/wheel_check.sh            # all of it (scripts/test.sh runs this)
#   bash scripts/wheel_check.sh --install  # build and install only
# Either way the venv's path is the one line on stdout (the rest goes to stderr).
# Network: only the package registry, and pip's cache makes a repeated install local.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
log() { printf '[wheel] %s\n' "$*" >&2; }
# pip with its exit status, without the machine's notes about its file:// indexes.
pip_in() {
  local python=$1 out; shift; out=$(mktemp)
  if "$python" -m pip "$@" >"$out" 2>&1; then status=0; else status=$?; fi
  grep -v -e "^WARNING: Location" -e "^\s*$" "$out" >&2 || true
  rm -f "$out"; return "$status"
}
start=$(date +%s)

# Outside the checkout, one directory per worktree (parallel checkouts do not meet).
work=${PENPAY_WHEEL_DIR:-${TMPDIR:-/tmp}/penpay-wheel-$(printf '%s' "$repo" | sha1sum | cut -c1-10)}
src=$work/src dist=$work/dist venv=$work/venv run=$work/run
rm -rf "$src" "$dist" "$venv" "$run"
mkdir -p "$src" "$dist" "$run"

# The build backend's pins and the lock's must agree (generated code needs a protobuf runtime at
# least as new as the grpcio-tools that wrote it).
for pkg in setuptools grpcio-tools googleapis-common-protos; do
  pinned=$(grep -oE "^${pkg}==[^ ]+" requirements-dev.lock)
  grep -q "\"${pinned}\"" pyproject.toml || { log "pyproject.toml [build-system] does not pin ${pinned}"; exit 1; }
done

log "building the wheel from a clean copy of the tree"
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$src"
# The npm packages the build copies the console's assets from (scripts/vendor_assets.py would
# otherwise `npm install` them into the copy).
[ -d node_modules ] && ln -s "$repo/node_modules" "$src/node_modules"
pip_in .venv/bin/python wheel -q --no-deps --no-build-isolation -w "$dist" "$src"
wheel=$(ls "$dist"/penpay-*.whl)
# (A listing held in a variable: `unzip | grep -q` fails under pipefail when grep stops reading early.)
listing=$(unzip -Z1 "$wheel")
grep -qx "penpay/auth/v1/auth_pb2.py" <<<"$listing" || { log "no generated protobuf code in $wheel"; exit 1; }
grep -qx "persistence/_migrations/alembic.ini" <<<"$listing" || { log "no alembic.ini in $wheel"; exit 1; }
for asset in penpay/proto_docs.binpb proving/demo/journey.py penpay_api/console/templates/dashboard.html \
  penpay_api/console/static/console.js penpay_api/console/static/vendor/htmx.min.js \
  penpay_api/console/static/vendor/swagger-ui-bundle.js; do
  grep -qx "$asset" <<<"$listing" || { log "no $asset in $wheel"; exit 1; }
done

# The locked dependencies as wheels, fetched once per lock (by hash, from the registry or pip's
# cache); the new venv then installs from there without asking any index.
house=${PENPAY_WHEELHOUSE:-${TMPDIR:-/tmp}/penpay-wheelhouse}/$(sha256sum requirements.lock | cut -c1-16)
if [ ! -e "$house/.complete" ]; then
  log "fetching the locked dependencies into $house"
  mkdir -p "$house"
  pip_in .venv/bin/python download -q --require-hashes --only-binary=:all: -d "$house" -r requirements.lock
  touch "$house/.complete"
fi
log "installing it into a new venv: $venv"
python3 -m venv --without-pip "$venv"
# The checkout's pip (from the lock) installs into the new venv; --no-compile: bytecode on first import.
pip_in .venv/bin/python --python "$venv/bin/python" install -q --no-compile --no-index --find-links "$house" \
  --require-hashes -r requirements.lock
pip_in .venv/bin/python --python "$venv/bin/python" install -q --no-compile --no-index --no-deps "$wheel"
pip_in .venv/bin/python --python "$venv/bin/python" check
log "built and installed in $(( $(date +%s) - start )) s"
if [ "${1:-}" = "--install" ]; then echo "$venv"; exit 0; fi

# From an empty directory, with nothing of the checkout's configuration.
cd "$run"
unset $(env | grep -oE '^PENPAY_[A-Z0-9_]+' || true)
free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The Deriv simulator's control API listens 3 above its WebSocket port (penpay up).
while :; do ws=$(free_port); (exec 3<>"/dev/tcp/127.0.0.1/$((ws + 3))") 2>/dev/null || break; done
export PENPAY_APP_ENV=development
export PENPAY_DATABASE_URL="sqlite+aiosqlite:///$run/penpay.db"
export PENPAY_GRPC_ADDR=127.0.0.1:$(free_port) PENPAY_HTTP_ADDR=127.0.0.1:$(free_port)
export PENPAY_GATEWAY_ADDR=127.0.0.1:$(free_port) PENPAY_METRICS_ADDR=127.0.0.1:$(free_port)
export PENPAY_DERIV_WS_URL=ws://127.0.0.1:$ws/websockets/v3
export PENPAY_MPESA_BASE_URL=http://127.0.0.1:$(free_port) PENPAY_MPESA_CALLBACK_BASE_URL=http://127.0.0.1:$(free_port)
export PENPAY_SMS_AT_BASE_URL=http://127.0.0.1:$(free_port) PENPAY_DERIV_REST_BASE_URL=http://127.0.0.1:$(free_port)

log "penpay migrate"
"$venv/bin/penpay" migrate >&2
"$venv/bin/penpay" migrate --sql --database-url "mysql+asyncmy://dba@db/penpay" > offline.sql
grep -q "CREATE TRIGGER trg_audit_pending_no_unsealed_delete" offline.sql || { log "penpay migrate --sql: no triggers"; exit 1; }

log "penpay up"
"$venv/bin/penpay" up --state-dir "$run/state" > up.log 2>&1 &
up=$!
stop_up() { kill -INT "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; }
trap stop_up EXIT
for _ in $(seq 1 300); do
  grep -q "^ready" up.log && break
  kill -0 "$up" 2>/dev/null || { cat up.log >&2; log "penpay up exited"; exit 1; }
  sleep 0.2
done
grep -q "^ready" up.log || { cat up.log >&2; log "penpay up not ready after 60 s"; exit 1; }

log "the ops console and the API docs from the installed wheel"
for path in /ops/login /docs /static/console/vendor/htmx.min.js /static/console/vendor/swagger-ui-bundle.js; do
  "$venv/bin/python" - "http://$PENPAY_HTTP_ADDR$path" <<'PY' || { cat up.log >&2; log "GET $path failed"; exit 1; }
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as answer:  # noqa: S310 - our own loopback
    assert answer.status == 200 and len(answer.read()) > 200, answer.status
PY
done

log "penpay demo"
"$venv/bin/penpay" demo --no-start --timeout 60 > demo.log 2>&1 || { cat demo.log up.log >&2; log "penpay demo failed"; exit 1; }
tail -n 3 demo.log >&2
stop_up; trap - EXIT
log "wheel check passed in $(( $(date +%s) - start )) s"
echo "$venv"
