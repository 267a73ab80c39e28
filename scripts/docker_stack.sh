#!/usr/bin/env bash
# The Dockerfile and docker-compose.yml for real, on a machine with no image registry and only
# loopback networking (not part of the test command; run by hand, as root):
#  1. apt-get install docker.io, docker-compose, debootstrap (when missing);
#  2. start a private dockerd (no bridge, no iptables; its own socket and data under $DOCKER_DIR);
#  3. debootstrap a Debian bookworm rootfs with python3, trusting the host's extra CAs (this
#     machine's TLS proxy), and `docker import` it as the base image;
#  4. build the stand-ins for mariadb:10.11 and redis:7 on it, and the Dockerfile with
#     BASE_IMAGE set to it;
#  5. check the image: not root, no compilers, no pip, `penpay --help` runs;
#  6. run the sandbox (profile simulators) with host networking (deploy/compose.host.yml), wait
#     for every healthcheck, fund the floats once and run `penpay demo` from the image;
#  7. take the stack down and stop dockerd (--keep leaves both running).
# Each step prints what it ran; the log of the whole run is $DOCKER_DIR/run.log.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
DOCKER_DIR=${DOCKER_DIR:-/var/tmp/penpay-docker}
export DOCKER_HOST=unix://$DOCKER_DIR/docker.sock
keep=0; [ "${1:-}" = "--keep" ] && keep=1
mkdir -p "$DOCKER_DIR"
exec > >(tee -a "$DOCKER_DIR/run.log") 2>&1
step() { printf '\n[docker] %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
nice_() { nice -n 10 "$@"; }

step "tools"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
dockerd --version; docker-compose --version

step "dockerd (no bridge, no iptables: containers use the host's network only)"
if ! docker info >/dev/null 2>&1; then
  nice_ dockerd --bridge=none --iptables=false --ip6tables=false \
    --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec" --pidfile "$DOCKER_DIR/dockerd.pid" \
    -H "$DOCKER_HOST" > "$DOCKER_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
docker info --format 'server {{.ServerVersion}}, storage {{.Driver}}'
compose=(docker-compose -p penpay -f docker-compose.yml -f deploy/compose.host.yml)
upped=0
cleanup() {
  [ "$keep" = 1 ] && return
  step "down"
  [ "$upped" = 1 ] && { "${compose[@]}" --profile simulators down -v --remove-orphans || true; }
  if [ -s "$DOCKER_DIR/dockerd.pid" ]; then
    kill "$(cat "$DOCKER_DIR/dockerd.pid")" 2>/dev/null || true
    for _ in $(seq 1 40); do [ -e "$DOCKER_DIR/dockerd.pid" ] || break; sleep 0.5; done
  fi
}
trap cleanup EXIT

step "base image penpay-base:bookworm (debootstrap, docker import)"
[ "${PENPAY_REBUILD_BASE:-0}" = 1 ] && docker image rm -f penpay-base:bookworm >/dev/null 2>&1 || true
if ! docker image inspect penpay-base:bookworm >/dev/null 2>&1; then
  rootfs=$DOCKER_DIR/rootfs-bookworm
  if [ ! -x "$rootfs/usr/bin/python3" ]; then
    rm -rf "$rootfs"
    nice_ debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" http://deb.debian.org/debian > "$DOCKER_DIR/debootstrap.log"
  fi
  # This machine reaches the registries through a TLS proxy with a CA of its own: the base trusts
  # what the host trusts (PIP_CERT: pip, SSL_CERT_FILE: Python's ssl).
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null
  fi
  tar -C "$rootfs" -c . | docker import \
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    - penpay-base:bookworm
fi
docker run --rm penpay-base:bookworm python3 --version

step "images: stand-ins for mariadb:10.11 and redis:7, and the Dockerfile on the local base"
nice_ docker build -q --network host -t penpay-mariadb:local -f deploy/standins/mariadb.Dockerfile deploy/standins
nice_ docker build -q --network host -t penpay-redis:local -f deploy/standins/redis.Dockerfile deploy/standins
started=$(date +%s)
nice_ docker build --network host --build-arg BASE_IMAGE=penpay-base:bookworm -t penpay:latest .
echo "penpay:latest built in $(( $(date +%s) - started )) s"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^penpay'

step "the image: user, compilers, pip"
docker run --rm penpay:latest sh -c '
  echo "uid $(id -u) ($(id -un))"; [ "$(id -u)" != 0 ]
  for c in gcc cc c++ g++ clang make protoc pip pip3; do
    if command -v "$c" >/dev/null; then echo "found $c"; exit 1; fi
  done
  python3 -c "import grpc_tools" 2>/dev/null && { echo "grpc_tools installed"; exit 1; }
  echo "no compilers, no pip, no protoc"; penpay --help | head -n 3'

step "inputs: scripts/compose_init.sh --sandbox"
deploy=$DOCKER_DIR/deploy
rm -rf "$deploy"
bash scripts/compose_init.sh --sandbox --dir "$deploy"
# Host networking: MySQL and Redis on ports of their own (this machine's own servers hold the usual ones).
mysql_port=${PENPAY_MYSQL_PORT:-33306} redis_port=${PENPAY_REDIS_PORT:-36379}
sed -i "s|@mysql:3306/|@mysql:${mysql_port}/|" "$deploy/penpay.env"
export PENPAY_APP_ENV=development PENPAY_MPESA_ALLOWED_IPS=127.0.0.1 \
  PENPAY_ENV_FILE=$deploy/penpay.env PENPAY_SECRETS_DIR=$deploy/secrets \
  PENPAY_MYSQL_IMAGE=penpay-mariadb:local PENPAY_REDIS_IMAGE=penpay-redis:local \
  PENPAY_MYSQL_PORT=$mysql_port PENPAY_REDIS_PORT=$redis_port PENPAY_BASE_IMAGE=penpay-base:bookworm
for port in "$mysql_port" "$redis_port" 8080 8765 8766 8767 8768 9100 9102 9103 50051 50052 50053; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "127.0.0.1:$port is taken"; exit 1; fi
done

step "up (profile simulators, host networking)"
upped=1
"${compose[@]}" --profile simulators up -d --no-build
services=$("${compose[@]}" --profile simulators config --services | grep -vx -e migrate -e sim-floats)
deadline=$(( $(date +%s) + 300 ))
while :; do
  waiting=""
  for s in $services; do
    id=$("${compose[@]}" ps -q "$s")
    health=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
    [ "$health" = healthy ] || waiting="$waiting $s:$health"
  done
  [ -z "$waiting" ] && break
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "not healthy after 300 s:$waiting"; "${compose[@]}" --profile simulators logs --tail 30; exit 1
  fi
  sleep 3
done
"${compose[@]}" --profile simulators ps
echo "migrate: exit $(docker inspect --format '{{.State.ExitCode}}' "$("${compose[@]}" ps -q migrate)")"

step "the gateways: exactly one leads"
for port in 50052 50053; do
  docker run --rm --network host penpay:latest penpay healthcheck --grpc "127.0.0.1:$port" \
    --service penpay.deriv.v1.DerivGatewayService || true
done

step "floats, once (docker compose run --rm sim-floats)"
"${compose[@]}" run --rm sim-floats

step "penpay demo from the image, against the stack"
docker run --rm --network host penpay:latest penpay demo --no-start --timeout 90 \
  --bridge http://127.0.0.1:8080 --deriv-control http://127.0.0.1:8768 --mpesa http://127.0.0.1:8766
step "done"
