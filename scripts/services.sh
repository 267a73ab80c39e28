#!/usr/bin/env bash
# Make sure MariaDB and Redis answer on loopback, installing and starting them when they
# do not, and create the test user; install Chromium (browser tests) when it is missing.
# Idempotent, and quick when everything is already up.
set -euo pipefail

DB_USER=${PENPAY_TEST_DB_USER:-penpay}
DB_PASS=${PENPAY_TEST_DB_PASSWORD:-penpay}

log() { printf '[services] %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 0.5; done
  log "$name did not start listening on 127.0.0.1:$port"; return 1
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"; DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_mariadb() {
  if ! port_open 3306; then
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server mariadb-client
    log "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    # By pid file, not by program: a benchmark's private mariadbd must not pass for this one.
    start-stop-daemon --start --oknodo --background --chuid mysql --pidfile /run/mysqld/mysqld.pid \
      --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid
    wait_port 3306 MariaDB
  fi
  command -v mariadb >/dev/null 2>&1 || command -v mysql >/dev/null 2>&1 || apt_install mariadb-client
  local client; client=$(command -v mariadb || command -v mysql)
  # root logs in by unix socket on a fresh install, by empty password over TCP on a prepared one.
  local sql="CREATE USER IF NOT EXISTS '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${DB_PASS}';
    CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
    GRANT ALL PRIVILEGES ON \`penpay%\`.* TO '${DB_USER}'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON \`penpay%\`.* TO '${DB_USER}'@'localhost';
    CREATE DATABASE IF NOT EXISTS penpay_test CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
    FLUSH PRIVILEGES;"
  for _ in $(seq 1 30); do
    if "$client" -uroot -e "$sql" 2>/dev/null || "$client" -uroot -h127.0.0.1 -e "$sql" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  log "could not create the test user as MariaDB root"; return 1
}

ensure_redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/penpay.log
  wait_port 6379 Redis
}

# The browser tests (marker `browser`) drive Debian's Chromium headless with Playwright.
ensure_chromium() {
  [ -x "${PENPAY_CHROMIUM:-/usr/bin/chromium}" ] && return 0
  apt_install chromium
}

ensure_mariadb
ensure_redis
ensure_chromium
log "MariaDB 127.0.0.1:3306 (user ${DB_USER}) and Redis 127.0.0.1:6379 are up"
