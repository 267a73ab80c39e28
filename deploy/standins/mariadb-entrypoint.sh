#!/bin/sh
# The MariaDB image's entrypoint contract, enough for docker-compose.yml: MYSQL_DATABASE, MYSQL_USER,
# MYSQL_PASSWORD[_FILE], MYSQL_ROOT_PASSWORD[_FILE]; arguments are mariadbd options.
set -eu
secret() { eval "f=\${${1}_FILE:-}"; if [ -n "$f" ]; then cat "$f"; else eval "printf %s \"\${$1:-}\""; fi; }
root_password=$(secret MYSQL_ROOT_PASSWORD)
password=$(secret MYSQL_PASSWORD)
chown -R mysql:mysql /var/lib/mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
fi
init=/run/mysqld/init.sql
cat > "$init" <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '${root_password}';
CREATE DATABASE IF NOT EXISTS \`${MYSQL_DATABASE}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '${MYSQL_USER}'@'%' IDENTIFIED BY '${password}';
GRANT ALL PRIVILEGES ON \`${MYSQL_DATABASE}\`.* TO '${MYSQL_USER}'@'%';
SQL
chown mysql:mysql "$init"
chmod 600 "$init"
# Only loopback: with host networking this is the host's.
exec mariadbd --user=mysql --bind-address=127.0.0.1 --init-file="$init" "$@"
