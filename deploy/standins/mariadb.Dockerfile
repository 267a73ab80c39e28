# Debian's MariaDB standing in for the mariadb:10.11 image where no image registry is reachable
# (scripts/docker_stack.sh): the same MYSQL_* variables, the same mariadb-admin, server options from
# the compose command.
ARG BASE_IMAGE=penpay-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server \
    && rm -rf /var/lib/apt/lists/* /var/lib/mysql/* && mkdir -p /run/mysqld
COPY mariadb-entrypoint.sh /usr/local/bin/entrypoint
ENTRYPOINT ["sh", "/usr/local/bin/entrypoint"]
