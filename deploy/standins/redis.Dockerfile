# Redis standing in for redis:7 where no image registry is reachable (scripts/docker_stack.sh).
ARG BASE_IMAGE=penpay-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
CMD ["redis-server", "--bind", "127.0.0.1"]
